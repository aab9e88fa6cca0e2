package baseline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// MagNetDAEOptions configures MagNet's reformer auto-encoder (Meng and Chen
// 2017, the CIFAR-10 reformer): Layers convolutions of 3x3 with "same"
// padding, each followed by a sigmoid; all but the last have Filters output
// channels, the last has the image's channels. It is trained to map
// x + Noise * N(0, 1), clipped to [0,1], back to x under the mean squared
// error, with Adam.
type MagNetDAEOptions struct {
	// Channels of the images. Default 3.
	Channels int
	// Filters of the hidden convolutions. Default 3, MagNet's.
	Filters int
	// Layers is the number of convolutions, >= 2. Default 3.
	Layers int
	// Noise is the standard deviation of the Gaussian noise added to the
	// training inputs. Default 0.025, MagNet's.
	Noise float64
	// Epochs of training. Default 10. MagNet trains 400 epochs with
	// batches of 256 and Adam at 1e-3; with batches of 32 and a rate of
	// 1e-2 this network reaches a lower loss within a few epochs (on 4,000
	// CIFAR-10 images, 5 epochs: MSE 0.0038 against 0.061).
	Epochs int
	// BatchSize of training. Default 32 (MagNet: 256, see Epochs).
	BatchSize int
	// LR is Adam's learning rate. Default 1e-2 (MagNet: 1e-3, see Epochs).
	LR float64
	// Seed seeds the initialization, the shuffling and the noise. Default 1.
	Seed uint64
	// Threads used by each convolution. Default 0: GOMAXPROCS.
	Threads int
}

// DefaultMagNetDAEOptions returns MagNet's CIFAR-10 reformer settings.
func DefaultMagNetDAEOptions() MagNetDAEOptions {
	return MagNetDAEOptions{Channels: 3, Filters: 3, Layers: 3, Noise: 0.025, Epochs: 10, BatchSize: 32, LR: 1e-2, Seed: 1}
}

// Validate reports a *ParamError for an out-of-range option.
func (o MagNetDAEOptions) Validate() error {
	bad := func(f string, v any, r string) error {
		return &ParamError{Defense: "magnet", Field: f, Value: v, Reason: r}
	}
	switch {
	case o.Channels < 1 || o.Channels > maxQuiltChannels:
		return bad("Channels", o.Channels, fmt.Sprintf("must be in [1, %d]", maxQuiltChannels))
	case o.Filters < 1 || o.Filters > 256:
		return bad("Filters", o.Filters, "must be in [1, 256]")
	case o.Layers < 2 || o.Layers > 16:
		return bad("Layers", o.Layers, "must be in [2, 16]")
	case !(o.Noise >= 0) || math.IsInf(o.Noise, 0):
		return bad("Noise", o.Noise, "must be >= 0 and finite")
	case o.Epochs < 0:
		return bad("Epochs", o.Epochs, "must be >= 0")
	case o.BatchSize < 1:
		return bad("BatchSize", o.BatchSize, "must be >= 1")
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return bad("LR", o.LR, "must be positive and finite")
	case o.Threads < 0:
		return bad("Threads", o.Threads, "must be >= 0")
	}
	return nil
}

// MagNetDAE is the reformer's auto-encoder. It satisfies Reformer; its
// methods are safe for concurrent use (serialized by a mutex). Being fully
// convolutional it accepts images of any size.
type MagNetDAE struct {
	mu    sync.Mutex
	opts  MagNetDAEOptions
	convs []*nn.Conv2D
	net   *nn.Sequential
}

// NewMagNetDAE validates opts and returns an untrained auto-encoder with
// He-initialized weights drawn from opts.Seed.
func NewMagNetDAE(opts MagNetDAEOptions) (*MagNetDAE, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	threads := opts.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0xdae))
	d := &MagNetDAE{opts: opts, net: nn.NewSequential()}
	in := opts.Channels
	for l := 0; l < opts.Layers; l++ {
		out := opts.Filters
		if l == opts.Layers-1 {
			out = opts.Channels
		}
		conv := nn.NewConv2D(in, out, 3, 3, 1, 1, true, threads, rng)
		d.convs = append(d.convs, conv)
		d.net.Layers = append(d.net.Layers, conv, &nn.Sigmoid{})
		in = out
	}
	return d, nil
}

// Options returns the options the auto-encoder was built with.
func (d *MagNetDAE) Options() MagNetDAEOptions { return d.opts }

func (d *MagNetDAE) params() []*nn.Param {
	var ps []*nn.Param
	for _, c := range d.convs {
		ps = append(ps, c.Params()...)
	}
	return ps
}

// magnetChunk bounds the images run through the network at once.
const magnetChunk = 256

