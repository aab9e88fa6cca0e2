package nn

import (
	"github.com/stl-defense/stl/tensor"
)

// Residual adds a body and a shortcut applied to the same input:
// y = Body(x) + Shortcut(x), with the identity when Shortcut is nil (He et
// al. 2016), followed by max(y, 0) when ReLU is set.
type Residual struct {
	Body     Layer
	Shortcut Layer
	ReLU     bool
	Threads  int // goroutines for the addition and its gradient
	y, dx    *tensor.Tensor
}

// Params implements Layer.
func (*Residual) Params() []*Param { return nil }

// Children implements container.
func (l *Residual) Children() []namedLayer {
	out := []namedLayer{{"body", l.Body}}
	if l.Shortcut != nil {
		out = append(out, namedLayer{"shortcut", l.Shortcut})
	}
	return out
}

// Forward implements Layer.
func (l *Residual) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	b := l.Body.Forward(x, train)
	s := x
	if l.Shortcut != nil {
		s = l.Shortcut.Forward(x, train)
	}
	return l.add(b, s)
}

// forwardInfer implements inferer.
func (l *Residual) forwardInfer(x *tensor.Tensor) *tensor.Tensor {
	b := forwardInfer(l.Body, x)
	s := x
	if l.Shortcut != nil {
		s = forwardInfer(l.Shortcut, x)
	}
	return l.add(b, s)
}

// add sets the output to b + s (and the ReLU).
func (l *Residual) add(b, s *tensor.Tensor) *tensor.Tensor {
	l.y = buf(l.y, b.Shape...)
	parallelElems(l.Threads, len(b.Data), func(lo, hi int) {
		y, bs, ss := l.y.Data[lo:hi], b.Data[lo:hi], s.Data[lo:hi]
		if l.ReLU {
			for i, v := range bs {
				y[i] = relu32(v + ss[i])
			}
		} else {
			for i, v := range bs {
				y[i] = v + ss[i]
			}
		}
	})
	return l.y
}

// Backward implements Layer.
//
// Layers may consume dy in place, so the shortcut's share is taken (the
// identity's copied into the output buffer) before the body runs.
func (l *Residual) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	// The identity shortcut's share is dy itself (masked): it is copied in
	// the masking pass.
	identity := mode.Input && l.Shortcut == nil
	if identity {
		l.dx = buf(l.dx, dy.Shape...)
	}
	if l.ReLU || identity {
		parallelElems(l.Threads, len(dy.Data), func(lo, hi int) {
			d := dy.Data[lo:hi]
			switch {
			case l.ReLU && identity:
				y, o := l.y.Data[lo:hi], l.dx.Data[lo:hi]
				for i, g := range d {
					g = maskPos(g, y[i])
					d[i], o[i] = g, g // in place, and the shortcut's copy
				}
			case l.ReLU:
				y := l.y.Data[lo:hi]
				for i, g := range d {
					d[i] = maskPos(g, y[i]) // in place
				}
			default:
				copy(l.dx.Data[lo:hi], d)
			}
		})
	}
	var ds *tensor.Tensor
	if mode.Input && l.Shortcut != nil {
		ds = l.Shortcut.Backward(dy, mode)
	}
	db := l.Body.Backward(dy, mode)
	if !mode.Input {
		return nil
	}
	if l.Shortcut != nil {
		l.dx = buf(l.dx, db.Shape...)
		parallelElems(l.Threads, len(db.Data), func(lo, hi int) {
			o, bs, ss := l.dx.Data[lo:hi], db.Data[lo:hi], ds.Data[lo:hi]
			for i, v := range bs {
				o[i] = v + ss[i]
			}
		})
		return l.dx
	}
	parallelElems(l.Threads, len(db.Data), func(lo, hi int) {
		o, bs := l.dx.Data[lo:hi], db.Data[lo:hi]
		for i, v := range bs {
			o[i] += v
		}
	})
	return l.dx
}

// ShortcutA is the parameter-free "option A" shortcut of the CIFAR ResNet
// (He et al. 2016, section 4.2): it subsamples the input with Stride and
// pads the channels with zeros, (Out-In)/2 before and the rest after.
type ShortcutA struct {
	In, Out, Stride int
	x, y, dx        *tensor.Tensor
	yb              []float32 // blocked-layout output of inferBlocked
}

// Params implements Layer.
func (*ShortcutA) Params() []*Param { return nil }

// Forward implements Layer.
func (l *ShortcutA) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh, ow := (h+l.Stride-1)/l.Stride, (w+l.Stride-1)/l.Stride
	pad := (l.Out - l.In) / 2
	l.x = x
	l.y = buf(l.y, n, l.Out, oh, ow)
	clear(l.y.Data)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			src := x.Data[(i*c+ch)*h*w : (i*c+ch+1)*h*w]
			dst := l.y.Data[(i*l.Out+ch+pad)*oh*ow : (i*l.Out+ch+pad+1)*oh*ow]
			for a := 0; a < oh; a++ {
				for b := 0; b < ow; b++ {
					dst[a*ow+b] = src[a*l.Stride*w+b*l.Stride]
				}
			}
		}
	}
	return l.y
}

// Backward implements Layer.
func (l *ShortcutA) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	oh, ow := l.y.Shape[2], l.y.Shape[3]
	pad := (l.Out - l.In) / 2
	l.dx = buf(l.dx, l.x.Shape...)
	clear(l.dx.Data)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			dst := l.dx.Data[(i*c+ch)*h*w : (i*c+ch+1)*h*w]
			src := dy.Data[(i*l.Out+ch+pad)*oh*ow : (i*l.Out+ch+pad+1)*oh*ow]
			for a := 0; a < oh; a++ {
				for b := 0; b < ow; b++ {
					dst[a*l.Stride*w+b*l.Stride] = src[a*ow+b]
				}
			}
		}
	}
	return l.dx
}
