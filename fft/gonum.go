package fft

// GoPlan is the pure-Go RealPlan2D, in float64 internally: for power-of-two
// sizes a radix-2 FFT (two real rows per complex transform, then the w/2+1
// columns), otherwise a Plan64 (gonum's dsp/fourier) on float64 copies. It
// is always compiled; under the purego tag it is the implementation New
// returns. Not safe for concurrent use.
type GoPlan struct {
	p2   *pow2Plan // power-of-two sizes; nil otherwise
	p64  *Plan64   // the other sizes
	h, w int
	r64  []float64    // h×w, p64 only
	c64  []complex128 // h×(w/2+1), p64 only
}

// NewGoPlan returns a pure-Go plan for h×w real arrays, or a *SizeError.
func NewGoPlan(h, w int) (*GoPlan, error) {
	if err := checkSize(h, w); err != nil {
		return nil, err
	}
	if isPow2(h) && isPow2(w) && w >= 2 {
		return &GoPlan{h: h, w: w, p2: newPow2Plan(h, w)}, nil
	}
	return newGonumPlan(h, w)
}

// newGonumPlan returns a GoPlan on gonum's FFTs whatever the size.
func newGonumPlan(h, w int) (*GoPlan, error) {
	p, err := NewPlan64(h, w)
	if err != nil {
		return nil, err
	}
	return &GoPlan{h: h, w: w, p64: p, r64: make([]float64, h*w), c64: make([]complex128, ComplexLen(h, w))}, nil
}

// Size implements RealPlan2D.
func (p *GoPlan) Size() (int, int) { return p.h, p.w }

// Forward implements RealPlan2D.
func (p *GoPlan) Forward(dst []complex64, src []float32) []complex64 {
	if dst == nil {
		dst = make([]complex64, ComplexLen(p.h, p.w))
	}
	checkLens("Forward", p.h, p.w, len(src), len(dst))
	if p.p2 != nil {
		p.p2.forward(dst, src)
		return dst
	}
	for i, v := range src {
		p.r64[i] = float64(v)
	}
	p.p64.Forward(p.c64, p.r64)
	for i, v := range p.c64 {
		dst[i] = complex64(v)
	}
	return dst
}

// Inverse implements RealPlan2D.
func (p *GoPlan) Inverse(dst []float32, src []complex64) []float32 {
	if dst == nil {
		dst = make([]float32, p.h*p.w)
	}
	checkLens("Inverse", p.h, p.w, len(dst), len(src))
	if p.p2 != nil {
		p.p2.inverse(dst, src, 1/float64(p.h*p.w))
		return dst
	}
	for i, v := range src {
		p.c64[i] = complex128(v)
	}
	p.p64.Inverse(p.r64, p.c64)
	for i, v := range p.r64 {
		dst[i] = float32(v)
	}
	return dst
}
