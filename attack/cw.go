package attack

import (
	"context"
	"encoding/json"
	"math"

	"github.com/stl-defense/stl/tensor"
)

// CWOptions configures the Carlini-Wagner L2 attack.
type CWOptions struct {
	// Budget caps the perturbation: the smallest successful perturbation
	// found is projected onto the budget ball when it lies outside.
	// Default: normalized L2 dissimilarity 0.04 (the paper's setting).
	Budget Budget
	// Targeted: see FGSMOptions. Default false.
	Targeted bool
	// Kappa is the confidence margin of the loss f. Default 0.
	Kappa float64
	// InitialC is the first trade-off constant c. Default 1e-3 (Carlini and
	// Wagner's code).
	InitialC float64
	// BinarySteps is the number of binary-search steps over c. Default 9.
	BinarySteps int
	// MaxIter is the number of Adam steps per binary-search step. Default
	// 1000.
	MaxIter int
	// LearningRate is Adam's step size. Default 0.01.
	LearningRate float64
	// AbortEarly stops a binary-search step when the total loss has not
	// decreased by 0.01% over MaxIter/10 iterations. Default true.
	AbortEarly bool
}

// DefaultCWOptions returns the paper's CW setting with Carlini and Wagner's
// optimizer settings (their l2_attack.py, with 1000 instead of 10000 Adam
// steps).
func DefaultCWOptions() CWOptions {
	return CWOptions{
		Budget:       Budget{Norm: L2Rel, Eps: 0.04},
		InitialC:     1e-3,
		BinarySteps:  9,
		MaxIter:      1000,
		LearningRate: 0.01,
		AbortEarly:   true,
	}
}

// Validate checks every field.
func (o CWOptions) Validate() error {
	if err := o.Budget.Validate(); err != nil {
		return err
	}
	switch {
	case !(o.Kappa >= 0) || math.IsInf(o.Kappa, 1):
		return optErr("CW", "Kappa", o.Kappa, "must be finite and >= 0")
	case !(o.InitialC > 0) || math.IsInf(o.InitialC, 1):
		return optErr("CW", "InitialC", o.InitialC, "must be finite and > 0")
	case o.BinarySteps < 1:
		return optErr("CW", "BinarySteps", o.BinarySteps, "must be at least 1")
	case o.MaxIter < 1:
		return optErr("CW", "MaxIter", o.MaxIter, "must be at least 1")
	case !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 1):
		return optErr("CW", "LearningRate", o.LearningRate, "must be finite and > 0")
	}
	return nil
}

// CW is the L2 attack of Carlini and Wagner (IEEE S&P 2017). With the
// change of variables x = (tanh(w)+1)/2, which keeps pixels in [0,1], it
// minimizes ||x - x0||_2^2 + c*f(x) with Adam, where
// f = max(z_y - max_{j!=y} z_j, -kappa) untargeted and
// f = max(max_{j!=t} z_j - z_t, -kappa) targeted. A binary search over c
// per image (times 10 until a success, then bisection) keeps the smallest
// successful perturbation. Images with no success keep x0. The kept
// perturbation is finally projected onto the budget ball, which may undo
// a success that needed more than the budget.
type CW struct{ opts CWOptions }

// NewCW validates o and returns the attack.
func NewCW(o CWOptions) (*CW, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &CW{opts: o}, nil
}

// Options returns the attack's validated options.
func (a *CW) Options() CWOptions { return a.opts }

// Budget returns the options' budget.
func (a *CW) Budget() Budget { return a.opts.Budget }

// Targeted reports whether the attack is targeted.
func (a *CW) Targeted() bool { return a.opts.Targeted }

// MarshalJSON encodes the options.
func (a *CW) MarshalJSON() ([]byte, error) { return json.Marshal(a.opts) }

// Name returns e.g. "CW-0.04".
func (a *CW) Name() string { return "CW" + budgetSuffix(a.opts.Budget) }

