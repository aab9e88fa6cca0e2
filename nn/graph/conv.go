package graph

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// ConvSpec describes a 2-D convolution as ONNX's Conv does: Weight of shape
// (K, C/Groups, R, S), an optional Bias (K), Strides (h, w), Dilations (h,
// w) and Pads (top, left, bottom, right) of zeros. Zero strides and
// dilations mean 1.
type ConvSpec struct {
	Weight    []float32
	Shape     [4]int // K, C/Groups, R, S
	Bias      []float32
	Groups    int
	Strides   [2]int
	Dilations [2]int
	Pads      [4]int
}

func (s *ConvSpec) defaults() {
	s.Groups = max(s.Groups, 1)
	for i := range 2 {
		s.Strides[i] = max(s.Strides[i], 1)
		s.Dilations[i] = max(s.Dilations[i], 1)
	}
}

// Validate reports a spec that describes no convolution.
func (s ConvSpec) Validate() error {
	s.defaults()
	k, cg, r, q := s.Shape[0], s.Shape[1], s.Shape[2], s.Shape[3]
	switch {
	case k < 1 || cg < 1 || r < 1 || q < 1:
		return fmt.Errorf("weight shape %v: want positive sizes", s.Shape)
	case len(s.Weight) != k*cg*r*q:
		return fmt.Errorf("weight has %d values, shape %v needs %d", len(s.Weight), s.Shape, k*cg*r*q)
	case s.Bias != nil && len(s.Bias) != k:
		return fmt.Errorf("bias has %d values, want %d", len(s.Bias), k)
	case k%s.Groups != 0:
		return fmt.Errorf("%d output channels do not split into %d groups", k, s.Groups)
	}
	for _, p := range s.Pads {
		if p < 0 || p > maxGeometry {
			return fmt.Errorf("pads %v: want 0 to %d", s.Pads, maxGeometry)
		}
	}
	for i := range 2 {
		if s.Strides[i] > maxGeometry || (s.Shape[2+i]-1)*s.Dilations[i] >= maxGeometry {
			return fmt.Errorf("strides %v, dilations %v: want strides and dilated filters of at most %d", s.Strides, s.Dilations, maxGeometry)
		}
	}
	return nil
}

// maxGeometry bounds strides, pads and (dilated) filter and window sizes:
// larger ones describe no image classifier and would only exhaust memory.
const maxGeometry = 4096

// FoldBatchNorm returns s followed by an inference-mode batch norm folded
// into it: with f = scale / sqrt(variance + eps), weight'[k] = f[k]
// weight[k] and bias'[k] = f[k] (bias[k] - mean[k]) + offset[k]. Each
// argument has K values. The arithmetic is nn.Conv2D's when it folds its
// batch norm (f rounded to float32, the products in float32), so that a
// network folded here computes what nn's classifiers compute, bit for bit.
func (s ConvSpec) FoldBatchNorm(scale, offset, mean, variance []float32, eps float64) (ConvSpec, error) {
	k := s.Shape[0]
	if len(scale) != k || len(offset) != k || len(mean) != k || len(variance) != k {
		return s, fmt.Errorf("batch norm over %d/%d/%d/%d channels after a convolution of %d", len(scale), len(offset), len(mean), len(variance), k)
	}
	out := s
	out.Weight, out.Bias = make([]float32, len(s.Weight)), make([]float32, k)
	per := len(s.Weight) / k
	for c := range k {
		f := float32(float64(scale[c]) * (1 / math.Sqrt(float64(variance[c])+eps)))
		b := -mean[c]
		if s.Bias != nil {
			b += s.Bias[c]
		}
		out.Bias[c] = f*b + offset[c]
		for i, v := range s.Weight[c*per : (c+1)*per] {
			out.Weight[c*per+i] = f * v
		}
	}
	return out, nil
}

