package evaluate

import (
	"context"
	"math/rand/v2"
	"sync"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/tensor"
)

// Test geometry: 1 x 8 x 8 images, 4 classes (APGD-T needs 4).
const (
	testC, testH, testW, testK = 1, 8, 8, 4
	testD                      = testC * testH * testW
)

// linear is a sound classifier: logits W (x - 1/2) with exact gradients.
type linear struct{ w []float32 } // (K, D)

func newLinear(seed uint64) *linear {
	rng := rand.New(rand.NewPCG(seed, 7))
	l := &linear{w: make([]float32, testK*testD)}
	for i := range l.w {
		l.w[i] = float32(rng.NormFloat64())
	}
	return l
}

func (l *linear) InputShape() (int, int, int) { return testC, testH, testW }
func (l *linear) NumClasses() int             { return testK }

func (l *linear) Logits(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	z := tensor.New(n, testK)
	for i := 0; i < n; i++ {
		xi := x.Data[i*testD : (i+1)*testD]
		for k := 0; k < testK; k++ {
			s := float32(0)
			for j, v := range xi {
				s += l.w[k*testD+j] * (v - 0.5)
			}
			z.Data[i*testK+k] = s
		}
	}
	return z, nil
}

func (l *linear) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, _ := l.Logits(ctx, x)
	gz := tensor.New(z.Shape...)
	seed(z, gz)
	n := x.Shape[0]
	g := tensor.New(x.Shape...)
	for i := 0; i < n; i++ {
		for k := 0; k < testK; k++ {
			c := gz.Data[i*testK+k]
			if c == 0 {
				continue
			}
			for j := 0; j < testD; j++ {
				g.Data[i*testD+j] += c * l.w[k*testD+j]
			}
		}
	}
	return z, g, nil
}

// testData returns n images uniform in [0,1] labelled by m's predictions,
// so that m classifies every one correctly.
func testData(m attack.Model, n int, seed uint64) (*tensor.Tensor, []int) {
	rng := rand.New(rand.NewPCG(seed, 9))
	x := tensor.New(n, testC, testH, testW)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	z, _ := m.Logits(context.Background(), x)
	return x, z.ArgmaxRows(nil)
}

// funcTransform is a deterministic defense given by a function of the batch.
type funcTransform struct {
	name string
	f    func(x *tensor.Tensor) *tensor.Tensor
}

func (t funcTransform) Name() string     { return t.name }
func (t funcTransform) Randomized() bool { return false }
func (t funcTransform) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return t.f(x.Clone()), nil
}

func identity(x *tensor.Tensor) *tensor.Tensor { return x }

// gray replaces every image by mid-gray: a defense that destroys accuracy.
func gray(x *tensor.Tensor) *tensor.Tensor {
	for i := range x.Data {
		x.Data[i] = 0.5
	}
	return x
}

func defenseOf(t attack.Transform) func(uint64) (attack.Transform, error) {
	return func(uint64) (attack.Transform, error) { return t, nil }
}

// zeroGrad is a backward pass that returns zero: a defense whose
// gradients are masked.
type zeroGrad struct{}

func (zeroGrad) VJP(_ context.Context, x, _ *tensor.Tensor) (*tensor.Tensor, error) {
	return tensor.New(x.Shape...), nil
}

func zeroBackward(attack.Transform) (attack.Approx, error) { return zeroGrad{}, nil }

// coinFlip is a randomized defense: each image, with probability 1/2,
// becomes mid-gray, else passes unchanged.
type coinFlip struct{ rng *rand.Rand }

func (c *coinFlip) Name() string     { return "coin flip" }
func (c *coinFlip) Randomized() bool { return true }
func (c *coinFlip) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y := x.Clone()
	n := x.Shape[0]
	d := len(x.Data) / n
	for i := 0; i < n; i++ {
		if c.rng.IntN(2) == 0 {
			for j := range y.Data[i*d : (i+1)*d] {
				y.Data[i*d+j] = 0.5
			}
		}
	}
	return y, nil
}

// wearing is an obfuscated classifier: its gradients are exact for the
// first honest InputGrad calls and point the wrong way afterwards, so
// that an attack with more iterations, run later, does worse.
type wearing struct {
	*linear
	mu     sync.Mutex
	honest int
}

func (w *wearing) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, g, err := w.linear.InputGrad(ctx, x, seed)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.honest > 0 {
		w.honest--
		return z, g, err
	}
	for i := range g.Data {
		g.Data[i] = -g.Data[i]
	}
	return z, g, err
}
