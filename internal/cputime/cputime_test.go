package cputime

import (
	"runtime"
	"testing"
)

// TestProcessGrows: busy work makes the process's CPU time grow (on Linux).
func TestProcessGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no CPU time on this system")
	}
	c0 := Process()
	s := 0.0
	for i := 0; i < 50_000_000 && Process() == c0; i++ {
		s += float64(i)
	}
	if Process() <= c0 {
		t.Errorf("CPU time did not grow (%v, sum %g)", c0, s)
	}
}
