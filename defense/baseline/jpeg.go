package baseline

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"

	"github.com/stl-defense/stl/tensor"
)

// JPEGOptions configures the JPEG compression defense (Das et al. 2017, as
// evaluated by Guo et al. 2018): each image is quantized to 8 bits, encoded
// with the standard library's baseline JPEG encoder (4:2:0 chroma
// subsampling for colour images) and decoded back.
type JPEGOptions struct {
	// Quality is the encoder quality in [1, 100]. Default 75, the value of
	// Das et al. and Guo et al.
	Quality int
}

// DefaultJPEGOptions returns the published parameters: quality 75.
func DefaultJPEGOptions() JPEGOptions { return JPEGOptions{Quality: 75} }

// Validate reports a *ParamError for a quality outside [1, 100].
func (o JPEGOptions) Validate() error {
	if o.Quality < 1 || o.Quality > 100 {
		return &ParamError{Defense: "jpeg", Field: "Quality", Value: o.Quality, Reason: "must be in [1, 100]"}
	}
	return nil
}

// JPEG is the JPEG round-trip defense. It is deterministic and safe for
// concurrent use. It accepts batches of 1 (grey) or 3 (RGB) channels.
type JPEG struct{ opts JPEGOptions }

// NewJPEG validates opts and returns the transform.
func NewJPEG(opts JPEGOptions) (*JPEG, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &JPEG{opts: opts}, nil
}

// Name implements defense.Transform.
func (j *JPEG) Name() string { return fmt.Sprintf("JPEG (q%d)", j.opts.Quality) }

// Randomized implements defense.Transform: JPEG is deterministic.
func (j *JPEG) Randomized() bool { return false }

// Apply implements defense.Transform. It returns a *ChannelsError unless C is 1 or 3.
func (j *JPEG) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	out, n, c, h, w, err := baselineInput("jpeg", x)
	if err != nil {
		return nil, err
	}
	if c != 1 && c != 3 {
		return nil, &ChannelsError{Defense: "jpeg", Want: []int{1, 3}, Got: c}
	}
	per := c * h * w
	err = forEachImage(ctx, n, func(i int) error {
		return jpegRoundTrip(out.Data[i*per:(i+1)*per], c, h, w, j.opts.Quality)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// jpegRoundTrip replaces the planar image img (c x h x w, in [0,1]) by its
// JPEG-compressed version.
func jpegRoundTrip(img []float32, c, h, w, quality int) error {
	plane := h * w
	var src image.Image
	if c == 1 {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for k := 0; k < plane; k++ {
			g.Pix[k] = quantize8(img[k])
		}
		src = g
	} else {
		rgba := image.NewRGBA(image.Rect(0, 0, w, h))
		for k := 0; k < plane; k++ {
			rgba.Pix[4*k] = quantize8(img[k])
			rgba.Pix[4*k+1] = quantize8(img[plane+k])
			rgba.Pix[4*k+2] = quantize8(img[2*plane+k])
			rgba.Pix[4*k+3] = 255
		}
		src = rgba
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: quality}); err != nil {
		return fmt.Errorf("defense jpeg: encode: %w", err)
	}
	dec, err := jpeg.Decode(&buf)
	if err != nil {
		return fmt.Errorf("defense jpeg: decode: %w", err)
	}
	switch d := dec.(type) {
	case *image.Gray:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img[y*w+x] = float32(d.Pix[y*d.Stride+x]) / 255
			}
		}
	case *image.YCbCr:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi, ci := d.YOffset(x, y), d.COffset(x, y)
				r, g, b := color.YCbCrToRGB(d.Y[yi], d.Cb[ci], d.Cr[ci])
				k := y*w + x
				img[k] = float32(r) / 255
				img[plane+k] = float32(g) / 255
				img[2*plane+k] = float32(b) / 255
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				r, g, b, _ := dec.At(x, y).RGBA()
				k := y*w + x
				img[k] = float32(r>>8) / 255
				img[plane+k] = float32(g>>8) / 255
				img[2*plane+k] = float32(b>>8) / 255
			}
		}
	}
	return nil
}

// quantize8 quantizes a pixel in [0,1] to a byte, rounding to nearest.
func quantize8(v float32) uint8 {
	return uint8(math.Round(float64(min(max(v, 0), 1)) * 255))
}
