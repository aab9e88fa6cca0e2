package main

import "github.com/stl-defense/stl/internal/cli"

// The attack-protocol flags, shared by "stl run" and "stl attack"
// (internal/cli defines them for stl attack and stl-beam attack).
const (
	flagProtocol = cli.FlagProtocol
	flagRound8   = cli.FlagRound8
	usageRound8  = cli.UsageRound8
)

var usageProtocol = cli.UsageProtocol
