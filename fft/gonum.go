package fft

import "gonum.org/v1/gonum/dsp/fourier"

// GoPlan is the pure-Go RealPlan2D, in float64 internally: for power-of-two
// sizes a radix-2 FFT (two real rows per complex transform, then the w/2+1
// columns), otherwise gonum's dsp/fourier (a real FFT along each row, then
// a complex FFT along each column). It is always compiled; under the
// purego tag it is the implementation New returns. Not safe for concurrent
// use.
type GoPlan struct {
	p2       *pow2Plan // power-of-two sizes; nil otherwise
	h, w, wc int
	row      *fourier.FFT
	col      *fourier.CmplxFFT
	rbuf     []float64
	cbuf     []complex128
	colbuf   []complex128
	colout   []complex128
	half     []complex128 // h×wc working spectrum
}

// NewGoPlan returns a pure-Go plan for h×w real arrays, or a *SizeError.
func NewGoPlan(h, w int) (*GoPlan, error) {
	if err := checkSize(h, w); err != nil {
		return nil, err
	}
	if isPow2(h) && isPow2(w) && w >= 2 {
		return &GoPlan{h: h, w: w, wc: w/2 + 1, p2: newPow2Plan(h, w)}, nil
	}
	return newGonumPlan(h, w), nil
}

// newGonumPlan returns a GoPlan on gonum's FFTs whatever the size.
func newGonumPlan(h, w int) *GoPlan {
	wc := w/2 + 1
	return &GoPlan{
		h: h, w: w, wc: wc,
		row:    fourier.NewFFT(w),
		col:    fourier.NewCmplxFFT(h),
		rbuf:   make([]float64, w),
		cbuf:   make([]complex128, wc),
		colbuf: make([]complex128, h),
		colout: make([]complex128, h),
		half:   make([]complex128, h*wc),
	}
}

// Size implements RealPlan2D.
func (p *GoPlan) Size() (int, int) { return p.h, p.w }

// Forward implements RealPlan2D.
func (p *GoPlan) Forward(dst []complex64, src []float32) []complex64 {
	if dst == nil {
		dst = make([]complex64, p.h*p.wc)
	}
	checkLens("Forward", p.h, p.w, len(src), len(dst))
	if p.p2 != nil {
		p.p2.forward(dst, src)
		return dst
	}
	for y := 0; y < p.h; y++ {
		for x, v := range src[y*p.w : (y+1)*p.w] {
			p.rbuf[x] = float64(v)
		}
		p.row.Coefficients(p.half[y*p.wc:(y+1)*p.wc], p.rbuf)
	}
	for l := 0; l < p.wc; l++ {
		for k := 0; k < p.h; k++ {
			p.colbuf[k] = p.half[k*p.wc+l]
		}
		p.col.Coefficients(p.colout, p.colbuf)
		for k := 0; k < p.h; k++ {
			dst[k*p.wc+l] = complex64(p.colout[k])
		}
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
	for l := 0; l < p.wc; l++ {
		for k := 0; k < p.h; k++ {
			p.colbuf[k] = complex128(src[k*p.wc+l])
		}
		p.col.Sequence(p.colout, p.colbuf)
		for k := 0; k < p.h; k++ {
			p.half[k*p.wc+l] = p.colout[k]
		}
	}
	scale := 1 / float64(p.h*p.w)
	for y := 0; y < p.h; y++ {
		p.row.Sequence(p.rbuf, p.half[y*p.wc:(y+1)*p.wc])
		for x, v := range p.rbuf {
			dst[y*p.w+x] = float32(v * scale)
		}
	}
	return dst
}
