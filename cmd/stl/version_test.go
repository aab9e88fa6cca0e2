package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionNamesKernelsAndCPU(t *testing.T) {
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetArgs([]string{"version"})
	defer rootCmd.SetOut(nil)
	defer rootCmd.SetArgs(nil)
	if err := rootCmd.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"stl ", "kernel fft ", "kernel blas ", "kernel dnn ", "cpu "} {
		if !strings.Contains(s, want) {
			t.Errorf("version output lacks %q:\n%s", want, s)
		}
	}
}