// Conv is a convolution on nn's kernels (oneDNN in the cgo build): one
// nn.Conv2D per group on the group's channels, dilations as filters with
// zeros between their taps, asymmetric padding as an explicit zero border.
type Conv struct {
	spec   ConvSpec
	convs  []*nn.Conv2D
	cg, kg int // input and output channels per group
	pad    bool
	xp     *tensor.Tensor   // padded input
	xs, ys []*tensor.Tensor // per-group inputs and output gradients
	y, dx  *tensor.Tensor
	dxp    *tensor.Tensor
	in     []int
}

// NewConv builds the convolution of spec with threads goroutines per
// kernel.
func NewConv(spec ConvSpec, threads int) (*Conv, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec.defaults()
	k, cg, r, q := spec.Shape[0], spec.Shape[1], spec.Shape[2], spec.Shape[3]
	dh, dw := spec.Dilations[0], spec.Dilations[1]
	rd, qd := (r-1)*dh+1, (q-1)*dw+1
	wd := spec.Weight
	if dh > 1 || dw > 1 {
		wd = make([]float32, k*cg*rd*qd)
		for o := range k * cg {
			for a := range r {
				for b := range q {
					wd[(o*rd+a*dh)*qd+b*dw] = spec.Weight[(o*r+a)*q+b]
				}
			}
		}
	}
	l := &Conv{spec: spec, cg: cg, kg: k / spec.Groups}
	p := spec.Pads
	l.pad = p[0] != p[2] || p[1] != p[3]
	ph, pw := p[0], p[1]
	if l.pad {
		ph, pw = 0, 0
	}
	per := l.kg * cg * rd * qd
	for g := range spec.Groups {
		c := &nn.Conv2D{P: nn.ConvParams{C: cg, K: l.kg, R: rd, S: qd, StrideH: spec.Strides[0], StrideW: spec.Strides[1], PadH: ph, PadW: pw}, Threads: threads}
		c.Weight = &nn.Param{Name: "weight", Shape: []int{l.kg, cg, rd, qd}, W: wd[g*per : (g+1)*per]}
		if spec.Bias != nil {
			c.Bias = &nn.Param{Name: "bias", Shape: []int{l.kg}, W: spec.Bias[g*l.kg : (g+1)*l.kg]}
		}
		l.convs = append(l.convs, c)
	}
	l.xs, l.ys = make([]*tensor.Tensor, spec.Groups), make([]*tensor.Tensor, spec.Groups)
	return l, nil
}

// SetThreads implements Threaded.
func (l *Conv) SetThreads(n int) {
	for _, c := range l.convs {
		c.Close()
		c.Threads = n
	}
}

// Forward implements Op.
func (l *Conv) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	x := in[0]
	G := l.spec.Groups
	if len(x.Shape) != 4 || x.Shape[1] != l.cg*G {
		return nil, &tensor.ShapeError{Op: "Conv", Want: []int{-1, l.cg * G, -1, -1}, Got: x.Shape}
	}
	l.in = append(l.in[:0], x.Shape...)
	if l.pad {
		p := l.spec.Pads
		l.xp = ensure(l.xp, []int{x.Shape[0], x.Shape[1], x.Shape[2] + p[0] + p[2], x.Shape[3] + p[1] + p[3]})
		border(l.xp, x, p[0], p[1], false)
		x = l.xp
	}
	n, h, w := x.Shape[0], x.Shape[2], x.Shape[3]
	cp := l.convs[0].P
	cp.N, cp.H, cp.W = n, h, w
	if oh, ow := cp.OutHW(); oh < 1 || ow < 1 {
		return nil, fmt.Errorf("input %v is smaller than the %dx%d filter", l.in, cp.R, cp.S)
	}
	if G == 1 {
		return l.convs[0].Forward(x, false), nil
	}
	for g, c := range l.convs {
		l.xs[g] = ensure(l.xs[g], []int{n, l.cg, h, w})
		copyChannels(l.xs[g], 0, x, g*l.cg, l.cg)
		yg := c.Forward(l.xs[g], false)
		if g == 0 {
			l.y = ensure(l.y, []int{n, l.kg * G, yg.Shape[2], yg.Shape[3]})
		}
		copyChannels(l.y, g*l.kg, yg, 0, l.kg)
	}
	return l.y, nil
}

