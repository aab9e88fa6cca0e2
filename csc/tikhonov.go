package csc

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/tensor"
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
	plan             *fft.Plan64
	inv              []float64    // 1/A on the half spectrum (hp, wc)
	padded           []float64    // the padded channel (hp, wp), then its lowpass part
	half             []complex128 // half spectrum (hp, wc)
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

func (t *Tikhonov) resize(h, w int) error {
	if t.h == h && t.w == w {
		return nil
	}
	plan, err := fft.NewPlan64(h+2*t.pad, w+2*t.pad)
	if err != nil {
		return fmt.Errorf("csc: Tikhonov: %w", err)
	}
	t.h, t.w, t.plan = h, w, plan
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
	t.padded = make([]float64, hp*wp)
	t.half = make([]complex128, hp*wc)
	return nil
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
	if err := t.resize(h, w); err != nil {
		return err
	}
	hp, wp, pd := t.hp, t.wp, t.pad
	for y := 0; y < hp; y++ {
		sy := symmetric(y-pd, h)
		for x := 0; x < wp; x++ {
			t.padded[y*wp+x] = float64(s[sy*w+symmetric(x-pd, w)])
		}
	}
	t.plan.Forward(t.half, t.padded)
	for i, a := range t.inv {
		t.half[i] *= complex(a, 0)
	}
	t.plan.Inverse(t.padded, t.half)
	for y := 0; y < h; y++ {
		row := t.padded[(y+pd)*wp+pd : (y+pd)*wp+pd+w]
		for x, l := range row {
			i := y*w + x
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

// Highpass returns, in a new tensor, the Tikhonov highpass part of every
// channel of x, an (N, C, H, W) batch, split by the lowpass filter with
// the given lambda and pad (see Tikhonov): the part of an image the STL
// projection codes, hence the part its dictionaries are learned on (as in
// SPORCO's dictionary-learning examples). It checks ctx once per image and
// returns an *OptionError for a bad lambda or pad.
func Highpass(ctx context.Context, x *tensor.Tensor, lambda float64, pad int) (*tensor.Tensor, error) {
	if x == nil {
		return nil, errors.New("csc: Highpass: nil images")
	}
	n, c, h, w, err := x.NCHW()
	if err != nil {
		return nil, err
	}
	tk, err := NewTikhonov(lambda, pad)
	if err != nil {
		return nil, err
	}
	hi := tensor.New(x.Shape...)
	for p := 0; p < n*c; p++ {
		if p%c == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if err := tk.Split(nil, hi.Data[p*h*w:(p+1)*h*w], x.Data[p*h*w:(p+1)*h*w], h, w); err != nil {
			return nil, err
		}
	}
	return hi, nil
}
