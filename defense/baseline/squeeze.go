package baseline

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// SqueezeOptions configures feature squeezing (Xu et al. 2018) used as an
// input transformation: bit-depth reduction followed by median smoothing.
type SqueezeOptions struct {
	// Bits is the colour depth kept, in [1, 8]: each value becomes
	// round(x (2^Bits - 1)) / (2^Bits - 1). Default 5, Xu et al.'s choice
	// for CIFAR-10. 8 leaves 8-bit images unchanged.
	Bits int
	// MedianSize is the side of the square median window; 0 or 1 turns
	// the median filter off. Default 2 (Xu et al.'s 2x2 for CIFAR-10). As in
	// scipy.ndimage.median_filter, which Xu et al. use, an even window of
	// side s covers offsets [-s/2, s/2 - 1] around a pixel, the border is
	// mirrored (half-sample symmetric), and the median of an even count is
	// the upper of the two middle values.
	MedianSize int
}

// DefaultSqueezeOptions returns Xu et al.'s CIFAR-10 squeezers: 5 bits and
// a 2x2 median filter.
func DefaultSqueezeOptions() SqueezeOptions { return SqueezeOptions{Bits: 5, MedianSize: 2} }

// Validate reports a *ParamError for an out-of-range option.
func (o SqueezeOptions) Validate() error {
	if o.Bits < 1 || o.Bits > 8 {
		return &ParamError{Defense: "squeeze", Field: "Bits", Value: o.Bits, Reason: "must be in [1, 8]"}
	}
	if o.MedianSize < 0 || o.MedianSize > 15 {
		return &ParamError{Defense: "squeeze", Field: "MedianSize", Value: o.MedianSize, Reason: "must be in [0, 15]"}
	}
	return nil
}

// Squeeze is the feature-squeezing transform. It is deterministic and safe
// for concurrent use; any number of channels is accepted, each filtered on
// its own.
type Squeeze struct{ opts SqueezeOptions }

// NewSqueeze validates opts and returns the transform.
func NewSqueeze(opts SqueezeOptions) (*Squeeze, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Squeeze{opts: opts}, nil
}

// Name implements defense.Transform.
func (s *Squeeze) Name() string {
	switch {
	case s.opts.MedianSize < 2:
		return fmt.Sprintf("Bit depth (%d bits)", s.opts.Bits)
	case s.opts.Bits == 8:
		return fmt.Sprintf("Median %dx%d", s.opts.MedianSize, s.opts.MedianSize)
	}
	return fmt.Sprintf("Squeeze (%d bits, median %dx%d)", s.opts.Bits, s.opts.MedianSize, s.opts.MedianSize)
}

// Randomized implements defense.Transform: squeezing is deterministic.
func (s *Squeeze) Randomized() bool { return false }

// Apply implements defense.Transform.
func (s *Squeeze) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	out, n, c, h, w, err := baselineInput("squeeze", x)
	if err != nil {
		return nil, err
	}
	plane := h * w
	err = forEachImage(ctx, n, func(i int) error {
		img := out.Data[i*c*plane : (i+1)*c*plane]
		reduceBitDepth(img, s.opts.Bits)
		if s.opts.MedianSize >= 2 {
			tmp := make([]float32, plane)
			win := make([]float32, s.opts.MedianSize*s.opts.MedianSize)
			for ch := 0; ch < c; ch++ {
				p := img[ch*plane : (ch+1)*plane]
				medianFilter(tmp, p, h, w, s.opts.MedianSize, win)
				copy(p, tmp)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// reduceBitDepth quantizes each value of img in place to 2^bits levels
// evenly spaced over [0,1].
func reduceBitDepth(img []float32, bits int) {
	levels := float64(int(1)<<bits - 1)
	for i, v := range img {
		img[i] = float32(math.Round(float64(v)*levels) / levels)
	}
}

// medianFilter writes into dst the median filter of the h x w plane src
// with a size x size window (see SqueezeOptions.MedianSize for the window
// placement, border and even-count conventions). win is scratch of length
// size*size.
func medianFilter(dst, src []float32, h, w, size int, win []float32) {
	lo := -(size / 2) // offsets lo .. lo+size-1
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			k := 0
			for dr := lo; dr < lo+size; dr++ {
				rr := halfSymIndex(r+dr, h)
				for dc := lo; dc < lo+size; dc++ {
					win[k] = src[rr*w+halfSymIndex(c+dc, w)]
					k++
				}
			}
			slices.Sort(win)
			dst[r*w+c] = win[len(win)/2]
		}
	}
}

// halfSymIndex maps an index outside [0, n) back inside by half-sample symmetric
// reflection (-1 -> 0, n -> n-1), as scipy's "reflect" mode.
func halfSymIndex(i, n int) int {
	if n == 1 {
		return 0
	}
	for i < 0 || i >= n {
		if i < 0 {
			i = -i - 1
		}
		if i >= n {
			i = 2*n - 1 - i
		}
	}
	return i
}
