package graph

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// PoolSpec describes a 2-D max or average pooling as ONNX's MaxPool and
// AveragePool do: Kernel (h, w), Strides (zero means 1), Pads (top, left,
// bottom, right), CeilMode rounding the output size up, and for averages
// CountIncludePad dividing by the window's size within the padded input
// rather than by its count of real pixels. A window never starts in the
// bottom or right padding (PyTorch's rule for CeilMode).
type PoolSpec struct {
	Kernel          [2]int
	Strides         [2]int
	Pads            [4]int
	CeilMode        bool
	CountIncludePad bool
}

// Validate reports a spec that describes no pooling.
func (s PoolSpec) Validate() error {
	if s.Kernel[0] < 1 || s.Kernel[1] < 1 || s.Strides[0] < 0 || s.Strides[1] < 0 ||
		max(s.Kernel[0], s.Kernel[1], s.Strides[0], s.Strides[1]) > maxGeometry {
		return fmt.Errorf("pool kernel %v, strides %v: want positive sizes", s.Kernel, s.Strides)
	}
	for i, p := range s.Pads {
		if p < 0 || p >= s.Kernel[i%2] {
			return fmt.Errorf("pool pads %v: want 0 <= pad < kernel %v", s.Pads, s.Kernel)
		}
	}
	return nil
}

// outSize is the pooled size of n pixels along one axis.
func outSize(n, k, s, p0, p1 int, ceil bool) int {
	span := n + p0 + p1 - k
	if span < 0 {
		return 0
	}
	o := span/s + 1
	if ceil && span%s != 0 {
		o++
		if (o-1)*s >= n+p0 {
			o--
		}
	}
	return o
}

// Pool is MaxPool (Max set) or AveragePool.
type Pool struct {
	spec     PoolSpec
	Max      bool
	x, y, dx *tensor.Tensor
	arg      []int32 // per output, the input index of the maximum
}

// NewPool returns the pooling of spec; max selects MaxPool.
func NewPool(spec PoolSpec, isMax bool) (*Pool, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	for i := range 2 {
		spec.Strides[i] = max(spec.Strides[i], 1)
	}
	return &Pool{spec: spec, Max: isMax}, nil
}

// window returns the rows [lo, hi) of input covered by output row o along
// one axis, and the window's size within the padded input.
func window(o, n, k, s, p0, p1 int) (lo, hi, size int) {
	lo = o*s - p0
	hi = min(lo+k, n+p1)
	size = hi - lo
	return max(lo, 0), min(hi, n), size
}

// Forward implements Op.
func (l *Pool) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	x := in[0]
	sp := l.spec
	if len(x.Shape) != 4 {
		return nil, &tensor.ShapeError{Op: "Pool", Want: []int{-1, -1, -1, -1}, Got: x.Shape}
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh := outSize(h, sp.Kernel[0], sp.Strides[0], sp.Pads[0], sp.Pads[2], sp.CeilMode)
	ow := outSize(w, sp.Kernel[1], sp.Strides[1], sp.Pads[1], sp.Pads[3], sp.CeilMode)
	if oh < 1 || ow < 1 {
		return nil, fmt.Errorf("input %v is smaller than the %v pooling window", x.Shape, sp.Kernel)
	}
	l.x = x
	l.y = ensure(l.y, []int{n, c, oh, ow})
	if l.Max && len(l.arg) != len(l.y.Data) {
		l.arg = make([]int32, len(l.y.Data))
	}
	for pl := range n * c {
		src := x.Data[pl*h*w : (pl+1)*h*w]
		for i := range oh {
			h0, h1, sh := window(i, h, sp.Kernel[0], sp.Strides[0], sp.Pads[0], sp.Pads[2])
			for j := range ow {
				w0, w1, sw := window(j, w, sp.Kernel[1], sp.Strides[1], sp.Pads[1], sp.Pads[3])
				o := pl*oh*ow + i*ow + j
				if l.Max {
					best, bi := float32(math.Inf(-1)), int32(h0*w+w0)
					for a := h0; a < h1; a++ {
						for b := w0; b < w1; b++ {
							if v := src[a*w+b]; v > best {
								best, bi = v, int32(a*w+b)
							}
						}
					}
					l.y.Data[o], l.arg[o] = best, bi
					continue
				}
				var s float32
				for a := h0; a < h1; a++ {
					for _, v := range src[a*w+w0 : a*w+w1] {
						s += v
					}
				}
				div := (h1 - h0) * (w1 - w0)
				if sp.CountIncludePad {
					div = sh * sw
				}
				l.y.Data[o] = s / float32(div)
			}
		}
	}
	return l.y, nil
}

