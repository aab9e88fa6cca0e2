package nn

import (
	"math"

	"github.com/stl-defense/stl/tensor"
)

// MaxPool2D takes the maximum over K x K windows with stride Stride (no
// padding; the output is floor((H-K)/Stride)+1). Ties go to the first
// maximum in row-major window order.
type MaxPool2D struct {
	K, Stride int
	Threads   int
	pool      *gradPool
	x, y, dx  *tensor.Tensor
	arg       []int32
}

// Params implements Layer.
func (*MaxPool2D) Params() []*Param { return nil }

// Forward implements Layer.
func (l *MaxPool2D) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh, ow := (h-l.K)/l.Stride+1, (w-l.K)/l.Stride+1
	l.x = x
	l.y = buf(l.y, n, c, oh, ow)
	if !(l.K == 2 && l.Stride == 2) && len(l.arg) != len(l.y.Data) {
		l.arg = make([]int32, len(l.y.Data))
	}
	parallelFor(l.Threads, n*c, func(_, lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := x.Data[pl*h*w : (pl+1)*h*w]
			dst := l.y.Data[pl*oh*ow : (pl+1)*oh*ow]
			if l.K == 2 && l.Stride == 2 {
				maxPool2x2(dst, src, w, oh, ow)
				continue
			}
			arg := l.arg[pl*oh*ow : (pl+1)*oh*ow]
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					best, bi := float32(math.Inf(-1)), int32(-1)
					for a := 0; a < l.K; a++ {
						row := (i*l.Stride + a) * w
						for b := 0; b < l.K; b++ {
							idx := row + j*l.Stride + b
							if v := src[idx]; v > best || bi < 0 {
								best, bi = v, int32(idx)
							}
						}
					}
					dst[i*ow+j], arg[i*ow+j] = best, bi
				}
			}
		}
	})
	return l.y
}

// maxPool2x2 is the 2x2, stride-2 case of MaxPool2D.Forward on one plane.
// It keeps no arg-max (branch-free max is several times faster than
// tracking the index); the backward pass finds the maximum again.
func maxPool2x2(dst, src []float32, w, oh, ow int) {
	for i := 0; i < oh; i++ {
		r0 := src[2*i*w : 2*i*w+2*ow]
		r1 := src[(2*i+1)*w : (2*i+1)*w+2*ow]
		d := dst[i*ow : (i+1)*ow]
		for j := range d {
			d[j] = max(max(r0[2*j], r0[2*j+1]), max(r1[2*j], r1[2*j+1]))
		}
	}
}

// maxPool2x2Back routes each output gradient to the first window entry (in
// row-major order) equal to the output, the one Forward's max picked. It
// writes every entry of dx without branches (which entry holds the maximum
// is unpredictable: a switch mispredicts about half the time and ran 4x
// slower); the rows and columns no window covers (odd sizes) are zeroed.
func maxPool2x2Back(dx, dy, src, y []float32, h, w, oh, ow int) {
	if h != 2*oh || w != 2*ow {
		clear(dx)
	}
	for i := 0; i < oh; i++ {
		s0, s1 := src[2*i*w:2*i*w+2*ow], src[(2*i+1)*w:(2*i+1)*w+2*ow]
		d0, d1 := dx[2*i*w:2*i*w+2*ow], dx[(2*i+1)*w:(2*i+1)*w+2*ow]
		ys, gs := y[i*ow:(i+1)*ow], dy[i*ow:(i+1)*ow]
		for j := range ys {
			m, g := ys[j], math.Float32bits(gs[j])
			a, b := s0[2*j:2*j+2:2*j+2], s1[2*j:2*j+2:2*j+2]
			e0 := b2u(a[0] == m)
			e1 := b2u(a[1] == m) &^ e0
			e2 := b2u(b[0] == m) &^ (e0 | e1)
			e3 := 1 &^ (e0 | e1 | e2)
			o0, o1 := d0[2*j:2*j+2:2*j+2], d1[2*j:2*j+2:2*j+2]
			o0[0] = math.Float32frombits(g & -e0)
			o0[1] = math.Float32frombits(g & -e1)
			o1[0] = math.Float32frombits(g & -e2)
			o1[1] = math.Float32frombits(g & -e3)
		}
	}
}

// b2u is 1 for true and 0 for false (compiled to a SETcc, no branch).
func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Backward implements Layer: the gradient goes to the window's maximum.
func (l *MaxPool2D) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	ohw := l.y.Shape[2] * l.y.Shape[3]
	l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
	fast := l.K == 2 && l.Stride == 2
	parallelFor(l.Threads, n*c, func(_, lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			dst := l.dx.Data[pl*h*w : (pl+1)*h*w]
			if fast {
				maxPool2x2Back(dst, dy.Data[pl*ohw:(pl+1)*ohw], l.x.Data[pl*h*w:(pl+1)*h*w], l.y.Data[pl*ohw:(pl+1)*ohw], h, w, l.y.Shape[2], l.y.Shape[3])
				continue
			}
			clear(dst)
			for i, g := range dy.Data[pl*ohw : (pl+1)*ohw] {
				dst[l.arg[pl*ohw+i]] += g
			}
		}
	})
	return l.dx
}

