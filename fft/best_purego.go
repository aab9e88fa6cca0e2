//go:build purego || !cgo

package fft

func newBest(h, w int) (RealPlan2D, error) { return NewGoPlan(h, w) }

// Implementation names the implementation New returns: "gonum" or "fftw".
const Implementation = "gonum"

func newBestBatch(h, w, n int) (BatchPlan2D, error) { return NewGoBatchPlan(h, w, n) }
