package attack

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/tensor"
)

// Transform is an input transformation placed in front of a classifier, a
// batch in [0,1] in, a batch of the same shape in [0,1] out. It has the
// method set of defense.Transform, so that every defense plugs into BPDA
// and EOT without this package importing package defense.
type Transform interface {
	// Name is a short name for reports.
	Name() string
	// Apply returns T(x) in a newly allocated tensor; x is not modified.
	Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error)
	// Randomized reports whether Apply draws random numbers (then EOT
	// averages gradients over several draws).
	Randomized() bool
}

// Approx is a differentiable approximation g of a transform T, used by BPDA
// on the backward pass (Athalye et al., ICML 2018, section 4.1).
type Approx interface {
	// VJP returns the vector-Jacobian product (dg/dx)^T gy at the batch x,
	// a new tensor of the shape of x; gy has the shape of x too.
	VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error)
}

// BPDA is the Backward Pass Differentiable Approximation of Athalye et al.
// (ICML 2018) as a Model: the forward pass is the classifier M on T(x), the
// backward pass treats T as the identity (Approx nil) or as the
// differentiable Approx. Every attack of this package then runs unchanged
// against the defended classifier M∘T, e.g. PGD at L-infinity 0.031, the
// paper's Table 4 setting.
//
// BPDA is safe for concurrent use when T, M and Approx are. A randomized T
// draws fresh randomness on each call; wrap BPDA in EOT to average.
type BPDA struct {
	T      Transform
	M      Model
	Approx Approx // nil: identity on the backward pass
}

// NewBPDA checks that t and m are non-nil and returns &BPDA{t, m, approx}.
func NewBPDA(t Transform, m Model, approx Approx) (*BPDA, error) {
	if t == nil || m == nil {
		return nil, fmt.Errorf("attack: BPDA needs a transform and a model")
	}
	return &BPDA{T: t, M: m, Approx: approx}, nil
}

// InputShape returns M's input shape.
func (b *BPDA) InputShape() (c, h, w int) { return b.M.InputShape() }

// NumClasses returns M's number of classes.
func (b *BPDA) NumClasses() int { return b.M.NumClasses() }

// Randomized reports whether T is randomized.
func (b *BPDA) Randomized() bool { return b.T.Randomized() }

// Name returns "BPDA(T)".
func (b *BPDA) Name() string { return "BPDA(" + b.T.Name() + ")" }

func (b *BPDA) apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if b.T == nil || b.M == nil {
		return nil, fmt.Errorf("attack: BPDA needs a transform and a model")
	}
	y, err := b.T.Apply(ctx, x)
	if err != nil {
		return nil, fmt.Errorf("attack: transform %s: %w", b.T.Name(), err)
	}
	if y == nil || !tensor.SameShape(x, y) || len(y.Data) != len(x.Data) {
		var got []int
		if y != nil {
			got = y.Shape
		}
		return nil, &tensor.ShapeError{Op: "attack: transform " + b.T.Name() + " output", Want: x.Shape, Got: got}
	}
	return y, nil
}

// Logits returns M.Logits(T(x)).
func (b *BPDA) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y, err := b.apply(ctx, x)
	if err != nil {
		return nil, err
	}
	return b.M.Logits(ctx, y)
}

// InputGrad returns the logits of M at T(x) and the gradient of M's loss
// with respect to T(x) carried back through the identity (or Approx's VJP
// at x): the BPDA gradient.
func (b *BPDA) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	y, err := b.apply(ctx, x)
	if err != nil {
		return nil, nil, err
	}
	z, gy, err := b.M.InputGrad(ctx, y, seed)
	if err != nil || b.Approx == nil {
		return z, gy, err
	}
	gx, err := b.Approx.VJP(ctx, x, gy)
	if err != nil {
		return nil, nil, fmt.Errorf("attack: BPDA approximation of %s: %w", b.T.Name(), err)
	}
	return z, gx, nil
}

