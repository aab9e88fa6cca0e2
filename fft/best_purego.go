//go:build purego || !cgo

package fft

func newBest(h, w int) (RealPlan2D, error) { return NewGoPlan(h, w) }

// Implementation names the implementation New returns: "go" (pure Go) or
// "fftw".
const Implementation = "go"

func newBestBatch(h, w, n int) (BatchPlan2D, error) { return NewGoBatchPlan(h, w, n) }
