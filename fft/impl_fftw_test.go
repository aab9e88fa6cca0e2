//go:build !purego && cgo

package fft

func init() {
	testImpls = append(testImpls, testImpl{"fftw", func(h, w int) (RealPlan2D, error) { return NewFFTWPlan(h, w) }})
}