// Backward implements Op: the maximum's input gets the gradient (MaxPool),
// or every input of the window its share (AveragePool).
func (l *Pool) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	sp := l.spec
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	oh, ow := l.y.Shape[2], l.y.Shape[3]
	l.dx = ensure(l.dx, l.x.Shape)
	clear(l.dx.Data)
	for pl := range n * c {
		dst, g := l.dx.Data[pl*h*w:(pl+1)*h*w], dy.Data[pl*oh*ow:(pl+1)*oh*ow]
		if l.Max {
			for o, v := range g {
				dst[l.arg[pl*oh*ow+o]] += v
			}
			continue
		}
		for i := range oh {
			h0, h1, sh := window(i, h, sp.Kernel[0], sp.Strides[0], sp.Pads[0], sp.Pads[2])
			for j := range ow {
				w0, w1, sw := window(j, w, sp.Kernel[1], sp.Strides[1], sp.Pads[1], sp.Pads[3])
				div := (h1 - h0) * (w1 - w0)
				if sp.CountIncludePad {
					div = sh * sw
				}
				v := g[i*ow+j] / float32(div)
				for a := h0; a < h1; a++ {
					for b := w0; b < w1; b++ {
						dst[a*w+b] += v
					}
				}
			}
		}
	}
	return []*tensor.Tensor{l.dx}, nil
}

// GlobalAvgPool averages each channel, (N, C, H, W) to (N, C, 1, 1), on
// nn.GlobalAvgPool.
type GlobalAvgPool struct {
	gap    nn.GlobalAvgPool
	yv, dv tensor.Tensor
}

// Forward implements Op.
func (l *GlobalAvgPool) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	x := in[0]
	if len(x.Shape) < 3 {
		return nil, &tensor.ShapeError{Op: "GlobalAveragePool", Want: []int{-1, -1, -1, -1}, Got: x.Shape}
	}
	y := l.gap.Forward(x, false)
	shape := []int{x.Shape[0], x.Shape[1]}
	for range x.Shape[2:] {
		shape = append(shape, 1)
	}
	l.yv = tensor.Tensor{Shape: shape, Data: y.Data}
	return &l.yv, nil
}

// Backward implements Op.
func (l *GlobalAvgPool) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	l.dv = tensor.Tensor{Shape: dy.Shape[:2], Data: dy.Data}
	return []*tensor.Tensor{l.gap.Backward(&l.dv, nn.GradMode{Input: true})}, nil
}

// AdaptiveAvgPool averages (N, C, H, W) to (N, C, OH, OW) as PyTorch's
// AdaptiveAvgPool2d: output row i averages input rows floor(i H / OH) to
// ceil((i+1) H / OH) - 1, and likewise for columns (an input smaller than
// the output repeats its pixels).
type AdaptiveAvgPool struct {
	OH, OW   int
	x, y, dx *tensor.Tensor
}

// span returns the input rows [lo, hi) of output row i.
func span(i, in, out int) (lo, hi int) { return i * in / out, ((i+1)*in + out - 1) / out }

// Forward implements Op.
func (l *AdaptiveAvgPool) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	x := in[0]
	if len(x.Shape) != 4 || l.OH < 1 || l.OW < 1 {
		return nil, &tensor.ShapeError{Op: "AdaptiveAvgPool", Want: []int{-1, -1, -1, -1}, Got: x.Shape}
	}
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	l.x = x
	l.y = ensure(l.y, []int{n, c, l.OH, l.OW})
	l.each(h, w, func(pl, o, h0, h1, w0, w1 int) {
		var s float32
		for a := h0; a < h1; a++ {
			for _, v := range x.Data[pl*h*w+a*w+w0 : pl*h*w+a*w+w1] {
				s += v
			}
		}
		l.y.Data[o] = s / float32((h1-h0)*(w1-w0))
	})
	return l.y, nil
}

// each calls fn for every output value: its plane, index and window.
func (l *AdaptiveAvgPool) each(h, w int, fn func(pl, o, h0, h1, w0, w1 int)) {
	for pl := range l.y.Shape[0] * l.y.Shape[1] {
		for i := range l.OH {
			h0, h1 := span(i, h, l.OH)
			for j := range l.OW {
				w0, w1 := span(j, w, l.OW)
				fn(pl, (pl*l.OH+i)*l.OW+j, h0, h1, w0, w1)
			}
		}
	}
}

// Backward implements Op.
func (l *AdaptiveAvgPool) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	h, w := l.x.Shape[2], l.x.Shape[3]
	l.dx = ensure(l.dx, l.x.Shape)
	clear(l.dx.Data)
	l.each(h, w, func(pl, o, h0, h1, w0, w1 int) {
		g := dy.Data[o] / float32((h1-h0)*(w1-w0))
		for a := h0; a < h1; a++ {
			for b := w0; b < w1; b++ {
				l.dx.Data[pl*h*w+a*w+b] += g
			}
		}
	})
	return []*tensor.Tensor{l.dx}, nil
}
