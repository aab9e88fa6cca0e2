package attack

import (
	"context"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// mlp is the test classifier: logits = W2 tanh(W1 x + b1) + b2 on the
// flattened image, computed in float64. It satisfies Model.
type mlp struct {
	c, h, w, k, hid int
	w1, b1, w2, b2  []float64
	passes          atomic.Int64 // forward passes run, to count cost
	images          atomic.Int64 // images forwarded
}

func newMLP(rng *rand.Rand, c, h, w, hid, k int) *mlp {
	d := c * h * w
	m := &mlp{c: c, h: h, w: w, k: k, hid: hid,
		w1: make([]float64, hid*d), b1: make([]float64, hid),
		w2: make([]float64, k*hid), b2: make([]float64, k)}
	for i := range m.w1 {
		m.w1[i] = rng.NormFloat64() / math.Sqrt(float64(d))
	}
	for i := range m.w2 {
		m.w2[i] = rng.NormFloat64() / math.Sqrt(float64(hid))
	}
	return m
}

func (m *mlp) InputShape() (int, int, int) { return m.c, m.h, m.w }
func (m *mlp) NumClasses() int             { return m.k }

func (m *mlp) check(x *tensor.Tensor) (int, error) {
	n, c, h, w, err := x.NCHW()
	if err != nil || c != m.c || h != m.h || w != m.w {
		return 0, &tensor.ShapeError{Op: "mlp", Want: []int{-1, m.c, m.h, m.w}, Got: x.Shape}
	}
	return n, nil
}

// forward returns the hidden activations (n, hid) and the logits.
func (m *mlp) forward(x []float32, n int) (a []float64, z *tensor.Tensor) {
	m.passes.Add(1)
	m.images.Add(int64(n))
	d := m.c * m.h * m.w
	a = make([]float64, n*m.hid)
	z = tensor.New(n, m.k)
	for i := 0; i < n; i++ {
		xi := x[i*d : (i+1)*d]
		for u := 0; u < m.hid; u++ {
			s := m.b1[u]
			row := m.w1[u*d : (u+1)*d]
			for j, v := range xi {
				s += row[j] * (float64(v) - 0.5)
			}
			a[i*m.hid+u] = math.Tanh(s)
		}
		for c := 0; c < m.k; c++ {
			s := m.b2[c]
			for u := 0; u < m.hid; u++ {
				s += m.w2[c*m.hid+u] * a[i*m.hid+u]
			}
			z.Data[i*m.k+c] = float32(s)
		}
	}
	return a, z
}

func (m *mlp) Logits(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n, err := m.check(x)
	if err != nil {
		return nil, err
	}
	_, z := m.forward(x.Data, n)
	return z, nil
}

func (m *mlp) InputGrad(_ context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	n, err := m.check(x)
	if err != nil {
		return nil, nil, err
	}
	a, z := m.forward(x.Data, n)
	g := tensor.New(n, m.k)
	seed(z, g)
	gx := tensor.New(x.Shape...)
	d := m.c * m.h * m.w
	dh := make([]float64, m.hid)
	for i := 0; i < n; i++ {
		for u := 0; u < m.hid; u++ {
			s := 0.0
			for c := 0; c < m.k; c++ {
				s += float64(g.Data[i*m.k+c]) * m.w2[c*m.hid+u]
			}
			ai := a[i*m.hid+u]
			dh[u] = s * (1 - ai*ai)
		}
		out := gx.Data[i*d : (i+1)*d]
		for j := range out {
			s := 0.0
			for u := 0; u < m.hid; u++ {
				s += dh[u] * m.w1[u*d+j]
			}
			out[j] = float32(s)
		}
	}
	return z, gx, nil
}

// train fits the MLP by full-batch gradient descent with momentum on the
// mean cross-entropy.
func (m *mlp) train(x *tensor.Tensor, labels []int, epochs int, lr float64) {
	n := len(labels)
	d := m.c * m.h * m.w
	vel := [4][]float64{make([]float64, len(m.w1)), make([]float64, len(m.b1)), make([]float64, len(m.w2)), make([]float64, len(m.b2))}
	p := make([]float64, m.k)
	for e := 0; e < epochs; e++ {
		a, z := m.forward(x.Data, n)
		gw1, gb1 := make([]float64, len(m.w1)), make([]float64, len(m.b1))
		gw2, gb2 := make([]float64, len(m.w2)), make([]float64, len(m.b2))
		dh := make([]float64, m.hid)
		for i := 0; i < n; i++ {
			softmax(p, z.Data[i*m.k:(i+1)*m.k])
			p[labels[i]]--
			for u := range dh {
				dh[u] = 0
			}
			for c := 0; c < m.k; c++ {
				gb2[c] += p[c] / float64(n)
				for u := 0; u < m.hid; u++ {
					gw2[c*m.hid+u] += p[c] * a[i*m.hid+u] / float64(n)
					dh[u] += p[c] * m.w2[c*m.hid+u]
				}
			}
			xi := x.Data[i*d : (i+1)*d]
			for u := 0; u < m.hid; u++ {
				ai := a[i*m.hid+u]
				du := dh[u] * (1 - ai*ai) / float64(n)
				gb1[u] += du
				row := gw1[u*d : (u+1)*d]
				for j, v := range xi {
					row[j] += du * (float64(v) - 0.5)
				}
			}
		}
		for t, pair := range [][2][]float64{{m.w1, gw1}, {m.b1, gb1}, {m.w2, gw2}, {m.b2, gb2}} {
			for j := range pair[0] {
				vel[t][j] = 0.9*vel[t][j] - lr*pair[1][j]
				pair[0][j] += vel[t][j]
			}
		}
	}
}

// synth draws n images of k classes: class prototypes 0.5 + amp*u (u
// uniform in [-1,1], smoothed over neighbours) plus Gaussian noise of
// standard deviation sigma, clipped to [lo, hi].
func synth(rng *rand.Rand, protos [][]float64, n int, sigma, lo, hi float64, c, h, w int) (*tensor.Tensor, []int) {
	d := c * h * w
	x := tensor.New(n, c, h, w)
	labels := make([]int, n)
	for i := 0; i < n; i++ {
		y := i % len(protos)
		labels[i] = y
		for j := 0; j < d; j++ {
			v := protos[y][j] + sigma*rng.NormFloat64()
			x.Data[i*d+j] = float32(math.Min(hi, math.Max(lo, v)))
		}
	}
	return x, labels
}

func prototypes(rng *rand.Rand, k, d int, amp float64) [][]float64 {
	p := make([][]float64, k)
	for c := range p {
		p[c] = make([]float64, d)
		for j := range p[c] {
			p[c][j] = 0.5 + amp*(2*rng.Float64()-1)
		}
	}
	return p
}

// fixture is the shared trained classifier and held-out test set.
type fixture struct {
	m      *mlp
	x      *tensor.Tensor
	labels []int
}

const (
	fixC, fixH, fixW = 1, 8, 8
	fixK             = 3
)

var fix *fixture

func getFixture(t testing.TB) *fixture {
	t.Helper()
	if fix != nil {
		return fix
	}
	rng := rand.New(rand.NewPCG(7, 11))
	d := fixC * fixH * fixW
	protos := prototypes(rng, fixK, d, 0.04)
	xtr, ytr := synth(rng, protos, 300, 0.03, 0.15, 0.85, fixC, fixH, fixW)
	xte, yte := synth(rng, protos, 60, 0.03, 0.15, 0.85, fixC, fixH, fixW)
	m := newMLP(rng, fixC, fixH, fixW, 16, fixK)
	m.train(xtr, ytr, 300, 0.5)
	fix = &fixture{m: m, x: xte, labels: yte}
	return fix
}

func accuracyOf(t testing.TB, m Model, x *tensor.Tensor, labels []int) float64 {
	t.Helper()
	z, err := m.Logits(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	return accuracy(z.ArgmaxRows(nil), labels)
}

func TestFixtureAccuracy(t *testing.T) {
	f := getFixture(t)
	acc := accuracyOf(t, f.m, f.x, f.labels)
	t.Logf("clean test accuracy %.3f", acc)
	if acc < 0.9 {
		t.Fatalf("test classifier accuracy %.3f, want >= 0.9", acc)
	}
}

// TestModelGradient checks the test model's InputGrad and the attack's
// cross-entropy seed against central differences of the loss.
func TestModelGradient(t *testing.T) {
	f := getFixture(t)
	x := &tensor.Tensor{Shape: []int{2, fixC, fixH, fixW}, Data: append([]float32(nil), f.x.Data[:2*64]...)}
	labels := f.labels[:2]
	for _, targeted := range []bool{false, true} {
		seed := crossEntropySeed(labels, fixK, targeted)
		_, g, err := f.m.InputGrad(context.Background(), x, seed)
		if err != nil {
			t.Fatal(err)
		}
		loss := func(x *tensor.Tensor) float64 {
			z, _ := f.m.Logits(context.Background(), x)
			p := make([]float64, fixK)
			s := 0.0
			for i, y := range labels {
				softmax(p, z.Data[i*fixK:(i+1)*fixK])
				s -= math.Log(p[y])
			}
			if targeted {
				return -s
			}
			return s
		}
		for _, j := range []int{0, 5, 63, 64, 100, 127} {
			xp, xm := x.Clone(), x.Clone()
			xp.Data[j] += 1e-2
			xm.Data[j] -= 1e-2
			num := (loss(xp) - loss(xm)) / float64(xp.Data[j]-xm.Data[j])
			if diff := math.Abs(num - float64(g.Data[j])); diff > 1e-3*math.Max(1, math.Abs(num)) {
				t.Errorf("targeted=%v: dL/dx[%d] = %g, central difference %g", targeted, j, g.Data[j], num)
			}
		}
	}
}