// Run implements Attack. It costs at most BinarySteps*MaxIter forward and
// backward passes on the whole batch.
func (a *CW) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	bt, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	o := a.opts
	n, d, k := bt.n, bt.d, bt.k
	kappa := float32(o.Kappa)

	w0 := make([]float32, n*d)
	for j, v := range x.Data {
		w0[j] = float32(math.Atanh((2*float64(v) - 1) * (1 - 1e-6)))
	}
	w := make([]float32, n*d)
	mom := make([]float32, n*d)
	vel := make([]float32, n*d)
	cur := tensor.New(x.Shape...)
	best := x.Clone()
	bestL2 := make([]float64, n)
	for i := range bestL2 {
		bestL2[i] = math.Inf(1)
	}
	c := make([]float64, n)
	lo, hi := make([]float64, n), make([]float64, n)
	for i := range c {
		c[i], hi[i] = o.InitialC, math.Inf(1)
	}
	stepOK := make([]bool, n)
	fval := make([]float64, n)
	var clean []int

	// seed fills g with c_i * df/dz and records f and success per image.
	seed := func(z, g *tensor.Tensor) {
		for i, y := range labels {
			row := z.Data[i*k : (i+1)*k]
			j, other := bestOther(row, y)
			var diff float32 // the quantity f clamps at -kappa
			if o.Targeted {
				diff = other - row[y]
			} else {
				diff = row[y] - other
			}
			if diff > -kappa {
				fval[i] = float64(diff)
				s := float32(c[i])
				if o.Targeted {
					g.Data[i*k+j], g.Data[i*k+y] = s, -s
				} else {
					g.Data[i*k+y], g.Data[i*k+j] = s, -s
				}
			} else {
				fval[i] = -float64(kappa)
			}
		}
	}

	passes := 0
	for bs := 0; bs < o.BinarySteps; bs++ {
		copy(w, w0)
		clear(mom)
		clear(vel)
		clear(stepOK)
		prev := math.Inf(1)
		b1, b2 := 0.9, 0.999
		for it := 0; it < o.MaxIter; it++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for j, v := range w {
				cur.Data[j] = float32((math.Tanh(float64(v)) + 1) / 2)
			}
			z, g, err := bt.grad(ctx, m, cur, seed)
			passes++
			if err != nil {
				return nil, err
			}
			if clean == nil {
				// The first iterate is x0 up to the 1e-6 squeeze of atanh.
				zc, err := bt.logits(ctx, m, x)
				if err != nil {
					return nil, err
				}
				clean = argmax(zc, k)
			}
			total := 0.0
			for i := 0; i < n; i++ {
				ci, oi := cur.Data[i*d:(i+1)*d], x.Data[i*d:(i+1)*d]
				dist := 0.0
				for j := range ci {
					dj := float64(ci[j] - oi[j])
					dist += dj * dj
				}
				total += dist + c[i]*fval[i]
				row := z.Data[i*k : (i+1)*k]
				_, other := bestOther(row, labels[i])
				var ok bool
				if o.Targeted {
					ok = row[labels[i]] > other+kappa
				} else {
					ok = other > row[labels[i]]+kappa
				}
				if ok {
					stepOK[i] = true
					if dist < bestL2[i] {
						bestL2[i] = dist
						copy(best.Data[i*d:(i+1)*d], ci)
					}
				}
			}
			if o.AbortEarly && o.MaxIter >= 10 && it%(o.MaxIter/10) == 0 {
				if total > prev*0.9999 {
					break
				}
				prev = total
			}
			// Adam on w; dL/dw = (2(x-x0) + c df/dx) * (1 - (2x-1)^2)/2.
			t := float64(it + 1)
			lr := o.LearningRate * math.Sqrt(1-math.Pow(b2, t)) / (1 - math.Pow(b1, t))
			for j := range w {
				xj := cur.Data[j]
				t2 := 2*xj - 1
				gj := (2*(xj-x.Data[j]) + g.Data[j]) * (1 - t2*t2) / 2
				mom[j] = float32(b1)*mom[j] + float32(1-b1)*gj
				vel[j] = float32(b2)*vel[j] + float32(1-b2)*gj*gj
				w[j] -= float32(lr * float64(mom[j]) / (math.Sqrt(float64(vel[j])) + 1e-8))
			}
		}
		for i := range c {
			if stepOK[i] {
				hi[i] = math.Min(hi[i], c[i])
				c[i] = (lo[i] + hi[i]) / 2
			} else {
				lo[i] = math.Max(lo[i], c[i])
				if math.IsInf(hi[i], 1) {
					c[i] *= 10
				} else {
					c[i] = (lo[i] + hi[i]) / 2
				}
			}
		}
	}
	r := radii(o.Budget, x.Data, n, d)
	project(o.Budget, best.Data, x.Data, r, d)
	return finish(ctx, bt, m, x, best, clean, labels, o.Targeted, passes)
}
