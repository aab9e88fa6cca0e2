package main

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/stl-defense/stl/defense"
)

// The flags of defense.ApplyOptions, shared by "stl defense train" and
// "stl run", and the preset that turns on the released code's choices.
const (
	flagOutputMapping     = "output-mapping"
	flagQuantize8         = "quantize-8bit"
	flagClusterAssignment = "cluster-assignment"
	flagOfficial          = "official"
)

var (
	usageOutputMapping = "how the STL maps lowpass + D x to its output: " + strings.Join(defense.OutputMappings, " (default), ") +
		" (divide by each image's maximum, as the released code)"
	usageQuantize8         = "round the STL's output to 8 bits, as the released code saved it"
	usageClusterAssignment = "how STL (cluster) assigns clusters: " + strings.Join(defense.ClusterAssignments, " (default), ") +
		" (k-means labels of the training codes and each set together, as the released code; it sees the test images)"
	usageOfficial = "the released code's choices: --" + flagOutputMapping + " " + defense.OutputMax + " --" + flagQuantize8 +
		" --" + flagClusterAssignment + " " + defense.AssignTransductive + " (flags given explicitly override it)"
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
// whose flag was not given on the command line (changed reports that).
func officialApply(a defense.ApplyOptions, changed func(flag string) bool) defense.ApplyOptions {
	r := defense.ReleaseApplyOptions()
	if !changed(flagOutputMapping) {
		a.Output = r.Output
	}
	if !changed(flagQuantize8) {
		a.Quantize8 = r.Quantize8
	}
	if !changed(flagClusterAssignment) {
		a.Assign = r.Assign
	}
	return a
}