// Reconstruct implements Reformer: the auto-encoder's output for x (N, C,
// H, W) in [0,1], newly allocated, pixels in (0,1). It checks ctx once per
// chunk of 256 images.
func (d *MagNetDAE) Reconstruct(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	in, err := d.input(x)
	if err != nil {
		return nil, err
	}
	return d.chunks(ctx, in, func(_, _ int, part *tensor.Tensor) *tensor.Tensor {
		return d.net.Forward(part, false)
	})
}

// VJP returns the vector-jacobian product (dg/dx)^T gy of the
// auto-encoder g at the batch x (N, C, H, W), a new tensor of the shape of
// x; gy has that shape too. It lets white-box attacks differentiate through
// the reformer exactly (it satisfies attack.Approx). It checks ctx once per
// chunk of 256 images.
func (d *MagNetDAE) VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error) {
	in, err := d.input(x)
	if err != nil {
		return nil, err
	}
	if gy == nil || !tensor.SameShape(gy, x) || len(gy.Data) != len(x.Data) {
		var got []int
		if gy != nil {
			got = gy.Shape
		}
		return nil, &tensor.ShapeError{Op: "baseline.MagNetDAE.VJP", Want: x.Shape, Got: got}
	}
	if err := tensor.CheckFinite(gy.Data); err != nil {
		return nil, fmt.Errorf("defense magnet: VJP: %w", err)
	}
	return d.chunks(ctx, in, func(lo, hi int, part *tensor.Tensor) *tensor.Tensor {
		// nn's Backward may work in place in dy's storage: hand it a copy so
		// the caller's gy is never modified.
		g := gy.Batch(lo, hi).Clone()
		d.net.Forward(part, false)
		return d.net.Backward(g, nn.GradMode{Input: true})
	})
}

// input checks x as the auto-encoder's input and returns a clipped copy.
func (d *MagNetDAE) input(x *tensor.Tensor) (*tensor.Tensor, error) {
	in, _, c, _, _, err := baselineInput("magnet", x)
	if err != nil {
		return nil, err
	}
	if c != d.opts.Channels {
		return nil, &ChannelsError{Defense: "magnet", Want: []int{d.opts.Channels}, Got: c}
	}
	return in, nil
}

// chunks runs step over the images of in (N, C, H, W), magnetChunk at a
// time, under the lock, checking ctx before each chunk, and gathers its
// results (each of the shape of its part) into a new tensor. step gets
// the chunk's images [lo, hi) of in.
func (d *MagNetDAE) chunks(ctx context.Context, in *tensor.Tensor, step func(lo, hi int, part *tensor.Tensor) *tensor.Tensor) (*tensor.Tensor, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := in.Shape[0]
	out := tensor.New(in.Shape...)
	for lo := 0; lo < n; lo += magnetChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+magnetChunk, n)
		copy(out.Batch(lo, hi).Data, step(lo, hi, in.Batch(lo, hi)).Data)
	}
	return out, nil
}

// MagNetTrainResult holds the training history: the mean training loss
// (MSE against the clean images) of each epoch.
type MagNetTrainResult struct {
	EpochLoss []float64
}

