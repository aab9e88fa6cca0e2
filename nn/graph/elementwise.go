package graph

import (
	"fmt"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// Unary applies F to every value; D is its derivative at the input value.
type Unary struct {
	F, D func(x float32) float32
	x, y *tensor.Tensor
}

// LeakyReLU returns x for x > 0 and alpha x otherwise (derivative alpha at
// 0, as PyTorch).
func LeakyReLU(alpha float32) *Unary {
	return &Unary{
		F: func(x float32) float32 {
			if x > 0 {
				return x
			}
			return alpha * x
		},
		D: func(x float32) float32 {
			if x > 0 {
				return 1
			}
			return alpha
		},
	}
}

// Clip returns min(max(x, lo), hi), with derivative 1 on [lo, hi] and 0
// outside (torch.clamp's).
func Clip(lo, hi float32) *Unary {
	return &Unary{
		F: func(x float32) float32 { return min(max(x, lo), hi) },
		D: func(x float32) float32 {
			if x >= lo && x <= hi {
				return 1
			}
			return 0
		},
	}
}

// Forward implements Op.
func (l *Unary) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	l.x = in[0]
	l.y = ensure(l.y, l.x.Shape)
	for i, v := range l.x.Data {
		l.y.Data[i] = l.F(v)
	}
	return l.y, nil
}

// Backward implements Op; dy is scaled in place.
func (l *Unary) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	for i, v := range l.x.Data {
		dy.Data[i] *= l.D(v)
	}
	return []*tensor.Tensor{dy}, nil
}

// Arith is an element-wise binary operation.
type Arith byte

// The four arithmetic operations of ONNX's Add, Sub, Mul and Div.
const (
	Add Arith = '+'
	Sub Arith = '-'
	Mul Arith = '*'
	Div Arith = '/'
)

// Binary is a op b with NumPy broadcasting (ONNX's multidirectional
// broadcasting). Each operand is a constant (ConstA, ConstB) or the op's
// next input: a Binary with one constant has one input.
type Binary struct {
	Op             Arith
	ConstA, ConstB *tensor.Tensor
	a, b           *tensor.Tensor
	y, da, db      *tensor.Tensor
	shape          []int
	sa, sb         []int // broadcast strides of a and b over the (coalesced) output
	oshape         []int
}

// Inputs returns how many inputs the op takes.
func (l *Binary) Inputs() int {
	n := 0
	if l.ConstA == nil {
		n++
	}
	if l.ConstB == nil {
		n++
	}
	return n
}

