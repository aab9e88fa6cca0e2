package csc

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Tikhonov splits images into lowpass and highpass parts as SPORCO's
// signal.tikhonov_filter(s, lambda, npd) does, the pre-processing of the
// STL projection: the lowpass part l of each channel s minimizes
//
//	1/2 ||l - s||^2 + lambda/2 (||G_r l||^2 + ||G_c l||^2)
//
// with G_r, G_c circular first differences along rows and columns, solved in
// the Fourier domain on s symmetrically padded by Pad pixels on each side
// (numpy's "symmetric" mode: the edge pixel is repeated), then cropped; the
// highpass part is s - l. Computed in float64; the filter's response is
// cached per image size.
//
// A Tikhonov owns scratch memory and is not safe for concurrent use.
type Tikhonov struct {
	lambda float64
	pad    int

	h, w, hp, wp int
	inv          []float64 // 1/A on the padded grid
	buf          []complex128
	col, colOut  []complex128
	rowOut       []complex128
	rowPlan      *fourier.CmplxFFT
	colPlan      *fourier.CmplxFFT
}

// NewTikhonov returns a filter with the given regularization (SPORCO and
// the official STL code use lambda 5, pad 16). It returns an
// *OptionError for lambda < 0 or non-finite, or pad < 0.
func NewTikhonov(lambda float64, pad int) (*Tikhonov, error) {
	if !(lambda >= 0) || math.IsInf(lambda, 0) {
		return nil, &OptionError{Field: "TikhonovLambda", Value: lambda, Want: "finite, >= 0"}
	}
	if pad < 0 || pad > 1<<12 {
		return nil, &OptionError{Field: "Pad", Value: pad, Want: "in [0, 4096]"}
	}
	return &Tikhonov{lambda: lambda, pad: pad}, nil
}

func (t *Tikhonov) resize(h, w int) {
	if t.h == h && t.w == w {
		return
	}
	t.h, t.w = h, w
	t.hp, t.wp = h+2*t.pad, w+2*t.pad
	hp, wp := t.hp, t.wp
	t.inv = make([]float64, hp*wp)
	for k := 0; k < hp; k++ {
		gr := 2 - 2*math.Cos(2*math.Pi*float64(k)/float64(hp))
		for l := 0; l < wp; l++ {
			gc := 2 - 2*math.Cos(2*math.Pi*float64(l)/float64(wp))
			t.inv[k*wp+l] = 1 / (1 + t.lambda*gr + t.lambda*gc)
		}
	}
	t.buf = make([]complex128, hp*wp)
	t.col = make([]complex128, hp)
	t.colOut = make([]complex128, hp)
	t.rowOut = make([]complex128, wp)
	t.rowPlan = fourier.NewCmplxFFT(wp)
	t.colPlan = fourier.NewCmplxFFT(hp)
}

// symmetric maps a padded index to the source index, numpy "symmetric".
func symmetric(i, n int) int {
	p := 2 * n
	i %= p
	if i < 0 {
		i += p
	}
	if i >= n {
		i = p - 1 - i
	}
	return i
}

// Split writes the lowpass and highpass parts of the channel s (h×w) into
// lo and hi (either may be nil; lo and hi may not alias s).
func (t *Tikhonov) Split(lo, hi, s []float32, h, w int) error {
	if h <= 0 || w <= 0 || len(s) != h*w || (lo != nil && len(lo) != h*w) || (hi != nil && len(hi) != h*w) {
		return fmt.Errorf("csc: Tikhonov.Split: want %d values per slice for %dx%d", h*w, h, w)
	}
	t.resize(h, w)
	hp, wp, pd := t.hp, t.wp, t.pad
	for y := 0; y < hp; y++ {
		sy := symmetric(y-pd, h)
		for x := 0; x < wp; x++ {
			t.buf[y*wp+x] = complex(float64(s[sy*w+symmetric(x-pd, w)]), 0)
		}
	}
	t.fft2(false)
	for i, v := range t.inv {
		t.buf[i] *= complex(v, 0)
	}
	t.fft2(true)
	scale := 1 / float64(hp*wp)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			l := real(t.buf[(y+pd)*wp+x+pd]) * scale
			if lo != nil {
				lo[y*w+x] = float32(l)
			}
			if hi != nil {
				hi[y*w+x] = float32(float64(s[y*w+x]) - l)
			}
		}
	}
	return nil
}

// fft2 transforms t.buf in place (unnormalized both ways).
func (t *Tikhonov) fft2(inverse bool) {
	hp, wp := t.hp, t.wp
	for y := 0; y < hp; y++ {
		row := t.buf[y*wp : (y+1)*wp]
		if inverse {
			t.rowPlan.Sequence(t.rowOut, row)
		} else {
			t.rowPlan.Coefficients(t.rowOut, row)
		}
		copy(row, t.rowOut)
	}
	for x := 0; x < wp; x++ {
		for y := 0; y < hp; y++ {
			t.col[y] = t.buf[y*wp+x]
		}
		if inverse {
			t.colPlan.Sequence(t.colOut, t.col)
		} else {
			t.colPlan.Coefficients(t.colOut, t.col)
		}
		for y := 0; y < hp; y++ {
			t.buf[y*wp+x] = t.colOut[y]
		}
	}
}