// Train fits the auto-encoder to the clean images train (N, C, H, W) in
// [0,1] for opts.Epochs epochs, reporting each batch to rep (nil for none)
// under the stage "magnet dae", and checking ctx once per batch. Training
// is deterministic under opts.Seed.
func (d *MagNetDAE) Train(ctx context.Context, train *tensor.Tensor, rep progress.Reporter) (*MagNetTrainResult, error) {
	x, n, c, h, w, err := baselineInput("magnet", train)
	if err != nil {
		return nil, err
	}
	if c != d.opts.Channels {
		return nil, &ChannelsError{Defense: "magnet", Want: []int{d.opts.Channels}, Got: c}
	}
	if n == 0 {
		return nil, &tensor.ShapeError{Op: "baseline.MagNetDAE.Train", Want: []int{-1, c, h, w}, Got: train.Shape}
	}
	rep = progress.Or(rep)
	d.mu.Lock()
	defer d.mu.Unlock()
	opt, err := nn.NewAdam(nn.DefaultAdamOptions())
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(d.opts.Seed, 0x7a1e))
	params := d.params()
	per := c * h * w
	bs := min(d.opts.BatchSize, n)
	batches := (n + bs - 1) / bs
	noisy := tensor.New(bs, c, h, w)
	clean := tensor.New(bs, c, h, w)
	var grad *tensor.Tensor
	res := &MagNetTrainResult{}
	for ep := 0; ep < d.opts.Epochs; ep++ {
		perm := rng.Perm(n)
		var sum float64
		for b := 0; b < batches; b++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			idx := perm[b*bs : min((b+1)*bs, n)]
			m := len(idx)
			nb := &tensor.Tensor{Shape: []int{m, c, h, w}, Data: noisy.Data[:m*per]}
			cb := &tensor.Tensor{Shape: []int{m, c, h, w}, Data: clean.Data[:m*per]}
			for j, i := range idx {
				src := x.Data[i*per : (i+1)*per]
				copy(cb.Data[j*per:], src)
				dst := nb.Data[j*per : (j+1)*per]
				for k, v := range src {
					dst[k] = float32(math.Min(1, math.Max(0, float64(v)+d.opts.Noise*rng.NormFloat64())))
				}
			}
			y := d.net.Forward(nb, true)
			if grad == nil || !tensor.SameShape(grad, y) {
				grad = tensor.New(y.Shape...)
			}
			loss, err := nn.MSE(y, cb, grad)
			if err != nil {
				return nil, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, fmt.Errorf("defense magnet: training diverged at epoch %d batch %d (loss %v)", ep+1, b+1, loss)
			}
			d.net.Backward(grad, nn.GradMode{Params: true})
			opt.Step(params, d.opts.LR)
			sum += loss * float64(m)
			rep.Report("magnet dae", ep*batches+b+1, d.opts.Epochs*batches,
				fmt.Sprintf("epoch %d loss %.5f", ep+1, loss))
		}
		res.EpochLoss = append(res.EpochLoss, sum/float64(n))
	}
	return res, nil
}

// ErrMagNetFormat marks a malformed auto-encoder file.
var ErrMagNetFormat = errors.New("malformed MagNet auto-encoder")

const magnetMagic = "STLMAGN1"

// Encode writes the auto-encoder: the magic "STLMAGN1", Channels, Filters
// and Layers as little-endian uint32, then each convolution's weights
// (K x C x 3 x 3) and biases (K) as little-endian float32.
func (d *MagNetDAE) Encode(w io.Writer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var hdr [20]byte
	copy(hdr[:8], magnetMagic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(d.opts.Channels))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(d.opts.Filters))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(d.opts.Layers))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for _, p := range d.params() {
		if err := writeFloat32s(w, p.W); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMagNetDAE reads an auto-encoder written by Encode; the training
// options other than the architecture take their defaults. A truncated
// input returns an error wrapping io.ErrUnexpectedEOF, a malformed one
// (bad magic, sizes out of range, non-finite weights) ErrMagNetFormat.
func DecodeMagNetDAE(r io.Reader) (*MagNetDAE, error) {
	var hdr [20]byte
	if err := readHeader(r, hdr[:], magnetMagic, "MagNet auto-encoder", ErrMagNetFormat); err != nil {
		return nil, err
	}
	o := DefaultMagNetDAEOptions()
	o.Channels = int(binary.LittleEndian.Uint32(hdr[8:]))
	o.Filters = int(binary.LittleEndian.Uint32(hdr[12:]))
	o.Layers = int(binary.LittleEndian.Uint32(hdr[16:]))
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMagNetFormat, err)
	}
	// The weights are read before the network is built, so that a header
	// announcing a large network in front of a short stream fails after
	// reading what is there (the network's layers: Layers convolutions of
	// 3x3 kernels with biases, Filters wide, back to Channels).
	n, in := 0, o.Channels
	for l := 0; l < o.Layers; l++ {
		out := o.Filters
		if l == o.Layers-1 {
			out = o.Channels
		}
		n += in*out*9 + out
		in = out
	}
	w, err := readFloat32sGrow(r, n)
	if err != nil {
		return nil, fmt.Errorf("MagNet auto-encoder weights: %w", err)
	}
	if err := tensor.CheckFinite(w); err != nil {
		return nil, fmt.Errorf("%w: non-finite weight", ErrMagNetFormat)
	}
	d, err := NewMagNetDAE(o)
	if err != nil {
		return nil, err
	}
	for _, p := range d.params() {
		if len(p.W) > len(w) {
			return nil, fmt.Errorf("%w: weights of another shape", ErrMagNetFormat)
		}
		w = w[copy(p.W, w):]
	}
	if len(w) != 0 {
		return nil, fmt.Errorf("%w: weights of another shape", ErrMagNetFormat)
	}
	return d, nil
}

// Save writes the auto-encoder to path atomically.
func (d *MagNetDAE) Save(path string) error { return safefile.Write(path, d.Encode) }

// LoadMagNetDAE reads an auto-encoder saved by Save.
func LoadMagNetDAE(path string) (*MagNetDAE, error) { return loadFile(path, DecodeMagNetDAE) }
