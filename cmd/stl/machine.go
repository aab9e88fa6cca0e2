package main

import (
	"strings"

	"github.com/stl-defense/stl/internal/buildinfo"
)

// machine is what every speed figure is quoted with: the CPU with its
// vector extensions and the numerical kernels of this build.
type machine struct {
	CPU       string `json:"cpu"`
	Libraries string `json:"libraries"`
}

func thisMachine() machine {
	var ks []string
	for _, k := range buildinfo.Kernels() {
		ks = append(ks, k.Role+" "+k.String())
	}
	return machine{CPU: buildinfo.DetectCPU().String(), Libraries: strings.Join(ks, "; ")}
}

// String formats m as one line for the text output of the benchmarks.
func (m machine) String() string { return "cpu: " + m.CPU + "\nkernels: " + m.Libraries }