// broadcast returns the broadcast shape of a and b and their strides over
// it, coalesced to as few dimensions as possible (the output is
// contiguous), or an error when they do not broadcast.
func broadcast(a, b []int) (out, shape, sa, sb []int, err error) {
	r := max(len(a), len(b))
	out = make([]int, r)
	full := func(s []int) []int {
		f := make([]int, r)
		for i := range f {
			f[i] = 1
		}
		copy(f[r-len(s):], s)
		return f
	}
	fa, fb := full(a), full(b)
	for i := range r {
		switch {
		case fa[i] == fb[i] || fb[i] == 1:
			out[i] = fa[i]
		case fa[i] == 1:
			out[i] = fb[i]
		default:
			return nil, nil, nil, nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	strides := func(f []int) []int {
		s, st := make([]int, r), 1
		for i := r - 1; i >= 0; i-- {
			if f[i] != 1 {
				s[i] = st
			}
			st *= f[i]
		}
		return s
	}
	ta, tb := strides(fa), strides(fb)
	// Drop size-1 dimensions and merge neighbours laid out contiguously in
	// both operands.
	for i := range r {
		if out[i] == 1 {
			continue
		}
		if k := len(shape) - 1; k >= 0 && sa[k] == ta[i]*out[i] && sb[k] == tb[i]*out[i] {
			shape[k] *= out[i]
			sa[k], sb[k] = ta[i], tb[i]
			continue
		}
		shape, sa, sb = append(shape, out[i]), append(sa, ta[i]), append(sb, tb[i])
	}
	if len(shape) == 0 {
		shape, sa, sb = []int{1}, []int{0}, []int{0}
	}
	return out, shape, sa, sb, nil
}

// runs calls fn for every run of the innermost dimension: the output
// offset, the offsets into a and b, the run length and a's and b's strides
// along it.
func runs(shape, sa, sb []int, fn func(o, ia, ib, n, da, db int)) {
	r := len(shape) - 1
	n, da, db := shape[r], sa[r], sb[r]
	idx := make([]int, r)
	o, ia, ib := 0, 0, 0
	for {
		fn(o, ia, ib, n, da, db)
		o += n
		d := r - 1
		for ; d >= 0; d-- {
			idx[d]++
			ia += sa[d]
			ib += sb[d]
			if idx[d] < shape[d] {
				break
			}
			ia -= sa[d] * shape[d]
			ib -= sb[d] * shape[d]
			idx[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

// Forward implements Op.
func (l *Binary) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	l.a, l.b = l.ConstA, l.ConstB
	if l.a == nil {
		l.a, in = in[0], in[1:]
	}
	if l.b == nil {
		l.b = in[0]
	}
	out, shape, sa, sb, err := broadcast(l.a.Shape, l.b.Shape)
	if err != nil {
		return nil, err
	}
	l.shape, l.sa, l.sb = shape, sa, sb
	l.oshape = out
	l.y = ensure(l.y, out)
	a, b, y := l.a.Data, l.b.Data, l.y.Data
	runs(shape, sa, sb, func(o, ia, ib, n, da, db int) {
		y := y[o : o+n]
		for k := range y {
			u, v := a[ia+k*da], b[ib+k*db]
			switch l.Op {
			case Add:
				y[k] = u + v
			case Sub:
				y[k] = u - v
			case Mul:
				y[k] = u * v
			default:
				y[k] = u / v
			}
		}
	})
	return l.y, nil
}

// Backward implements Op: each operand's gradient summed over the
// dimensions it was broadcast along.
func (l *Binary) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	var out []*tensor.Tensor
	if l.ConstA == nil {
		l.da = l.reduce(l.da, l.a.Shape, dy.Data, true)
		out = append(out, l.da)
	}
	if l.ConstB == nil {
		l.db = l.reduce(l.db, l.b.Shape, dy.Data, false)
		out = append(out, l.db)
	}
	return out, nil
}

// reduce returns dst (reused when it has the shape) holding the gradient
// for operand a (first) or b: g times the partial derivative, summed over
// the broadcast dimensions.
func (l *Binary) reduce(dst *tensor.Tensor, shape []int, g []float32, first bool) *tensor.Tensor {
	dst = ensure(dst, shape)
	d, a, b := dst.Data, l.a.Data, l.b.Data
	clear(d)
	runs(l.shape, l.sa, l.sb, func(o, ia, ib, n, da, db int) {
		for k, v := range g[o : o+n] {
			u, w := a[ia+k*da], b[ib+k*db]
			i := ia + k*da
			if !first {
				i = ib + k*db
			}
			switch {
			case l.Op == Sub && !first:
				v = -v
			case l.Op == Mul && first:
				v *= w
			case l.Op == Mul:
				v *= u
			case l.Op == Div && first:
				v /= w
			case l.Op == Div:
				v = -v * u / (w * w)
			}
			d[i] += v
		}
	})
	return dst
}

// Eval computes op on two constants (constant folding at load time).
func Eval(op Arith, a, b *tensor.Tensor) (*tensor.Tensor, error) {
	l := &Binary{Op: op}
	y, err := l.Forward([]*tensor.Tensor{a, b})
	if err != nil {
		return nil, err
	}
	return &tensor.Tensor{Shape: slices.Clone(y.Shape), Data: y.Data}, nil
}
