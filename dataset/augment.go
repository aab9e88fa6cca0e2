package dataset

import (
	"math/rand"

	"github.com/stl-defense/stl/internal/augment"
	"github.com/stl-defense/stl/internal/option"
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

// Validate returns an *OptionError for a Pad outside 0..64.
func (o AugmentOptions) Validate() error {
	if o.Pad < 0 || o.Pad > 64 {
		return option.New("dataset", "AugmentOptions.Pad", o.Pad, "want 0..64")
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
	p, per := a.opts.Pad, c*h*w
	for i := 0; i < n; i++ {
		dy := a.rng.Intn(2*p+1) - p
		dx := a.rng.Intn(2*p+1) - p
		flip := a.opts.Flip && a.rng.Intn(2) == 1
		augment.ShiftFlip(dst.Data[i*per:(i+1)*per], src.Data[i*per:(i+1)*per], c, h, w, dy, dx, flip)
	}
	return dst, nil
}
