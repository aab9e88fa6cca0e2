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
	// Forward stores the unnormalized DFTs of the n arrays of src
	// (n*h*w values) in dst (n*h*(w/2+1) values) and returns dst,
	// allocated (aligned) when nil. src is not modified. It panics when a
	// length is wrong (a programming error).
	Forward(dst []complex64, src []float32) []complex64
	// InverseUnnormalized stores the inverse DFTs of the n half spectra
	// of src in dst (n*h*w values), NOT divided by h*w (the result is h*w
	// times the inverse transform, so that callers can fold the 1/(h*w)
	// into another pass), and returns dst, allocated (aligned) when nil.
	// src is scratch: its contents are undefined on return (FFTW's
	// complex-to-real transforms destroy their input; preserving it would
	// cost a copy per call). It panics when a length is wrong.
	InverseUnnormalized(dst []float32, src []complex64) []float32
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
func (b *GoBatchPlan) Forward(dst []complex64, src []float32) []complex64 {
	h, w := b.p.h, b.p.w
	if dst == nil {
		dst = MakeComplex64(b.n * ComplexLen(h, w))
	}
	checkBatchLens("Forward", h, w, b.n, len(src), len(dst))
	hw, f := h*w, ComplexLen(h, w)
	for i := 0; i < b.n; i++ {
		b.p.Forward(dst[i*f:(i+1)*f], src[i*hw:(i+1)*hw])
	}
	return dst
}

// InverseUnnormalized implements BatchPlan2D; this implementation leaves
// src unchanged.
func (b *GoBatchPlan) InverseUnnormalized(dst []float32, src []complex64) []float32 {
	h, w := b.p.h, b.p.w
	if dst == nil {
		dst = MakeFloat32(b.n * h * w)
	}
	checkBatchLens("InverseUnnormalized", h, w, b.n, len(dst), len(src))
	hw, f := h*w, ComplexLen(h, w)
	s := float32(hw)
	for i := 0; i < b.n; i++ {
		d := dst[i*hw : (i+1)*hw]
		b.p.Inverse(d, src[i*f:(i+1)*f])
		for j := range d {
			d[j] *= s
		}
	}
	return dst
}
