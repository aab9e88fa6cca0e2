package nn

import (
	"math"
	"testing"
)

// TestOptimizersMinimizeQuadratic runs each optimizer on
// f(w) = 0.5 * sum a_i (w_i - c_i)^2, whose minimum is w = c.
func TestOptimizersMinimizeQuadratic(t *testing.T) {
	a := []float32{1, 4, 0.5}
	c := []float32{1, -2, 3}
	sgd, _ := NewSGD(SGDOptions{Momentum: 0.9})
	nest, _ := NewSGD(SGDOptions{Momentum: 0.9, Nesterov: true})
	adam, _ := NewAdam(DefaultAdamOptions())
	cases := []struct {
		name  string
		opt   Optimizer
		lr    float64
		steps int
	}{
		{"sgd-momentum", sgd, 0.05, 400},
		{"sgd-nesterov", nest, 0.05, 400},
		{"adam", adam, 0.05, 2000},
	}
	for _, tc := range cases {
		p := newParam("w", false, 3)
		for s := 0; s < tc.steps; s++ {
			for i := range p.W {
				p.G[i] = a[i] * (p.W[i] - c[i])
			}
			tc.opt.Step([]*Param{p}, tc.lr)
		}
		for i := range p.W {
			if math.Abs(float64(p.W[i]-c[i])) > 1e-3 {
				t.Errorf("%s: w = %v, want %v", tc.name, p.W, c)
				break
			}
		}
	}
}

// TestSGDWeightDecayOptimum: with weight decay wd on f = 0.5 (w - c)^2 the
// optimum is c / (1 + wd); buffers and non-decayed params are handled.
func TestSGDWeightDecayOptimum(t *testing.T) {
	opt, _ := NewSGD(SGDOptions{Momentum: 0.9, Nesterov: true, WeightDecay: 0.5})
	p := newParam("w", true, 1)
	q := newParam("b", false, 1)
	buf := newBuffer("rm", 1)
	buf.W[0] = 7
	for s := 0; s < 500; s++ {
		p.G[0] = p.W[0] - 3
		q.G[0] = q.W[0] - 3
		opt.Step([]*Param{p, q, buf}, 0.1)
	}
	if math.Abs(float64(p.W[0])-2) > 1e-4 || math.Abs(float64(q.W[0])-3) > 1e-4 || buf.W[0] != 7 {
		t.Errorf("w = %g (want 2), b = %g (want 3), buffer %g (want 7)", p.W[0], q.W[0], buf.W[0])
	}
	if _, err := NewSGD(SGDOptions{Momentum: 1}); err == nil {
		t.Error("momentum 1 accepted")
	}
	if _, err := NewAdam(AdamOptions{Beta1: 0.9, Beta2: 0.999}); err == nil {
		t.Error("eps 0 accepted")
	}
}

func TestSchedules(t *testing.T) {
	oc := DefaultOneCycle(0.05)
	cases := []struct {
		name string
		s    Schedule
		step int
		want float64
	}{
		{"cosine-start", Cosine{Base: 0.1}, 0, 0.1},
		{"cosine-mid", Cosine{Base: 0.1}, 50, 0.05 * (1 + math.Cos(math.Pi*50/99))},
		{"cosine-end", Cosine{Base: 0.1, Min: 0.001}, 99, 0.001},
		{"cosine-warmup", Cosine{Base: 0.1, Warmup: 10}, 4, 0.05},
		{"step", Step{Base: 0.1, Gamma: 0.1, Every: 30}, 65, 0.001},
		{"onecycle-start", oc, 0, 0.05 / 25},
		{"onecycle-peak", oc, 29, 0.05},
		{"onecycle-end", oc, 99, 0.05 / 25 / 1e4},
		{"constant", Constant(0.3), 7, 0.3},
	}
	for _, c := range cases {
		if got := c.s.LR(c.step, 100); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: LR = %g, want %g", c.name, got, c.want)
		}
	}
	if (OneCycle{Max: 1, PctStart: 1.5, DivFactor: 25, FinalDiv: 1e4}).Validate() == nil {
		t.Error("pct_start 1.5 accepted")
	}
}

func TestGradPoolAvoidsIncoming(t *testing.T) {
	p := newGradPool()
	a := p.get(nil, nil, 2, 3)
	b := p.get(nil, a, 2, 3)
	if &a.Data[0] == &b.Data[0] {
		t.Fatal("pool handed out the incoming gradient's storage")
	}
	if c := p.get(nil, b, 2, 3); &c.Data[0] != &a.Data[0] {
		t.Error("pool did not reuse its first buffer")
	}
	if d := p.get(nil, a, 3, 2); len(d.Data) != 6 || d.Shape[0] != 3 {
		t.Errorf("shape (3,2): got %v", d.Shape)
	}
	var nilPool *gradPool
	if e := nilPool.get(nil, nil, 4); len(e.Data) != 4 {
		t.Error("nil pool must fall back to an own buffer")
	}
}
