// Package buildinfo reports what a binary computes with: the numerical
// kernels it links (FFTW, OpenBLAS and oneDNN in the default cgo build, pure
// Go under the purego tag) and the CPU it runs on with the vector extensions
// the kernels can use. `stl version` prints it and every report records it,
// since speed figures carry over neither between builds nor between CPUs.
package buildinfo

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/cpu"
)

// Kernel names one numerical library a build uses.
type Kernel struct {
	Role    string // "fft", "blas" or "dnn"
	Name    string // library name, e.g. "FFTW", or "pure Go"
	Version string // the version the library reports at run time
	Detail  string // e.g. the CPU kernel the library picked
}

// String formats k as "Name Version (Detail)".
func (k Kernel) String() string {
	s := k.Name
	if k.Version != "" {
		s += " " + k.Version
	}
	if k.Detail != "" {
		s += " (" + k.Detail + ")"
	}
	return s
}

// Kernels returns the numerical libraries of this build, in the order fft,
// blas, dnn. It is safe for concurrent use.
func Kernels() []Kernel { return kernels() }

// CPU describes the processor: its model name (from /proc/cpuinfo on Linux,
// empty where unknown), the logical CPUs Go sees and the vector extensions
// the processor reports.
type CPU struct {
	Model    string
	Threads  int
	Features []string
}

// String formats c as "Model, N threads, feat1 feat2 ...".
func (c CPU) String() string {
	m := c.Model
	if m == "" {
		m = runtime.GOARCH + " CPU"
	}
	return m + ", " + strconv.Itoa(c.Threads) + " threads, " + strings.Join(c.Features, " ")
}

// DetectCPU reads the processor's model and features.
func DetectCPU() CPU {
	c := CPU{Model: cpuModel(), Threads: runtime.NumCPU()}
	switch runtime.GOARCH {
	case "amd64", "386":
		for _, f := range []struct {
			name string
			has  bool
		}{
			{"sse4.2", cpu.X86.HasSSE42}, {"avx", cpu.X86.HasAVX}, {"avx2", cpu.X86.HasAVX2},
			{"fma", cpu.X86.HasFMA}, {"avx512f", cpu.X86.HasAVX512F}, {"avx512bw", cpu.X86.HasAVX512BW},
			{"avx512vnni", cpu.X86.HasAVX512VNNI}, {"avx512bf16", cpu.X86.HasAVX512BF16},
			{"amx-bf16", cpu.X86.HasAMXBF16},
		} {
			if f.has {
				c.Features = append(c.Features, f.name)
			}
		}
		if !cpu.X86.HasAVX512F {
			c.Features = append(c.Features, "no-avx512")
		}
	case "arm64":
		for _, f := range []struct {
			name string
			has  bool
		}{{"asimd", cpu.ARM64.HasASIMD}, {"sve", cpu.ARM64.HasSVE}, {"sve2", cpu.ARM64.HasSVE2}, {"fphp", cpu.ARM64.HasFPHP}} {
			if f.has {
				c.Features = append(c.Features, f.name)
			}
		}
	}
	return c
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Map returns the kernels and the CPU as "kernel.<role>" and "cpu" entries,
// the form reports record.
func Map() map[string]string {
	m := map[string]string{"cpu": DetectCPU().String()}
	for _, k := range Kernels() {
		m["kernel."+k.Role] = k.String()
	}
	return m
}
