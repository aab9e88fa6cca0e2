// Package cli holds what the project's two commands, stl (cmd/stl) and
// stl-beam (the beam module's Apache Beam pipelines), share of their
// command lines: the options of an attack as flags (AttackFlags), read
// the same way by both, so that `stl-beam attack` runs the attack `stl
// attack` runs with the same flags. It only wires flags to the experiment
// and attack packages.
package cli

import "strings"

// OrList joins names as "a, b or c".
func OrList(names []string) string { return JoinList(names, "or") }

// JoinList joins names as "a, b <conj> c".
func JoinList(names []string, conj string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}

// UsageError marks an error caused by the command line itself; the
// commands exit with their usage code on it.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }
