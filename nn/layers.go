package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// ReLU is max(x, 0).
type ReLU struct{ y, dx *tensor.Tensor }

// Params implements Layer.
func (*ReLU) Params() []*Param { return nil }

// Forward implements Layer.
func (l *ReLU) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	l.y = buf(l.y, x.Shape...)
	y := l.y.Data[:len(x.Data)]
	for i, v := range x.Data {
		y[i] = relu32(v)
	}
	return l.y
}

// Backward implements Layer; the derivative at 0 is taken as 0.
func (l *ReLU) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	y := l.y.Data[:len(dy.Data)]
	for i, g := range dy.Data {
		dy.Data[i] = maskPos(g, y[i]) // in place
	}
	return dy
}

// Sigmoid is 1 / (1 + exp(-x)).
type Sigmoid struct{ y, dx *tensor.Tensor }

// Params implements Layer.
func (*Sigmoid) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Sigmoid) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	l.y = buf(l.y, x.Shape...)
	for i, v := range x.Data {
		l.y.Data[i] = sigmoid(v)
	}
	return l.y
}

func sigmoid(v float32) float32 { return float32(1 / (1 + math.Exp(-float64(v)))) }

// Backward implements Layer: dx = dy * y * (1 - y).
func (l *Sigmoid) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	for i, g := range dy.Data {
		y := l.y.Data[i]
		dy.Data[i] = g * y * (1 - y) // in place
	}
	return dy
}

// Dropout zeroes each value with probability P in training mode and scales
// the others by 1/(1-P) (inverted dropout); it is the identity in eval
// mode. Its masks come from Rng, which the trainer reseeds per epoch.
type Dropout struct {
	P    float64
	Rng  *rand.Rand
	mask []float32
	y    *tensor.Tensor
	dx   *tensor.Tensor
	on   bool
}

// Params implements Layer.
func (*Dropout) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Dropout) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	l.on = train && l.P > 0
	if !l.on {
		return x
	}
	if len(l.mask) != len(x.Data) {
		l.mask = make([]float32, len(x.Data))
	}
	scale := float32(1 / (1 - l.P))
	l.y = buf(l.y, x.Shape...)
	for i, v := range x.Data {
		m := float32(0)
		if l.Rng.Float64() >= l.P {
			m = scale
		}
		l.mask[i] = m
		l.y.Data[i] = v * m
	}
	return l.y
}

// Backward implements Layer.
func (l *Dropout) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	if !l.on {
		return dy
	}
	l.dx = buf(l.dx, dy.Shape...)
	for i, g := range dy.Data {
		l.dx.Data[i] = g * l.mask[i]
	}
	return l.dx
}

// Dense is a fully connected layer y = x W^T + b with W (Out, In); inputs of
// more than two dimensions are flattened to (N, In).
type Dense struct {
	Weight, Bias *Param
	In, Out      int
	Gemm         Gemm
	Threads      int // goroutines, each multiplying a block of rows
	x            *tensor.Tensor
	y, dx        *tensor.Tensor
}

// denseMinRows is the smallest block of rows worth a goroutine.
const denseMinRows = 16

// rowBlocks runs fn on contiguous blocks of [0, n) rows, on up to threads
// goroutines with at least denseMinRows rows each.
func rowBlocks(threads, n int, fn func(lo, hi int)) {
	parallelFor(min(threads, n/denseMinRows), n, func(_, lo, hi int) { fn(lo, hi) })
}

// NewDense returns a dense layer with PyTorch's default initialization,
// weights uniform in [-1/sqrt(in), 1/sqrt(in)] drawn from rng, and zero
// bias (small initial logits keep the first steps stable).
func NewDense(in, out int, rng *rand.Rand) *Dense {
	l := &Dense{Weight: newParam("weight", true, out, in), Bias: newParam("bias", false, out), In: in, Out: out, Gemm: DefaultGemm()}
	a := 1 / math.Sqrt(float64(in))
	for i := range l.Weight.W {
		l.Weight.W[i] = float32((2*rng.Float64() - 1) * a)
	}
	return l
}

// Params implements Layer.
func (l *Dense) Params() []*Param { return []*Param{l.Weight, l.Bias} }

// Forward implements Layer.
func (l *Dense) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n := x.Shape[0]
	if x.Len() != n*l.In {
		panic(fmt.Sprintf("nn: dense input %v, want %d features", x.Shape, l.In))
	}
	l.x = x
	l.y = buf(l.y, n, l.Out)
	rowBlocks(l.Threads, n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(l.y.Data[i*l.Out:(i+1)*l.Out], l.Bias.W)
		}
		l.Gemm.Sgemm(false, true, hi-lo, l.Out, l.In, 1, x.Data[lo*l.In:], l.In, l.Weight.W, l.In, 1, l.y.Data[lo*l.Out:], l.Out)
	})
	return l.y
}

// Backward implements Layer.
func (l *Dense) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	n := l.x.Shape[0]
	if mode.Params {
		// Blocks of output units: rows of dW.
		rowBlocks(l.Threads, l.Out, func(lo, hi int) {
			l.Gemm.Sgemm(true, false, hi-lo, l.In, n, 1, dy.Data[lo:], l.Out, l.x.Data, l.In, 0, l.Weight.G[lo*l.In:], l.In)
			for o := lo; o < hi; o++ {
				var s float32
				for i := 0; i < n; i++ {
					s += dy.Data[i*l.Out+o]
				}
				l.Bias.G[o] = s
			}
		})
	}
	if !mode.Input {
		return nil
	}
	l.dx = buf(l.dx, l.x.Shape...)
	rowBlocks(l.Threads, n, func(lo, hi int) {
		l.Gemm.Sgemm(false, false, hi-lo, l.In, l.Out, 1, dy.Data[lo*l.Out:], l.Out, l.Weight.W, l.In, 0, l.dx.Data[lo*l.In:], l.In)
	})
	return l.dx
}

// Flatten reshapes (N, ...) to (N, D) without copying.
type Flatten struct {
	in []int
	y  tensor.Tensor
	dx tensor.Tensor
}

// Params implements Layer.
func (*Flatten) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Flatten) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	l.in = append(l.in[:0], x.Shape...)
	l.y = tensor.Tensor{Shape: []int{x.Shape[0], x.Len() / x.Shape[0]}, Data: x.Data}
	return &l.y
}

// Backward implements Layer.
func (l *Flatten) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	l.dx = tensor.Tensor{Shape: append([]int(nil), l.in...), Data: dy.Data}
	return &l.dx
}

// Normalize maps pixels to (x - Mean[c]) / Std[c] per channel; it is the
// first layer of the classifiers, so their inputs are pixels in [0, 1].
type Normalize struct {
	Mean, Std []float32
	Threads   int // goroutines, each taking a block of image planes
	y, dx     *tensor.Tensor
}

// Params implements Layer; the statistics are fixed configuration.
func (*Normalize) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Normalize) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Len() / (n * c)
	l.y = buf(l.y, x.Shape...)
	planes(l.Threads, n*c, hw, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			m, s := l.Mean[pl%c], 1/l.Std[pl%c]
			src, dst := x.Data[pl*hw:(pl+1)*hw], l.y.Data[pl*hw:(pl+1)*hw]
			for i, v := range src {
				dst[i] = (v - m) * s
			}
		}
	})
	return l.y
}

// planes runs fn over blocks of [0, n) image planes of hw values each, on
// up to threads goroutines when there are at least minParallel values.
func planes(threads, n, hw int, fn func(lo, hi int)) {
	if n*hw < minParallel {
		threads = 1
	}
	parallelFor(threads, n, func(_, lo, hi int) { fn(lo, hi) })
}

// Backward implements Layer: dx = dy / Std[c].
func (l *Normalize) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c := dy.Shape[0], dy.Shape[1]
	hw := dy.Len() / (n * c)
	planes(l.Threads, n*c, hw, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			s := 1 / l.Std[pl%c]
			d := dy.Data[pl*hw : (pl+1)*hw]
			for i, v := range d {
				d[i] = v * s // in place
			}
		}
	})
	return dy
}
