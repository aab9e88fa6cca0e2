package cli

import (
	"strings"

	"github.com/stl-defense/stl/attack"
)

// The attack-protocol flags, shared by "stl run", "stl attack" and
// "stl-beam attack"; the protocols themselves, their names and
// descriptions, are attack.Protocol's.
const (
	FlagProtocol = "protocol"
	FlagRound8   = "round8"
	UsageRound8  = "round every adversarial image to 8 bits, inside its budget, before any defense or classifier sees it (" +
		string(attack.ProtocolRelease) + " always does)"
)

// UsageProtocol is the usage of --protocol.
var UsageProtocol = protocolUsage()

// protocolUsage lists the protocols with their short descriptions, the
// first the default.
func protocolUsage() string {
	var each []string
	for i, name := range attack.ProtocolNames() {
		d := attack.Protocol(name).Short()
		if i == 0 {
			d = "default; " + d
		}
		each = append(each, name+" ("+d+")")
	}
	return "attack protocol: " + strings.Join(each, ", ") + "; see docs/attack.md"
}

// parseProtocol parses a --protocol value, as a UsageError when unknown.
func parseProtocol(name string) (attack.Protocol, error) {
	p, err := attack.ParseProtocol(name)
	if err != nil {
		return "", usagef("--%s %q: want %s", FlagProtocol, name, OrList(attack.ProtocolNames()))
	}
	return p, nil
}
