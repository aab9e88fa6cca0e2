package baseline

import (
	"context"
	"math"
	"math/bits"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// DeflectOptions configures pixel deflection (Prakash et al. 2018): a few
// pixel values are replaced by the value of a random neighbour, then the
// image is denoised by soft wavelet thresholding with BayesShrink in YCbCr.
// The class-activation map that Prakash et al. use to spare the object
// (R-CAM) needs a classifier and is not part of this model-agnostic
// transform: deflection targets are drawn uniformly.
type DeflectOptions struct {
	// Deflections is the number of pixel values replaced. Default 200, as
	// in Prakash et al. Following their code, a deflection replaces one
	// channel of one pixel; the targets here are distinct (drawn without
	// replacement) and each takes the value its neighbour had in the input,
	// so exactly Deflections values are reassigned.
	Deflections int
	// Window bounds the neighbour offset: each of the row and column offsets
	// is uniform in [-Window, Window], not both 0, landing inside the image.
	// Default 10.
	Window int
	// Sigma is the noise standard deviation BayesShrink assumes, for
	// channels in [0,1]. Default 0.04. 0 turns the denoising off.
	Sigma float64
	// Levels is the number of levels of the orthonormal Haar wavelet
	// transform (db1, the default wavelet of the skimage denoiser Prakash
	// et al. call). 0 picks skimage's default, max(1, floor(log2(min(H,W))) - 3):
	// 2 levels at 32 px, 4 at 224 px.
	Levels int
	// Seed seeds the deflections. Default 1.
	Seed uint64
}

// DefaultDeflectOptions returns the published parameters: 200 deflections
// in a window of 10, BayesShrink with sigma 0.04.
func DefaultDeflectOptions() DeflectOptions {
	return DeflectOptions{Deflections: 200, Window: 10, Sigma: 0.04, Seed: 1}
}

// Validate reports a *ParamError for an out-of-range option.
func (o DeflectOptions) Validate() error {
	bad := func(f string, v any, r string) error {
		return &ParamError{Defense: "deflect", Field: f, Value: v, Reason: r}
	}
	switch {
	case o.Deflections < 0:
		return bad("Deflections", o.Deflections, "must be >= 0")
	case o.Window < 1:
		return bad("Window", o.Window, "must be >= 1")
	case !(o.Sigma >= 0) || math.IsInf(o.Sigma, 0):
		return bad("Sigma", o.Sigma, "must be >= 0 and finite")
	case o.Levels < 0 || o.Levels > 16:
		return bad("Levels", o.Levels, "must be in [0, 16]")
	}
	return nil
}

// PixelDeflection is the pixel deflection defense. It is randomized (when
// Deflections > 0) and safe for concurrent use. Three-channel batches are
// denoised in YCbCr (full-range BT.601, the JPEG colour space); any other
// channel count is denoised channel by channel.
type PixelDeflection struct {
	opts  DeflectOptions
	seeds *seedSource
}

// NewPixelDeflection validates opts and returns the transform.
func NewPixelDeflection(opts DeflectOptions) (*PixelDeflection, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &PixelDeflection{opts: opts, seeds: newSeedSource(opts.Seed)}, nil
}

// Name implements defense.Transform.
func (p *PixelDeflection) Name() string { return "Pixel deflection" }

// Skip implements defense.Skipper: it discards the seeds of n images.
func (p *PixelDeflection) Skip(n int) bool { p.seeds.skip(n); return true }

// Randomized implements defense.Transform.
func (p *PixelDeflection) Randomized() bool { return p.opts.Deflections > 0 }

// Apply implements defense.Transform. It returns a *ParamError when an image has
// fewer than Deflections values or is a single pixel.
func (p *PixelDeflection) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return p.apply(ctx, x, p.opts.Sigma > 0)
}

// Deflect runs the deflection step alone, without the wavelet denoising,
// drawing from the same seeded source as Apply (so it advances Apply's
// sequence). It is meant for tests and figures.
func (p *PixelDeflection) Deflect(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return p.apply(ctx, x, false)
}

