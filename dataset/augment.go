package dataset

import (
	"fmt"
	"math/rand"

	"github.com/stl-defense/stl/tensor"
)

// AugmentOptions configure the standard CIFAR-10 training augmentation used
// for the classifiers (He et al. 2016, and the classifiers the paper
// retrains on projected images): a random crop of the image padded with
// zeros, and a random horizontal flip.
type AugmentOptions struct {
	// Pad is the zero padding on each side before the crop; the crop is
	// shifted by up to ±Pad pixels. Default 4.
	Pad int
	// Flip mirrors each image left-right with probability 1/2. Default true.
	Flip bool
}

// DefaultAugmentOptions returns Pad 4 and Flip true.
func DefaultAugmentOptions() AugmentOptions { return AugmentOptions{Pad: 4, Flip: true} }

// Validate checks the options.
func (o AugmentOptions) Validate() error {
	if o.Pad < 0 || o.Pad > 64 {
		return fmt.Errorf("dataset: augmentation pad %d, want 0..64", o.Pad)
	}
	return nil
}

// Augmenter draws random crops and flips from its own seeded source, so a
// training run is repeatable. It is not safe for concurrent use; use one
// per worker with distinct seeds.
type Augmenter struct {
	opts AugmentOptions
	rng  *rand.Rand
}

// NewAugmenter validates opts and returns an Augmenter seeded with seed.
func NewAugmenter(opts AugmentOptions, seed int64) (*Augmenter, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Augmenter{opts: opts, rng: rand.New(rand.NewSource(seed))}, nil
}

// Apply writes an augmented copy of the batch src (N, C, H, W) into dst and
// returns dst; dst is allocated when nil and must otherwise have src's shape
// and not alias it. For each image, in order, it draws the vertical then the
// horizontal shift in [-Pad, Pad] and then (if Flip) a coin; pixels shifted
// in from outside are 0.
func (a *Augmenter) Apply(dst, src *tensor.Tensor) (*tensor.Tensor, error) {
	n, c, h, w, err := src.NCHW()
	if err != nil {
		return nil, err
	}
	if dst == nil {
		dst = tensor.New(src.Shape...)
	} else if !tensor.SameShape(dst, src) {
		return nil, &tensor.ShapeError{Op: "dataset.Augmenter.Apply", Want: src.Shape, Got: dst.Shape}
	}
	p := a.opts.Pad
	for i := 0; i < n; i++ {
		dy := a.rng.Intn(2*p+1) - p
		dx := a.rng.Intn(2*p+1) - p
		flip := a.opts.Flip && a.rng.Intn(2) == 1
		for ch := 0; ch < c; ch++ {
			base := (i*c + ch) * h * w
			in := src.Data[base : base+h*w]
			out := dst.Data[base : base+h*w]
			for y := 0; y < h; y++ {
				sy := y + dy
				row := out[y*w : (y+1)*w]
				if sy < 0 || sy >= h {
					for x := range row {
						row[x] = 0
					}
					continue
				}
				srow := in[sy*w : (sy+1)*w]
				for x := range row {
					xx := x
					if flip {
						xx = w - 1 - x
					}
					sx := xx + dx
					if sx < 0 || sx >= w {
						row[x] = 0
					} else {
						row[x] = srow[sx]
					}
				}
			}
		}
	}
	return dst, nil
}
