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

	h, w, hp, wp, wc int
	inv              []float64    // 1/A on the half spectrum (hp, wc)
	row              []float64    // one padded row
	half             []complex128 // half spectrum (hp, wc)
	col, colOut      []complex128
	rowPlan          *fourier.FFT
	colPlan          *fourier.CmplxFFT
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
	t.wc = t.wp/2 + 1
	hp, wp, wc := t.hp, t.wp, t.wc
	t.inv = make([]float64, hp*wc)
	for k := 0; k < hp; k++ {
		gr := 2 - 2*math.Cos(2*math.Pi*float64(k)/float64(hp))
		for l := 0; l < wc; l++ {
			gc := 2 - 2*math.Cos(2*math.Pi*float64(l)/float64(wp))
			t.inv[k*wc+l] = 1 / (1 + t.lambda*gr + t.lambda*gc)
		}
	}
	t.row = make([]float64, wp)
	t.half = make([]complex128, hp*wc)
	t.col = make([]complex128, hp)
	t.colOut = make([]complex128, hp)
	t.rowPlan = fourier.NewFFT(wp)
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
	hp, wp, wc, pd := t.hp, t.wp, t.wc, t.pad
	// Real FFT of each padded row, complex FFT of each of the wc columns,
	// the filter, and back: the real-input half of the 2-D transform.
	for y := 0; y < hp; y++ {
		sy := symmetric(y-pd, h)
		for x := 0; x < wp; x++ {
			t.row[x] = float64(s[sy*w+symmetric(x-pd, w)])
		}
		t.rowPlan.Coefficients(t.half[y*wc:(y+1)*wc], t.row)
	}
	for l := 0; l < wc; l++ {
		for k := 0; k < hp; k++ {
			t.col[k] = t.half[k*wc+l]
		}
		t.colPlan.Coefficients(t.colOut, t.col)
		for k := 0; k < hp; k++ {
			t.col[k] = t.colOut[k] * complex(t.inv[k*wc+l], 0)
		}
		t.colPlan.Sequence(t.colOut, t.col)
		for k := 0; k < hp; k++ {
			t.half[k*wc+l] = t.colOut[k]
		}
	}
	scale := 1 / float64(hp*wp)
	for y := pd; y < pd+h; y++ {
		t.rowPlan.Sequence(t.row, t.half[y*wc:(y+1)*wc])
		for x := 0; x < w; x++ {
			i := (y-pd)*w + x
			l := t.row[x+pd] * scale
			if lo != nil {
				lo[i] = float32(l)
			}
			if hi != nil {
				hi[i] = float32(float64(s[i]) - l)
			}
		}
	}
	return nil
}
