package admm

import (
	"context"
	"errors"
	"math"
	"testing"
)

// lasso is minimize 1/2 sum_i (m_i x_i - b_i)^2 + lambda ||y||_1 s.t. x = y
// (A = I, B = -I, c = 0), whose optimum is known in closed form:
// x_i = soft(m_i b_i, lambda) / m_i^2.
type lasso struct {
	m, b         []float64
	lambda       float64
	x, xr, y, yp []float64
	u            []float64
	rhoSeen      []float64
}

func newLasso(m, b []float64, lambda float64) *lasso {
	n := len(m)
	return &lasso{m: m, b: b, lambda: lambda, x: make([]float64, n), xr: make([]float64, n),
		y: make([]float64, n), yp: make([]float64, n), u: make([]float64, n)}
}

func (p *lasso) XStep(rho float64) {
	for i := range p.x {
		p.x[i] = (p.m[i]*p.b[i] + rho*(p.y[i]-p.u[i])) / (p.m[i]*p.m[i] + rho)
	}
}
func (p *lasso) Relax(a float64) {
	for i := range p.x {
		p.xr[i] = a*p.x[i] + (1-a)*p.y[i]
	}
}
func soft(v, t float64) float64 {
	switch {
	case v > t:
		return v - t
	case v < -t:
		return v + t
	}
	return 0
}
func (p *lasso) YStep(rho float64) {
	copy(p.yp, p.y)
	for i := range p.y {
		p.y[i] = soft(p.xr[i]+p.u[i], p.lambda/rho)
	}
}
func (p *lasso) UStep() {
	for i := range p.u {
		p.u[i] += p.xr[i] - p.y[i]
	}
}
func norm(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}
func (p *lasso) Residuals() Residuals {
	var r, d float64
	for i := range p.x {
		r += (p.x[i] - p.y[i]) * (p.x[i] - p.y[i])
		d += (p.y[i] - p.yp[i]) * (p.y[i] - p.yp[i])
	}
	return Residuals{Primal: math.Sqrt(r), Dual: math.Sqrt(d), AX: norm(p.x), BY: norm(p.y), ATU: norm(p.u), Nc: len(p.x), Nx: len(p.x)}
}
func (p *lasso) ScaleDual(f float64) {
	for i := range p.u {
		p.u[i] *= f
	}
}
func (p *lasso) SetRho(rho float64) { p.rhoSeen = append(p.rhoSeen, rho) }
func (p *lasso) Objective() (float64, float64, float64) {
	var f, g float64
	for i := range p.y {
		e := p.m[i]*p.y[i] - p.b[i]
		f += 0.5 * e * e
		g += p.lambda * math.Abs(p.y[i])
	}
	return f + g, f, g
}

func problemData() (m, b []float64) {
	for i := 0; i < 20; i++ {
		m = append(m, 0.1+float64(i%7))
		b = append(b, math.Sin(float64(3*i+1))*3)
	}
	return
}

// runConverged runs a new Solver on p to convergence, failing t otherwise.
func runConverged(t *testing.T, p Problem, opt Options, rho0 float64) Result {
	t.Helper()
	s, err := New(p, opt, rho0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Converged {
		t.Fatalf("not converged after %d iterations", res.Iterations)
	}
	return res
}

func TestSolvesLassoToOptimum(t *testing.T) {
	cases := []struct {
		name    string
		relax   float64
		autoRho bool
		rho0    float64
	}{
		{"plain", 1, false, 1},
		{"relaxed", 1.8, false, 1},
		{"autorho-small-rho", 1.8, true, 1e-3},
		{"autorho-large-rho", 1.8, true, 1e3},
	}
	m, b := problemData()
	lambda := 0.7
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newLasso(m, b, lambda)
			opt := DefaultOptions()
			opt.Relax, opt.AutoRho = c.relax, c.autoRho
			opt.RelStopTol = 1e-9
			opt.MaxIter = 5000
			runConverged(t, p, opt, c.rho0)
			for i := range p.y {
				want := soft(m[i]*b[i], lambda) / (m[i] * m[i])
				if math.Abs(p.y[i]-want) > 1e-6 {
					t.Fatalf("y[%d] = %v, want %v", i, p.y[i], want)
				}
			}
			if c.autoRho && len(p.rhoSeen) < 2 {
				t.Errorf("rho never adapted from %v", c.rho0)
			}
			if !c.autoRho && len(p.rhoSeen) != 1 {
				t.Errorf("rho changed without AutoRho: %v", p.rhoSeen)
			}
		})
	}
}

func TestRecorderAndWarmStart(t *testing.T) {
	m, b := problemData()
	p := newLasso(m, b, 0.5)
	opt := DefaultOptions()
	opt.RelStopTol = 0
	opt.MaxIter = 7
	s, _ := New(p, opt, 1)
	var got []Stats
	rec := RecorderFunc(func(st Stats) { got = append(got, st) })
	res, err := s.Run(context.Background(), rec)
	if err != nil || res.Iterations != 7 || res.Converged {
		t.Fatalf("res = %+v, err = %v", res, err)
	}
	if _, err := s.RunN(context.Background(), 3, rec); err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || s.Iterations() != 10 {
		t.Fatalf("recorded %d iterations, solver says %d; want 10", len(got), s.Iterations())
	}
	for i, st := range got {
		if st.Iter != i {
			t.Errorf("stats %d has Iter %d", i, st.Iter)
		}
		if math.IsNaN(st.Objective) || math.Abs(st.Objective-st.DFid-st.Reg) > 1e-12 {
			t.Errorf("stats %d objective %v != %v + %v", i, st.Objective, st.DFid, st.Reg)
		}
		if i > 0 && st.Elapsed < got[i-1].Elapsed {
			t.Errorf("elapsed decreased")
		}
	}
	if got[9].Objective >= got[0].Objective {
		t.Errorf("objective did not decrease: %v -> %v", got[0].Objective, got[9].Objective)
	}
}

func TestCancel(t *testing.T) {
	m, b := problemData()
	s, _ := New(newLasso(m, b, 0.5), DefaultOptions(), 1)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := s.Run(ctx, RecorderFunc(func(Stats) {
		n++
		if n == 3 {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("err = %v after %d iterations, want context.Canceled after 3", err, n)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name  string
		mod   func(*Options)
		field string
	}{
		{"neg max iter", func(o *Options) { o.MaxIter = -1 }, "MaxIter"},
		{"relax 2", func(o *Options) { o.Relax = 2 }, "Relax"},
		{"relax nan", func(o *Options) { o.Relax = math.NaN() }, "Relax"},
		{"rel tol", func(o *Options) { o.RelStopTol = -1 }, "RelStopTol"},
		{"period", func(o *Options) { o.RhoPeriod = 0 }, "RhoPeriod"},
		{"scaling", func(o *Options) { o.RhoScaling = 1 }, "RhoScaling"},
		{"ratio", func(o *Options) { o.RsdlRatio = 0.5 }, "RsdlRatio"},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.mod(&o)
		var oe *OptionError
		if err := o.Validate(); !errors.As(err, &oe) || oe.Field != c.field {
			t.Errorf("%s: err = %v, want OptionError on %s", c.name, err, c.field)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	m, b := problemData()
	if _, err := New(newLasso(m, b, 1), DefaultOptions(), 0); !errors.Is(err, ErrRho) {
		t.Errorf("rho 0: err = %v", err)
	}
}
