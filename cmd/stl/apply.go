package main

import (
	"github.com/spf13/pflag"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/internal/cli"
)

// The flags of defense.ApplyOptions, shared by "stl defense train" and
// "stl run", and the preset that turns on the released code's choices
// (cli defines them for stl run and stl-beam run).
const (
	flagOutputMapping     = cli.FlagOutputMapping
	flagQuantize8         = cli.FlagQuantize8
	flagClusterAssignment = cli.FlagClusterAssignment
	flagOfficial          = cli.FlagOfficial
)

var (
	usageOutputMapping     = cli.UsageOutputMapping
	usageQuantize8         = cli.UsageQuantize8
	usageClusterAssignment = cli.UsageClusterAssignment
	usageOfficial          = cli.UsageOfficial
)

// applyFlags registers the ApplyOptions flags on f, bound to a, and
// --official, bound to official.
func applyFlags(f *pflag.FlagSet, a *defense.ApplyOptions, official *bool) {
	f.StringVar(&a.Output, flagOutputMapping, a.Output, usageOutputMapping)
	f.BoolVar(&a.Quantize8, flagQuantize8, a.Quantize8, usageQuantize8)
	f.StringVar(&a.Assign, flagClusterAssignment, a.Assign, usageClusterAssignment)
	f.BoolVar(official, flagOfficial, false, usageOfficial)
}

// officialApply returns a with defense.ReleaseApplyOptions in each field
// whose flag was not given on the command line (cli.OfficialApply).
func officialApply(a defense.ApplyOptions, changed func(flag string) bool) defense.ApplyOptions {
	return cli.OfficialApply(a, changed)
}