func (p *PixelDeflection) apply(ctx context.Context, x *tensor.Tensor, denoise bool) (*tensor.Tensor, error) {
	out, n, c, h, w, err := baselineInput("deflect", x)
	if err != nil {
		return nil, err
	}
	if p.opts.Deflections > c*h*w || (p.opts.Deflections > 0 && h*w < 2) {
		return nil, &ParamError{Defense: "deflect", Field: "Deflections", Value: p.opts.Deflections,
			Reason: "more than the image's values, or a single-pixel image"}
	}
	seeds := p.seeds.draw(n)
	per := c * h * w
	err = forEachImage(ctx, n, func(i int) error {
		img := out.Data[i*per : (i+1)*per]
		deflectPixels(img, c, h, w, p.opts.Deflections, p.opts.Window, imageRand(seeds[i]))
		if denoise {
			waveletDenoise(img, c, h, w, p.opts.Sigma, p.opts.Levels)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deflectPixels replaces count distinct values of img (c x h x w) by the
// input value of a random neighbour of the same channel within window.
// It needs count <= c*h*w and h*w >= 2.
func deflectPixels(img []float32, c, h, w, count, window int, rng *rand.Rand) {
	if count == 0 {
		return
	}
	src := append([]float32(nil), img...)
	plane := h * w
	for _, t := range sampleDistinct(rng, c*plane, count) {
		ch, rc := t/plane, t%plane
		r, col := rc/w, rc%w
		for {
			a := rng.IntN(2*window+1) - window
			b := rng.IntN(2*window+1) - window
			rr, cc := r+a, col+b
			if (a == 0 && b == 0) || rr < 0 || rr >= h || cc < 0 || cc >= w {
				continue
			}
			img[t] = src[ch*plane+rr*w+cc]
			break
		}
	}
}

// sampleDistinct returns k distinct integers of [0, n) in a random order
// (Floyd's algorithm, then a shuffle), using O(k) memory.
func sampleDistinct(rng *rand.Rand, n, k int) []int {
	seen := make(map[int]struct{}, k)
	out := make([]int, 0, k)
	for j := n - k; j < n; j++ {
		t := rng.IntN(j + 1)
		if _, ok := seen[t]; ok {
			t = j
		}
		seen[t] = struct{}{}
		out = append(out, t)
	}
	rng.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

// waveletDenoise denoises img (c x h x w, in [0,1]) in place: to YCbCr when
// c == 3, then per channel a Haar transform of the given levels (0: auto),
// soft thresholding of every detail subband with its BayesShrink threshold
// for noise sigma, the inverse transform, back to RGB and clipping to [0,1].
func waveletDenoise(img []float32, c, h, w int, sigma float64, levels int) {
	if levels == 0 {
		levels = max(1, bits.Len(uint(min(h, w)))-1-3)
	}
	plane := h * w
	if c == 3 {
		rgbToYCbCr(img[:plane], img[plane:2*plane], img[2*plane:])
	}
	step := 1 << levels
	ph, pw := (h+step-1)/step*step, (w+step-1)/step*step
	buf := make([]float64, ph*pw)
	tmp := make([]float64, max(ph, pw))
	for ch := 0; ch < c; ch++ {
		p := img[ch*plane : (ch+1)*plane]
		for r := 0; r < ph; r++ {
			sr := halfSymIndex(r, h)
			for col := 0; col < pw; col++ {
				buf[r*pw+col] = float64(p[sr*w+halfSymIndex(col, w)])
			}
		}
		haar2D(buf, ph, pw, levels, tmp)
		bayesShrink(buf, ph, pw, levels, sigma)
		ihaar2D(buf, ph, pw, levels, tmp)
		for r := 0; r < h; r++ {
			for col := 0; col < w; col++ {
				p[r*w+col] = float32(buf[r*pw+col])
			}
		}
	}
	if c == 3 {
		yCbCrToRGB(img[:plane], img[plane:2*plane], img[2*plane:])
	}
	tensor.Clip(img, 0, 1)
}

// bayesShrink soft-thresholds, in the Mallat layout left by haar2D, each
// detail subband d of each level with the BayesShrink threshold (Chang, Yu
// and Vetterli 2000) sigma^2 / sqrt(max(mean(d^2) - sigma^2, eps)).
func bayesShrink(buf []float64, h, w, levels int, sigma float64) {
	v := sigma * sigma
	for l := 0; l < levels; l++ {
		hh, hw := h>>(l+1), w>>(l+1) // subband size at this level
		for _, off := range [3][2]int{{0, hw}, {hh, 0}, {hh, hw}} {
			var ss float64
			for r := 0; r < hh; r++ {
				for c := 0; c < hw; c++ {
					d := buf[(off[0]+r)*w+off[1]+c]
					ss += d * d
				}
			}
			thr := v / math.Sqrt(math.Max(ss/float64(hh*hw)-v, 1e-12))
			for r := 0; r < hh; r++ {
				for c := 0; c < hw; c++ {
					k := (off[0]+r)*w + off[1] + c
					d := buf[k]
					switch {
					case d > thr:
						buf[k] = d - thr
					case d < -thr:
						buf[k] = d + thr
					default:
						buf[k] = 0
					}
				}
			}
		}
	}
}

// haar2D replaces the h x w array buf (both divisible by 2^levels) by its
// orthonormal 2-D Haar transform in Mallat layout: at each level the
// current low-pass block of rows then columns is split into averages
// (x0+x1)/sqrt2 in the first half and differences (x0-x1)/sqrt2 in the
// second. tmp needs max(h, w) values. The transform preserves the sum of
// squares.
func haar2D(buf []float64, h, w, levels int, tmp []float64) {
	for l := 0; l < levels; l++ {
		bh, bw := h>>l, w>>l
		for r := 0; r < bh; r++ {
			haarStep(buf[r*w:], 1, bw, tmp)
		}
		for c := 0; c < bw; c++ {
			haarStep(buf[c:], w, bh, tmp)
		}
	}
}

// ihaar2D inverts haar2D.
func ihaar2D(buf []float64, h, w, levels int, tmp []float64) {
	for l := levels - 1; l >= 0; l-- {
		bh, bw := h>>l, w>>l
		for c := 0; c < bw; c++ {
			ihaarStep(buf[c:], w, bh, tmp)
		}
		for r := 0; r < bh; r++ {
			ihaarStep(buf[r*w:], 1, bw, tmp)
		}
	}
}

// haarStep transforms n (even) values x[0], x[s], ... in place.
func haarStep(x []float64, s, n int, tmp []float64) {
	half := n / 2
	for j := 0; j < half; j++ {
		a, b := x[2*j*s], x[(2*j+1)*s]
		tmp[j] = (a + b) * math.Sqrt2 / 2
		tmp[half+j] = (a - b) * math.Sqrt2 / 2
	}
	for j := 0; j < n; j++ {
		x[j*s] = tmp[j]
	}
}

// ihaarStep inverts haarStep.
func ihaarStep(x []float64, s, n int, tmp []float64) {
	half := n / 2
	for j := 0; j < half; j++ {
		a, d := x[j*s], x[(half+j)*s]
		tmp[2*j] = (a + d) * math.Sqrt2 / 2
		tmp[2*j+1] = (a - d) * math.Sqrt2 / 2
	}
	for j := 0; j < n; j++ {
		x[j*s] = tmp[j]
	}
}

// rgbToYCbCr converts three planes in place to full-range BT.601 YCbCr
// (JFIF), all in [0,1] with the chroma centred at 0.5.
func rgbToYCbCr(r, g, b []float32) {
	for k := range r {
		R, G, B := float64(r[k]), float64(g[k]), float64(b[k])
		r[k] = float32(0.299*R + 0.587*G + 0.114*B)
		g[k] = float32(0.5 - 0.168735892*R - 0.331264108*G + 0.5*B)
		b[k] = float32(0.5 + 0.5*R - 0.418687589*G - 0.081312411*B)
	}
}

// yCbCrToRGB inverts rgbToYCbCr in place.
func yCbCrToRGB(y, cb, cr []float32) {
	for k := range y {
		Y, Cb, Cr := float64(y[k]), float64(cb[k])-0.5, float64(cr[k])-0.5
		y[k] = float32(Y + 1.402*Cr)
		cb[k] = float32(Y - 0.344136286*Cb - 0.714136286*Cr)
		cr[k] = float32(Y + 1.772*Cb)
	}
}
