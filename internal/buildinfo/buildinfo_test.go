package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestKernels(t *testing.T) {
	ks := Kernels()
	roles := []string{"fft", "blas", "dnn"}
	if len(ks) != len(roles) {
		t.Fatalf("got %d kernels, want %d: %v", len(ks), len(roles), ks)
	}
	for i, k := range ks {
		if k.Role != roles[i] {
			t.Errorf("kernel %d has role %q, want %q", i, k.Role, roles[i])
		}
		if k.Name == "" || k.String() == "" {
			t.Errorf("kernel %d (%s) has no name", i, k.Role)
		}
		if k.Name != "pure Go" && k.Version == "" {
			t.Errorf("%s reports no version", k.Name)
		}
	}
}

func TestCPU(t *testing.T) {
	c := DetectCPU()
	if c.Threads != runtime.NumCPU() {
		t.Errorf("threads %d, want %d", c.Threads, runtime.NumCPU())
	}
	if runtime.GOOS == "linux" && c.Model == "" {
		t.Error("no CPU model read from /proc/cpuinfo")
	}
	if runtime.GOARCH == "amd64" {
		s := strings.Join(c.Features, " ")
		// Every amd64 CPU Go supports has SSE2; the list names either
		// avx512f or no-avx512, never both or neither.
		if strings.Contains(s, "avx512f") == strings.Contains(s, "no-avx512") {
			t.Errorf("features %q must name exactly one of avx512f and no-avx512", s)
		}
	}
	m := Map()
	for _, k := range []string{"cpu", "kernel.fft", "kernel.blas", "kernel.dnn"} {
		if m[k] == "" {
			t.Errorf("Map lacks %q: %v", k, m)
		}
	}
}
