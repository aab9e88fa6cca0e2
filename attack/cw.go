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
	// Overshoot multiplies the smallest successful perturbation found by
	// 1+Overshoot (before the budget's cap and clipping), as DeepFool's
	// overshoot does: how far past the boundary the attack goes, the
	// strength a search for a target average dissimilarity sets
	// (SearchStrength). Default 0; at most MaxOvershoot. Omitted from the
	// JSON encoding when 0, which then reads as before it existed.
	Overshoot float64 `json:",omitempty"`
	// AbortEarly stops an image's binary-search step when its loss has not
	// decreased by 0.01% over MaxIter/10 iterations (Carlini and Wagner's
	// rule, applied per image rather than to the batch's total, so that an
	// image's result does not depend on the rest of its batch). Default
	// true.
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
	case !(o.Overshoot >= 0 && o.Overshoot <= MaxOvershoot):
		return optErr("CW", "Overshoot", o.Overshoot, "must be in [0, 100]")
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
// backward passes; an image whose loss has stalled leaves the batch for
// the rest of the binary-search step, so later passes are smaller.
func (a *CW) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	bt, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	o := a.opts
	if err := o.Budget.checkBudget(bt); err != nil {
		return nil, err
	}
	n, d, k := bt.n, bt.d, bt.k
	kappa := float32(o.Kappa)
	// inv2 holds 1/std^2 per value for an L2Z budget: the distance term is
	// then ||(x - x0)/std||^2, the squared L2 distance of the normalized
	// tensors; nil for the others.
	var inv2 []float32
	if std := o.Budget.zStd(d); std != nil {
		inv2 = make([]float32, d)
		for j, s := range std {
			inv2[j] = float32(1 / (s * s))
		}
	}

	w0 := make([]float32, n*d)
	for j, v := range x.Data {
		w0[j] = float32(math.Atanh((2*float64(v) - 1) * (1 - 1e-6)))
	}
	w := make([]float32, n*d)
	mom := make([]float32, n*d)
	vel := make([]float32, n*d)
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
	running := make([]bool, n)
	prev := make([]float64, n)
	fval := make([]float64, n)
	var idx []int
	var clean []int
	cur := tensor.New(x.Shape...)
	full := cur.Data

	// seed fills g with c_i * df/dz for the images idx of the sub-batch and
	// records f per image.
	seed := func(z, g *tensor.Tensor) {
		for li, gi := range idx {
			y := labels[gi]
			row := z.Data[li*k : (li+1)*k]
			j, other := bestOther(row, y)
			var diff float32 // the quantity f clamps at -kappa
			if o.Targeted {
				diff = other - row[y]
			} else {
				diff = row[y] - other
			}
			if diff > -kappa {
				fval[gi] = float64(diff)
				s := float32(c[gi])
				if o.Targeted {
					g.Data[li*k+j], g.Data[li*k+y] = s, -s
				} else {
					g.Data[li*k+y], g.Data[li*k+j] = s, -s
				}
			} else {
				fval[gi] = -float64(kappa)
			}
		}
	}

	passes := 0
	b1, b2 := 0.9, 0.999
	check := 0 // early-abort period
	if o.AbortEarly && o.MaxIter >= 10 {
		check = o.MaxIter / 10
	}
	for bs := 0; bs < o.BinarySteps; bs++ {
		copy(w, w0)
		clear(mom)
		clear(vel)
		clear(stepOK)
		for i := range running {
			running[i], prev[i] = true, math.Inf(1)
		}
		cur.Data = full
		for it := 0; it < o.MaxIter; it++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			idx = idx[:0]
			for i, on := range running {
				if on {
					idx = append(idx, i)
				}
			}
			if len(idx) == 0 {
				break
			}
			sb := bt
			sb.n = len(idx)
			// The iterate buffer is reused; it only shrinks (the model
			// does not keep or modify its input).
			cur.Shape[0], cur.Data = len(idx), cur.Data[:len(idx)*d]
			for li, gi := range idx {
				cw, ww := cur.Data[li*d:(li+1)*d], w[gi*d:(gi+1)*d]
				for j, v := range ww {
					cw[j] = float32((math.Tanh(float64(v)) + 1) / 2)
				}
			}
			z, g, err := sb.grad(ctx, m, cur, seed)
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
				clean = zc.ArgmaxRows(nil)
			}
			t := float64(it + 1)
			lr := o.LearningRate * math.Sqrt(1-math.Pow(b2, t)) / (1 - math.Pow(b1, t))
			for li, gi := range idx {
				ci, oi := cur.Data[li*d:(li+1)*d], x.Data[gi*d:(gi+1)*d]
				dist := 0.0
				for j := range ci {
					dj := float64(ci[j] - oi[j])
					if inv2 != nil {
						dist += dj * dj * float64(inv2[j])
					} else {
						dist += dj * dj
					}
				}
				row := z.Data[li*k : (li+1)*k]
				_, other := bestOther(row, labels[gi])
				var ok bool
				if o.Targeted {
					ok = row[labels[gi]] > other+kappa
				} else {
					ok = other > row[labels[gi]]+kappa
				}
				if ok {
					stepOK[gi] = true
					if dist < bestL2[gi] {
						bestL2[gi] = dist
						copy(best.Data[gi*d:(gi+1)*d], ci)
					}
				}
				// Early abort (Carlini and Wagner's rule, per image): stop
				// when the loss has not decreased by 0.01% since the last
				// check, MaxIter/10 iterations ago.
				if check > 0 && it%check == 0 {
					loss := dist + c[gi]*fval[gi]
					if loss > prev[gi]*0.9999 {
						running[gi] = false
						continue
					}
					prev[gi] = loss
				}
				// Adam on w; dL/dw = (2(x-x0) + c df/dx) * (1 - (2x-1)^2)/2,
				// the first term divided by std^2 for L2Z.
				gw, ww := g.Data[li*d:(li+1)*d], w[gi*d:(gi+1)*d]
				mi, vi := mom[gi*d:(gi+1)*d], vel[gi*d:(gi+1)*d]
				for j := range ww {
					xj := ci[j]
					t2 := 2*xj - 1
					dd := 2 * (xj - oi[j])
					if inv2 != nil {
						dd *= inv2[j]
					}
					gj := (dd + gw[j]) * (1 - t2*t2) / 2
					mi[j] = float32(b1)*mi[j] + float32(1-b1)*gj
					vi[j] = float32(b2)*vi[j] + float32(1-b2)*gj*gj
					ww[j] -= float32(lr * float64(mi[j]) / (math.Sqrt(float64(vi[j])) + 1e-8))
				}
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
	if o.Overshoot > 0 {
		for i := 0; i < n; i++ {
			if math.IsInf(bestL2[i], 1) {
				continue // no successful perturbation: best is x
			}
			bi, xi := best.Data[i*d:(i+1)*d], x.Data[i*d:(i+1)*d]
			for j := range bi {
				bi[j] = xi[j] + float32((1+o.Overshoot)*(float64(bi[j])-float64(xi[j])))
			}
		}
	}
	r := radii(o.Budget, x.Data, n, d)
	project(o.Budget, best.Data, x.Data, r, d)
	return finish(ctx, bt, m, x, best, clean, labels, o.Targeted, passes)
}
