package fft

import "fmt"

// BatchPlan2D transforms n h×w real arrays stored one after the other
// (n*h*w values) to n half spectra stored one after the other
// (n*h*(w/2+1) values), and back. Batched transforms let FFTW vectorize
// across arrays and save per-call overhead; the CBPDN solver transforms its
// M coefficient maps this way.
//
// A BatchPlan2D owns scratch memory and is not safe for concurrent use.
type BatchPlan2D interface {
	// Size returns the arrays' rows and columns and their number.
	Size() (h, w, n int)
	// Forward stores the unnormalized DFTs of src in dst (both
	// allocated by the caller); src is not modified.
	Forward(dst []complex64, src []float32)
	// InverseRaw stores the unnormalized inverse DFTs of src in dst: the
	// result is h*w times the inverse transform, so that callers can fold
	// the 1/(h*w) into another pass. src is overwritten (used as scratch).
	InverseRaw(dst []float32, src []complex64)
}

// NewBatch returns a batch plan from the fastest implementation compiled
// in. It returns a *SizeError for non-positive sizes.
func NewBatch(h, w, n int) (BatchPlan2D, error) {
	if n <= 0 || n > 1<<20 {
		return nil, &SizeError{H: h, W: w}
	}
	return newBestBatch(h, w, n)
}

func checkBatchLens(op string, h, w, n, nreal, ncplx int) {
	if nreal != n*h*w || ncplx != n*ComplexLen(h, w) {
		panic(fmt.Sprintf("fft: %s: batch of %d %dx%d needs %d real and %d complex values, got %d and %d",
			op, n, h, w, n*h*w, n*ComplexLen(h, w), nreal, ncplx))
	}
}

// GoBatchPlan is the pure-Go BatchPlan2D: a GoPlan applied to each array.
type GoBatchPlan struct {
	p   *GoPlan
	n   int
	buf []float32
}

// NewGoBatchPlan returns a pure-Go batch plan, or a *SizeError.
func NewGoBatchPlan(h, w, n int) (*GoBatchPlan, error) {
	if n <= 0 {
		return nil, &SizeError{H: h, W: w}
	}
	p, err := NewGoPlan(h, w)
	if err != nil {
		return nil, err
	}
	return &GoBatchPlan{p: p, n: n}, nil
}

// Size implements BatchPlan2D.
func (b *GoBatchPlan) Size() (int, int, int) { return b.p.h, b.p.w, b.n }

// Forward implements BatchPlan2D.
func (b *GoBatchPlan) Forward(dst []complex64, src []float32) {
	h, w := b.p.h, b.p.w
	checkBatchLens("Forward", h, w, b.n, len(src), len(dst))
	hw, f := h*w, ComplexLen(h, w)
	for i := 0; i < b.n; i++ {
		b.p.Forward(dst[i*f:(i+1)*f], src[i*hw:(i+1)*hw])
	}
}

// InverseRaw implements BatchPlan2D.
func (b *GoBatchPlan) InverseRaw(dst []float32, src []complex64) {
	h, w := b.p.h, b.p.w
	checkBatchLens("InverseRaw", h, w, b.n, len(dst), len(src))
	hw, f := h*w, ComplexLen(h, w)
	s := float32(hw)
	for i := 0; i < b.n; i++ {
		d := dst[i*hw : (i+1)*hw]
		b.p.Inverse(d, src[i*f:(i+1)*f])
		for j := range d {
			d[j] *= s
		}
	}
}
