package fft

import "gonum.org/v1/gonum/dsp/fourier"

// Plan64 transforms h×w real arrays in double precision, on gonum's
// dsp/fourier for every size: a real FFT along each row, then a complex FFT
// along each of the w/2+1 columns of the half spectrum (the inverse in the
// opposite order). Layout and normalization are the package's (Forward
// unnormalized, Inverse divided by h*w). It is the transform of callers
// that compute in float64 (the Tikhonov lowpass filter of package csc) and
// the engine of GoPlan for sizes that are not powers of two; being pure Go
// and deterministic, it gives the same bits in every build.
//
// A Plan64 owns scratch memory and is not safe for concurrent use; make one
// per goroutine.
type Plan64 struct {
	h, w, wc      int
	row           *fourier.FFT
	col           *fourier.CmplxFFT
	colIn, colOut []complex128 // one column
	half          []complex128 // h×wc working spectrum of Inverse
}

// NewPlan64 returns a double-precision plan for h×w real arrays, or a
// *SizeError.
func NewPlan64(h, w int) (*Plan64, error) {
	if err := checkSize(h, w); err != nil {
		return nil, err
	}
	wc := w/2 + 1
	return &Plan64{
		h: h, w: w, wc: wc,
		row:    fourier.NewFFT(w),
		col:    fourier.NewCmplxFFT(h),
		colIn:  make([]complex128, h),
		colOut: make([]complex128, h),
		half:   make([]complex128, h*wc),
	}, nil
}

// Size returns the real array's rows and columns.
func (p *Plan64) Size() (h, w int) { return p.h, p.w }

// Forward stores the unnormalized DFT of src (h*w values) in dst
// (h*(w/2+1) values) and returns dst, allocated when nil. src is not
// modified. It panics when a length is wrong (a programming error).
func (p *Plan64) Forward(dst []complex128, src []float64) []complex128 {
	if dst == nil {
		dst = make([]complex128, p.h*p.wc)
	}
	checkLens("Plan64.Forward", p.h, p.w, len(src), len(dst))
	for y := 0; y < p.h; y++ {
		p.row.Coefficients(dst[y*p.wc:(y+1)*p.wc], src[y*p.w:(y+1)*p.w])
	}
	for l := 0; l < p.wc; l++ {
		for k := range p.colIn {
			p.colIn[k] = dst[k*p.wc+l]
		}
		p.col.Coefficients(p.colOut, p.colIn)
		for k, v := range p.colOut {
			dst[k*p.wc+l] = v
		}
	}
	return dst
}

// Inverse stores the inverse DFT of the half spectrum src, divided by h*w,
// in dst (h*w values) and returns dst, allocated when nil. src is not
// modified. src must be the half spectrum of a real array (Hermitian
// symmetric along columns 0 and w/2); for other input the imaginary parts
// that cannot be represented are dropped. It panics when a length is wrong.
func (p *Plan64) Inverse(dst []float64, src []complex128) []float64 {
	if dst == nil {
		dst = make([]float64, p.h*p.w)
	}
	checkLens("Plan64.Inverse", p.h, p.w, len(dst), len(src))
	for l := 0; l < p.wc; l++ {
		for k := range p.colIn {
			p.colIn[k] = src[k*p.wc+l]
		}
		p.col.Sequence(p.colOut, p.colIn)
		for k, v := range p.colOut {
			p.half[k*p.wc+l] = v
		}
	}
	scale := 1 / float64(p.h*p.w)
	for y := 0; y < p.h; y++ {
		row := dst[y*p.w : (y+1)*p.w]
		p.row.Sequence(row, p.half[y*p.wc:(y+1)*p.wc])
		for x := range row {
			row[x] *= scale
		}
	}
	return dst
}
