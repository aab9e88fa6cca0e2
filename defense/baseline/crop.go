package baseline

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// CropOptions configures the crop ensemble of Guo et al. (2018, section 4):
// random crops of the image, each rescaled back to the full size, averaged.
type CropOptions struct {
	// Fraction is the crop side as a fraction of the image side. Default
	// 90/299: Guo et al. crop 90 px out of 299 px ImageNet images; for a
	// 32 px CIFAR-10 image this is a 9.6 px crop.
	Fraction float64
	// Crops is the ensemble size. Default 30, Guo et al.'s.
	Crops int
	// Seed seeds the crop positions. Default 1.
	Seed uint64
}

// DefaultCropOptions returns the published parameters: 90/299 crops, 30 of
// them.
func DefaultCropOptions() CropOptions {
	return CropOptions{Fraction: 90.0 / 299.0, Crops: 30, Seed: 1}
}

// Validate reports a *ParamError for an out-of-range option.
func (o CropOptions) Validate() error {
	if !(o.Fraction > 0 && o.Fraction <= 1) {
		return &ParamError{Defense: "crop", Field: "Fraction", Value: o.Fraction, Reason: "must be in (0, 1]"}
	}
	if o.Crops < 1 {
		return &ParamError{Defense: "crop", Field: "Crops", Value: o.Crops, Reason: "must be >= 1"}
	}
	return nil
}

// CropEnsemble is the crop ensemble: for each image, Crops crops of side
// Fraction x the image side at uniformly random (sub-pixel) positions, each
// rescaled to the image size by bilinear interpolation (as TensorFlow's
// crop_and_resize in the attack code of Athalye et al.), then averaged. The
// papers average the classifier's outputs over the crops; a defense.Transform
// averages the crops themselves. To average predictions instead, use
// Crops = 1 (one random crop per call) and average the classifier's
// outputs over repeated calls. It is randomized and safe for concurrent
// use; any number of channels is accepted.
type CropEnsemble struct {
	opts  CropOptions
	seeds *seedSource
}

// NewCropEnsemble validates opts and returns the transform.
func NewCropEnsemble(opts CropOptions) (*CropEnsemble, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &CropEnsemble{opts: opts, seeds: newSeedSource(opts.Seed)}, nil
}

// Name implements defense.Transform.
func (t *CropEnsemble) Name() string {
	if t.opts.Crops == 1 {
		return "Crop"
	}
	return fmt.Sprintf("Crop-Ens (%d)", t.opts.Crops)
}

// Skip implements defense.Skipper: it discards the seeds of n images.
func (t *CropEnsemble) Skip(n int) bool { t.seeds.skip(n); return true }

// Randomized implements defense.Transform.
func (t *CropEnsemble) Randomized() bool { return true }

// Apply implements defense.Transform.
func (t *CropEnsemble) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	out, n, c, h, w, err := baselineInput("crop", x)
	if err != nil {
		return nil, err
	}
	seeds := t.seeds.draw(n)
	per := c * h * w
	err = forEachImage(ctx, n, func(i int) error {
		rng := imageRand(seeds[i])
		img := out.Data[i*per : (i+1)*per]
		src := append([]float32(nil), img...)
		acc := make([]float64, per)
		crop := make([]float32, per)
		for m := 0; m < t.opts.Crops; m++ {
			box := randomCropBox(rng, h, w, t.opts.Fraction)
			cropResize(crop, src, c, h, w, box)
			for k, v := range crop {
				acc[k] += float64(v)
			}
		}
		inv := 1 / float64(t.opts.Crops)
		for k := range img {
			img[k] = float32(acc[k] * inv)
		}
		tensor.Clip(img, 0, 1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// cropBox is a crop window in continuous pixel coordinates: rows [y0,
// y0+ch), columns [x0, x0+cw), where pixel (r, c) covers [r, r+1) x [c, c+1).
type cropBox struct{ y0, x0, ch, cw float64 }

// randomCropBox draws a crop of fraction frac of each side, uniformly placed
// inside the h x w image.
func randomCropBox(rng *rand.Rand, h, w int, frac float64) cropBox {
	ch, cw := frac*float64(h), frac*float64(w)
	return cropBox{
		y0: rng.Float64() * (float64(h) - ch),
		x0: rng.Float64() * (float64(w) - cw),
		ch: ch, cw: cw,
	}
}

// cropResize writes into dst (c x h x w) the crop box of src (c x h x w)
// rescaled to h x w by bilinear interpolation between pixel centres, with
// edge clamping. The full-image box reproduces src exactly.
func cropResize(dst, src []float32, c, h, w int, box cropBox) {
	plane := h * w
	sy, sx := box.ch/float64(h), box.cw/float64(w)
	for r := 0; r < h; r++ {
		y := box.y0 + (float64(r)+0.5)*sy - 0.5
		y = math.Min(math.Max(y, 0), float64(h-1))
		r0 := int(y)
		r1 := min(r0+1, h-1)
		fy := float32(y - float64(r0))
		for col := 0; col < w; col++ {
			xx := box.x0 + (float64(col)+0.5)*sx - 0.5
			xx = math.Min(math.Max(xx, 0), float64(w-1))
			c0 := int(xx)
			c1 := min(c0+1, w-1)
			fx := float32(xx - float64(c0))
			for ch := 0; ch < c; ch++ {
				p := src[ch*plane:]
				top := p[r0*w+c0] + fx*(p[r0*w+c1]-p[r0*w+c0])
				bot := p[r1*w+c0] + fx*(p[r1*w+c1]-p[r1*w+c0])
				dst[ch*plane+r*w+col] = top + fy*(bot-top)
			}
		}
	}
}
