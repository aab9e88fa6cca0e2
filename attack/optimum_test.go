package attack

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// affine is the model z = W x + b on the flattened image. The smallest L2
// perturbation that changes its decision at x, labelled y, is known in
// closed form: the decision region of y is an intersection of half-spaces,
// so the distance to its boundary is min_k |z_k - z_y| / ||w_k - w_y||.
type affine struct {
	d, k int
	w, b []float64
}

func (m *affine) InputShape() (int, int, int) { return 1, 1, m.d }
func (m *affine) NumClasses() int             { return m.k }

func (m *affine) Logits(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	z := tensor.New(n, m.k)
	for i := 0; i < n; i++ {
		for c := 0; c < m.k; c++ {
			s := m.b[c]
			for j := 0; j < m.d; j++ {
				s += m.w[c*m.d+j] * float64(x.Data[i*m.d+j])
			}
			z.Data[i*m.k+c] = float32(s)
		}
	}
	return z, nil
}

func (m *affine) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, _ := m.Logits(ctx, x)
	g := tensor.New(z.Shape...)
	seed(z, g)
	gx := tensor.New(x.Shape...)
	for i := 0; i < x.Shape[0]; i++ {
		for j := 0; j < m.d; j++ {
			s := 0.0
			for c := 0; c < m.k; c++ {
				s += float64(g.Data[i*m.k+c]) * m.w[c*m.d+j]
			}
			gx.Data[i*m.d+j] = float32(s)
		}
	}
	return z, gx, nil
}

// minDist returns the closed-form smallest L2 perturbation norm of image i.
func (m *affine) minDist(z []float32, x []float32, y int) float64 {
	best := math.Inf(1)
	for c := 0; c < m.k; c++ {
		if c == y {
			continue
		}
		nw := 0.0
		for j := 0; j < m.d; j++ {
			dw := m.w[c*m.d+j] - m.w[y*m.d+j]
			nw += dw * dw
		}
		best = math.Min(best, math.Abs(float64(z[c]-z[y]))/math.Sqrt(nw))
	}
	return best
}

func TestKnownOptimum(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	const d, k, n = 16, 4, 20
	m := &affine{d: d, k: k, w: make([]float64, k*d), b: make([]float64, k)}
	for i := range m.w {
		m.w[i] = rng.NormFloat64()
	}
	x := tensor.New(n, 1, 1, d)
	for i := range x.Data {
		x.Data[i] = float32(0.4 + 0.2*rng.Float64())
	}
	z, _ := m.Logits(context.Background(), x)
	labels := z.ArgmaxRows(nil)
	opt := make([]float64, n)
	for i := range opt {
		opt[i] = m.minDist(z.Data[i*k:(i+1)*k], x.Data[i*d:(i+1)*d], labels[i])
	}
	// A budget large enough never to bind.
	big := Budget{Norm: L2Rel, Eps: 1}

	do := DefaultDeepFoolOptions()
	do.Budget = big
	df, _ := NewDeepFool(do)
	co := DefaultCWOptions()
	co.Budget = big
	cw, _ := NewCW(co)
	for _, a := range []Attack{df, cw} {
		r, err := a.Run(context.Background(), m, x, labels)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := 0; i < n; i++ {
			if !r.Success[i] {
				t.Errorf("%s: image %d not flipped", a.Name(), i)
				continue
			}
			got := r.Dissim[i] * l2(x.Data[i*d:(i+1)*d])
			worst = math.Max(worst, got/opt[i])
			// DeepFool reaches the nearest hyperplane in one step, times
			// 1+overshoot (plus its 1e-4 logit margin); CW approaches the
			// optimum from above.
			lo, hi := opt[i], opt[i]*1.01+1e-4
			if _, isDF := a.(*DeepFool); isDF {
				lo, hi = opt[i]*1.02, opt[i]*1.02+1e-3
			}
			if got < lo*(1-1e-4) || got > hi {
				t.Errorf("%s: image %d perturbation %.6f, optimum %.6f, want in [%.6f, %.6f]", a.Name(), i, got, opt[i], lo, hi)
			}
		}
		t.Logf("%s: %d passes, largest perturbation/optimum %.5f", a.Name(), r.Passes, worst)
	}
}