// EOT is Expectation over Transformation (Athalye et al., ICML 2018) as a
// Model: InputGrad and Logits average Draws calls of M, typically a BPDA
// over a randomized transform, so that attacks follow the expected
// gradient E_T[grad L(T(x))]. Sums are accumulated in float64; over a
// deterministic M the average equals M's own result bit for bit.
//
// EOT is safe for concurrent use when M is (the draws run in sequence).
type EOT struct {
	M     Model
	Draws int // number of draws averaged, >= 1
}

// NewEOT checks m and draws and returns &EOT{m, draws}.
func NewEOT(m Model, draws int) (*EOT, error) {
	if m == nil {
		return nil, fmt.Errorf("attack: EOT needs a model")
	}
	if draws < 1 {
		return nil, optErr("EOT", "Draws", draws, "must be at least 1")
	}
	return &EOT{M: m, Draws: draws}, nil
}

// InputShape returns M's input shape.
func (e *EOT) InputShape() (c, h, w int) { return e.M.InputShape() }

// NumClasses returns M's number of classes.
func (e *EOT) NumClasses() int { return e.M.NumClasses() }

func (e *EOT) check() error {
	if e.M == nil {
		return fmt.Errorf("attack: EOT needs a model")
	}
	if e.Draws < 1 {
		return optErr("EOT", "Draws", e.Draws, "must be at least 1")
	}
	return nil
}

// Logits returns the mean of Draws calls of M.Logits.
func (e *EOT) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	var acc []float64
	var shape []int
	for range e.Draws {
		z, err := e.M.Logits(ctx, x)
		if err != nil {
			return nil, err
		}
		if acc, shape, err = accumulate(acc, shape, z); err != nil {
			return nil, err
		}
	}
	return mean(acc, shape, e.Draws), nil
}

// InputGrad returns the mean logits and the mean input gradient of Draws
// calls of M.InputGrad; seed is called once per draw with that draw's
// logits.
func (e *EOT) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	if err := e.check(); err != nil {
		return nil, nil, err
	}
	var za, ga []float64
	var zs, gs []int
	for range e.Draws {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		z, g, err := e.M.InputGrad(ctx, x, seed)
		if err != nil {
			return nil, nil, err
		}
		if za, zs, err = accumulate(za, zs, z); err != nil {
			return nil, nil, err
		}
		if ga, gs, err = accumulate(ga, gs, g); err != nil {
			return nil, nil, err
		}
	}
	return mean(za, zs, e.Draws), mean(ga, gs, e.Draws), nil
}

func accumulate(acc []float64, shape []int, t *tensor.Tensor) ([]float64, []int, error) {
	if t == nil {
		return nil, nil, fmt.Errorf("attack: EOT: model returned no tensor")
	}
	if acc == nil {
		acc = make([]float64, len(t.Data))
		shape = append([]int(nil), t.Shape...)
	} else if len(t.Data) != len(acc) {
		return nil, nil, &tensor.ShapeError{Op: "attack: EOT draw", Want: shape, Got: t.Shape}
	}
	for i, v := range t.Data {
		acc[i] += float64(v)
	}
	return acc, shape, nil
}

func mean(acc []float64, shape []int, n int) *tensor.Tensor {
	out := &tensor.Tensor{Shape: shape, Data: make([]float32, len(acc))}
	for i, v := range acc {
		out.Data[i] = float32(v / float64(n))
	}
	return out
}

// Adaptive returns the white-box model for attacking the defense t in front
// of m: BPDA{t, m, approx}, wrapped in EOT with the given draws when t is
// randomized.
func Adaptive(t Transform, m Model, approx Approx, draws int) (Model, error) {
	b, err := NewBPDA(t, m, approx)
	if err != nil {
		return nil, err
	}
	if !t.Randomized() {
		return b, nil
	}
	return NewEOT(b, draws)
}

// Identity is the identity Transform, useful to check that BPDA adds
// nothing of its own.
type Identity struct{}

// Name returns "identity".
func (Identity) Name() string { return "identity" }

// Apply returns a copy of x.
func (Identity) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return x.Clone(), nil
}

// Randomized returns false.
func (Identity) Randomized() bool { return false }
