//go:build !purego && cgo

package fft

func init() {
	testImpls = append(testImpls, testImpl{"fftw", func(h, w int) (RealPlan2D, error) { return NewFFTWPlan(h, w) }})
}

func init() {
	testBatchImpls = append(testBatchImpls, testBatchImpl{"fftw", func(h, w, n int) (BatchPlan2D, error) { return NewFFTWBatchPlan(h, w, n) }})
}