// Backward implements Op.
func (l *Conv) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	mode := nn.GradMode{Input: true}
	var dx *tensor.Tensor
	if len(l.convs) == 1 {
		dx = l.convs[0].Backward(dy, mode)
	} else {
		x := l.xs[0]
		l.dxp = ensure(l.dxp, []int{x.Shape[0], l.cg * len(l.convs), x.Shape[2], x.Shape[3]})
		for g, c := range l.convs {
			l.ys[g] = ensure(l.ys[g], []int{dy.Shape[0], l.kg, dy.Shape[2], dy.Shape[3]})
			copyChannels(l.ys[g], 0, dy, g*l.kg, l.kg)
			copyChannels(l.dxp, g*l.cg, c.Backward(l.ys[g], mode), 0, l.cg)
		}
		dx = l.dxp
	}
	if l.pad {
		l.dx = ensure(l.dx, l.in)
		border(dx, l.dx, l.spec.Pads[0], l.spec.Pads[1], true)
		dx = l.dx
	}
	return []*tensor.Tensor{dx}, nil
}

// border copies small (N, C, h, w) into big (N, C, H, W) at offset (top,
// left), zeroing the rest of big; with crop it copies the other way.
func border(big, small *tensor.Tensor, top, left int, crop bool) {
	H, W := big.Shape[2], big.Shape[3]
	h, w := small.Shape[2], small.Shape[3]
	if !crop {
		clear(big.Data)
	}
	for pl := range big.Shape[0] * big.Shape[1] {
		for i := range h {
			b := big.Data[pl*H*W+(i+top)*W+left:][:w]
			s := small.Data[pl*h*w+i*w:][:w]
			if crop {
				copy(s, b)
			} else {
				copy(b, s)
			}
		}
	}
}

// copyChannels copies count channels of src from channel so to dst from
// channel do; both are (N, C, ...) with equal N and trailing sizes.
func copyChannels(dst *tensor.Tensor, do int, src *tensor.Tensor, so, count int) {
	n, dc, sc := dst.Shape[0], dst.Shape[1], src.Shape[1]
	hw := src.Len() / (n * sc)
	for i := range n {
		copy(dst.Data[(i*dc+do)*hw:(i*dc+do+count)*hw], src.Data[(i*sc+so)*hw:(i*sc+so+count)*hw])
	}
}

// BatchNorm is an inference-mode batch normalization over dimension 1 on
// nn.BatchNorm2D: y = scale (x - mean) / sqrt(var + eps) + offset.
type BatchNorm struct{ bn *nn.BatchNorm2D }

// NewBatchNorm returns the batch norm of the given per-channel values.
func NewBatchNorm(scale, offset, mean, variance []float32, eps float64, threads int) (*BatchNorm, error) {
	c := len(scale)
	if c == 0 || len(offset) != c || len(mean) != c || len(variance) != c {
		return nil, fmt.Errorf("batch norm with %d/%d/%d/%d channel values", len(scale), len(offset), len(mean), len(variance))
	}
	if !(eps >= 0) {
		return nil, fmt.Errorf("batch norm epsilon %g: want >= 0", eps)
	}
	bn := nn.NewBatchNorm2D(c, threads)
	copy(bn.Gamma.W, scale)
	copy(bn.Beta.W, offset)
	copy(bn.RunMean.W, mean)
	copy(bn.RunVar.W, variance)
	bn.Eps = eps
	return &BatchNorm{bn}, nil
}

// SetThreads implements Threaded.
func (l *BatchNorm) SetThreads(n int) { l.bn.Threads = n }

// Forward implements Op.
func (l *BatchNorm) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	x := in[0]
	if c := len(l.bn.Gamma.W); len(x.Shape) < 2 || x.Shape[1] != c {
		return nil, &tensor.ShapeError{Op: "BatchNormalization", Want: []int{-1, c}, Got: x.Shape}
	}
	return l.bn.Forward(x, false), nil
}

// Backward implements Op.
func (l *BatchNorm) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	return []*tensor.Tensor{l.bn.Backward(dy, nn.GradMode{Input: true})}, nil
}

