package admm

import (
	"errors"
	"math"
	"testing"
)

// lassoZ is lasso with its (y, u) iterate held in one float32 slice, as
// Stater asks: XStep reads it, UStep and ScaleDual write it back.
type lassoZ struct {
	*lasso
	z []float32
}

func (p *lassoZ) State() ([]float32, int) { return p.z, len(p.y) }
func (p *lassoZ) XStep(rho float64) {
	n := len(p.y)
	for i := range p.y {
		p.y[i], p.u[i] = float64(p.z[i]), float64(p.z[n+i])
	}
	p.lasso.XStep(rho)
}
func (p *lassoZ) UStep() {
	p.lasso.UStep()
	p.store()
}
func (p *lassoZ) ScaleDual(f float64) {
	p.lasso.ScaleDual(f)
	p.store()
}
func (p *lassoZ) store() {
	n := len(p.y)
	for i := range p.y {
		p.z[i], p.z[n+i] = float32(p.y[i]), float32(p.u[i])
	}
}

// TestAndersonSolvesLasso runs the accelerated loop to the lasso's known
// optimum, with and without adaptive rho, and checks it needs fewer
// iterations than the plain loop for the same tolerance.
func TestAndersonSolvesLasso(t *testing.T) {
	m, b := problemData()
	lambda := 0.7
	for _, c := range []struct {
		name    string
		autoRho bool
		period  int
	}{{"fixed-rho", false, 1}, {"autorho", true, 1}, {"autorho-period-10", true, 10}} {
		t.Run(c.name, func(t *testing.T) {
			iters := map[int]int{}
			for _, mem := range []int{0, 3} {
				p := &lassoZ{lasso: newLasso(m, b, lambda), z: make([]float32, 2*len(m))}
				opt := DefaultOptions()
				opt.AutoRho, opt.RhoPeriod, opt.Anderson = c.autoRho, c.period, mem
				opt.RelStopTol, opt.MaxIter = 1e-5, 5000
				res := runConverged(t, p, opt, 0.05)
				for i := range p.y {
					want := soft(m[i]*b[i], lambda) / (m[i] * m[i])
					if math.Abs(float64(p.z[i])-want) > 1e-4 {
						t.Fatalf("memory %d: y[%d] = %v, want %v", mem, i, p.z[i], want)
					}
				}
				iters[mem] = res.Iterations
			}
			t.Logf("iterations: plain %d, Anderson(3) %d", iters[0], iters[3])
			if iters[3] >= iters[0] {
				t.Errorf("Anderson took %d iterations, plain %d", iters[3], iters[0])
			}
		})
	}
}

func TestAndersonOptions(t *testing.T) {
	m, b := problemData()
	opt := DefaultOptions()
	opt.Anderson = 2
	if _, err := New(newLasso(m, b, 1), opt, 1); !errors.Is(err, ErrNotStater) {
		t.Errorf("plain problem with Anderson: err = %v, want ErrNotStater", err)
	}
	for _, v := range []int{-1, MaxAnderson + 1} {
		opt.Anderson = v
		var oe *OptionError
		if err := opt.Validate(); !errors.As(err, &oe) || oe.Field != "Anderson" {
			t.Errorf("Anderson %d: err = %v", v, err)
		}
	}
}
