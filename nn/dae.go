package nn

import (
	"context"
	"fmt"
	"sync"

	"github.com/stl-defense/stl/tensor"
)

// DAE is the denoising auto-encoder of section 3.4: its encoder's output,
// flattened, is the latent code that the defense clusters to stratify the
// image space. Inputs and reconstructions are pixels in [0, 1]. Its methods
// are safe for concurrent use (serialized by a mutex).
type DAE struct {
	mu       sync.Mutex
	cfg      DAEConfig
	enc, dec *Sequential
	params   []*Param
	gbuf     *tensor.Tensor
	Meta     Metadata
}

// NewDAE validates cfg and builds a freshly initialized auto-encoder.
func NewDAE(cfg DAEConfig) (*DAE, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	enc, dec := buildDAE(cfg)
	pool := newGradPool()
	sharePool(enc, pool)
	sharePool(dec, pool)
	d := &DAE{cfg: cfg, enc: enc, dec: dec}
	d.params = append(collectParams(enc, "encoder."), collectParams(dec, "decoder.")...)
	return d, nil
}

// Config returns the configuration the DAE was built with.
func (d *DAE) Config() DAEConfig { return d.cfg }

// Params returns the parameters and buffers in a fixed order.
func (d *DAE) Params() []*Param { return d.params }

// SetThreads changes the number of goroutines per layer (results stay
// deterministic for a given count).
func (d *DAE) SetThreads(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n < 1 {
		n = 1
	}
	d.cfg.Threads = n
	setThreads(d.enc, n)
	setThreads(d.dec, n)
}

// InputShape returns the (C, H, W) of one image.
func (d *DAE) InputShape() (c, h, w int) { return d.cfg.Channels, d.cfg.Height, d.cfg.Width }

// LatentDim returns D, the length of one latent code:
// Filters * (H / 2^Levels) * (W / 2^Levels).
func (d *DAE) LatentDim() int {
	s := 1 << d.cfg.Levels
	return d.cfg.Filters * (d.cfg.Height / s) * (d.cfg.Width / s)
}

// Encode returns the flattened latent codes (N, D) of the images x (N, C,
// H, W) in inference mode, in chunks of ChunkSize. The result is newly
// allocated.
func (d *DAE) Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkInput("nn.DAE.Encode", x, d.cfg.Channels, d.cfg.Height, d.cfg.Width); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, dim := x.Shape[0], d.LatentDim()
	out := tensor.New(n, dim)
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+ChunkSize, n)
		z := d.enc.Forward(x.Batch(lo, hi), false)
		copy(out.Batch(lo, hi).Data, z.Data)
	}
	return out, nil
}

// Reconstruct returns the DAE's denoised reconstruction (N, C, H, W) of x
// in inference mode, pixels in (0, 1). The result is newly allocated.
func (d *DAE) Reconstruct(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkInput("nn.DAE.Reconstruct", x, d.cfg.Channels, d.cfg.Height, d.cfg.Width); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := x.Shape[0]
	out := tensor.New(x.Shape...)
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+ChunkSize, n)
		y := d.dec.Forward(d.enc.Forward(x.Batch(lo, hi), false), false)
		o := out.Batch(lo, hi).Data
		for i, v := range y.Data {
			o[i] = sigmoid(v)
		}
	}
	return out, nil
}

// trainStep runs a training forward of x, the BCE-with-logits loss against
// target, and backpropagation into the parameter gradients.
func (d *DAE) trainStep(x, target *tensor.Tensor) (float64, error) {
	y := d.dec.Forward(d.enc.Forward(x, true), true)
	if !tensor.SameShape(y, target) {
		return 0, fmt.Errorf("nn: DAE output %v, target %v", y.Shape, target.Shape)
	}
	d.gbuf = buf(d.gbuf, y.Shape...)
	g := d.gbuf
	loss, err := BCEWithLogits(y, target, g)
	if err != nil {
		return 0, err
	}
	dz := d.dec.Backward(g, GradMode{Input: true, Params: true})
	d.enc.Backward(dz, GradMode{Params: true})
	return loss, nil
}