// Linear is y = x W^T + b over the last dimension of x, W of shape (Out,
// In), on nn.Dense (ONNX Gemm and MatMul with a constant right operand).
type Linear struct {
	d      *nn.Dense
	xv     tensor.Tensor
	yv, dv tensor.Tensor
	in     []int
}

// NewLinear returns the layer of weight w (out x in, row-major) and bias b
// (out values, or nil for none).
func NewLinear(w []float32, out, in int, b []float32, threads int) (*Linear, error) {
	if out < 1 || in < 1 || len(w) != out*in {
		return nil, fmt.Errorf("linear weight of %d values for %d x %d", len(w), out, in)
	}
	if b != nil && len(b) != out {
		return nil, fmt.Errorf("linear bias of %d values, want %d", len(b), out)
	}
	if b == nil {
		b = make([]float32, out)
	}
	d := &nn.Dense{Weight: &nn.Param{Name: "weight", Shape: []int{out, in}, W: w}, Bias: &nn.Param{Name: "bias", Shape: []int{out}, W: b},
		In: in, Out: out, Gemm: nn.DefaultGemm(), Threads: threads}
	return &Linear{d: d}, nil
}

// SetThreads implements Threaded.
func (l *Linear) SetThreads(n int) { l.d.Threads = n }

// Forward implements Op.
func (l *Linear) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	x := in[0]
	if len(x.Shape) < 2 || x.Shape[len(x.Shape)-1] != l.d.In {
		return nil, &tensor.ShapeError{Op: "Gemm/MatMul", Want: []int{-1, l.d.In}, Got: x.Shape}
	}
	l.in = append(l.in[:0], x.Shape...)
	rows := x.Len() / l.d.In
	l.xv = tensor.Tensor{Shape: []int{rows, l.d.In}, Data: x.Data}
	y := l.d.Forward(&l.xv, false)
	shape := append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), l.d.Out)
	l.yv = tensor.Tensor{Shape: shape, Data: y.Data}
	return &l.yv, nil
}

// Backward implements Op.
func (l *Linear) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	d := tensor.Tensor{Shape: []int{dy.Len() / l.d.Out, l.d.Out}, Data: dy.Data}
	dx := l.d.Backward(&d, nn.GradMode{Input: true})
	l.dv = tensor.Tensor{Shape: l.in, Data: dx.Data}
	return []*tensor.Tensor{&l.dv}, nil
}

// Normalize is (x - mean[c]) / std[c] per channel on nn.Normalize (the
// input normalization: x is (N, C, ...)).
type Normalize struct{ n nn.Normalize }

// NewNormalize returns the normalization of the given per-channel values.
func NewNormalize(mean, std []float32, threads int) (*Normalize, error) {
	if len(mean) == 0 || len(mean) != len(std) {
		return nil, fmt.Errorf("normalization with %d means and %d standard deviations", len(mean), len(std))
	}
	for _, v := range std {
		if !(v > 0) {
			return nil, fmt.Errorf("standard deviations %v: want positive values", std)
		}
	}
	return &Normalize{nn.Normalize{Mean: mean, Std: std, Threads: threads}}, nil
}

// SetThreads implements Threaded.
func (l *Normalize) SetThreads(n int) { l.n.Threads = n }

// Forward implements Op.
func (l *Normalize) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	if c := len(l.n.Mean); len(in[0].Shape) < 2 || in[0].Shape[1] != c {
		return nil, &tensor.ShapeError{Op: "Normalize", Want: []int{-1, c}, Got: in[0].Shape}
	}
	return l.n.Forward(in[0], false), nil
}

// Backward implements Op.
func (l *Normalize) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	return []*tensor.Tensor{l.n.Backward(dy, nn.GradMode{Input: true})}, nil
}

// Layer adapts an element-wise nn.Layer (nn.ReLU, nn.Sigmoid) to an Op.
type Layer struct{ L nn.Layer }

// Forward implements Op.
func (l Layer) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	return l.L.Forward(in[0], false), nil
}

// Backward implements Op.
func (l Layer) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	return []*tensor.Tensor{l.L.Backward(dy, nn.GradMode{Input: true})}, nil
}