// AvgPool2D averages over K x K windows with stride Stride (no padding).
type AvgPool2D struct {
	K, Stride int
	x, y, dx  *tensor.Tensor
}

// Params implements Layer.
func (*AvgPool2D) Params() []*Param { return nil }

// Forward implements Layer.
func (l *AvgPool2D) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh, ow := (h-l.K)/l.Stride+1, (w-l.K)/l.Stride+1
	l.x = x
	l.y = buf(l.y, n, c, oh, ow)
	inv := 1 / float32(l.K*l.K)
	for pl := 0; pl < n*c; pl++ {
		src, dst := x.Data[pl*h*w:(pl+1)*h*w], l.y.Data[pl*oh*ow:(pl+1)*oh*ow]
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				var s float32
				for a := 0; a < l.K; a++ {
					for b := 0; b < l.K; b++ {
						s += src[(i*l.Stride+a)*w+j*l.Stride+b]
					}
				}
				dst[i*ow+j] = s * inv
			}
		}
	}
	return l.y
}

// Backward implements Layer.
func (l *AvgPool2D) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	oh, ow := l.y.Shape[2], l.y.Shape[3]
	l.dx = buf(l.dx, l.x.Shape...)
	inv := 1 / float32(l.K*l.K)
	for pl := 0; pl < n*c; pl++ {
		dst, g := l.dx.Data[pl*h*w:(pl+1)*h*w], dy.Data[pl*oh*ow:(pl+1)*oh*ow]
		clear(dst)
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				v := g[i*ow+j] * inv
				for a := 0; a < l.K; a++ {
					for b := 0; b < l.K; b++ {
						dst[(i*l.Stride+a)*w+j*l.Stride+b] += v
					}
				}
			}
		}
	}
	return l.dx
}

// Upsample repeats every pixel Factor x Factor times (nearest neighbour).
type Upsample struct {
	Factor int
	pool   *gradPool
	x, y   *tensor.Tensor
	dx     *tensor.Tensor
}

// Params implements Layer.
func (*Upsample) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Upsample) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	f := l.Factor
	l.x = x
	l.y = buf(l.y, n, c, h*f, w*f)
	W := w * f
	for pl := 0; pl < n*c; pl++ {
		src, dst := x.Data[pl*h*w:(pl+1)*h*w], l.y.Data[pl*h*w*f*f:(pl+1)*h*w*f*f]
		for i := 0; i < h*f; i++ {
			srow, drow := src[(i/f)*w:(i/f+1)*w], dst[i*W:(i+1)*W]
			for j := range drow {
				drow[j] = srow[j/f]
			}
		}
	}
	return l.y
}

// Backward implements Layer: each input pixel gets the sum of its copies.
func (l *Upsample) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	f := l.Factor
	W := w * f
	l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
	for pl := 0; pl < n*c; pl++ {
		dst, src := l.dx.Data[pl*h*w:(pl+1)*h*w], dy.Data[pl*h*w*f*f:(pl+1)*h*w*f*f]
		clear(dst)
		for i := 0; i < h*f; i++ {
			srow, drow := src[i*W:(i+1)*W], dst[(i/f)*w:(i/f+1)*w]
			for j, v := range srow {
				drow[j/f] += v
			}
		}
	}
	return l.dx
}

// GlobalAvgPool averages each channel over its pixels: (N, C, H, W) to
// (N, C).
type GlobalAvgPool struct {
	x, y, dx *tensor.Tensor
}

// Params implements Layer.
func (*GlobalAvgPool) Params() []*Param { return nil }

// Forward implements Layer.
func (l *GlobalAvgPool) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Len() / (n * c)
	l.x = x
	l.y = buf(l.y, n, c)
	for pl := 0; pl < n*c; pl++ {
		var s float32
		for _, v := range x.Data[pl*hw : (pl+1)*hw] {
			s += v
		}
		l.y.Data[pl] = s / float32(hw)
	}
	return l.y
}

// Backward implements Layer.
func (l *GlobalAvgPool) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c := l.x.Shape[0], l.x.Shape[1]
	hw := l.x.Len() / (n * c)
	l.dx = buf(l.dx, l.x.Shape...)
	for pl := 0; pl < n*c; pl++ {
		g := dy.Data[pl] / float32(hw)
		d := l.dx.Data[pl*hw : (pl+1)*hw]
		for i := range d {
			d[i] = g
		}
	}
	return l.dx
}
