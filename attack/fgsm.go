package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/stl-defense/stl/tensor"
)

// FGSMOptions configures the fast gradient sign method.
type FGSMOptions struct {
	// Budget is the perturbation size. Default: the normalized L2
	// dissimilarity 0.04 (the paper's FGSM-0.04, section 5.1; use 0.08 for
	// FGSM-0.08).
	Budget Budget
	// Targeted makes the attack descend the cross-entropy of the labels
	// passed to Run (the targets) instead of ascending it. Default false.
	Targeted bool
}

// DefaultFGSMOptions returns the paper's FGSM-0.04 setting.
func DefaultFGSMOptions() FGSMOptions {
	return FGSMOptions{Budget: Budget{Norm: L2Rel, Eps: 0.04}}
}

// Validate returns a *BudgetError for an invalid budget.
func (o FGSMOptions) Validate() error { return o.Budget.Validate() }

// FGSM is the fast gradient sign method of Goodfellow et al. (ICLR 2015):
// one step x_adv = clip(x0 + alpha * sign(grad_x L(x0, y)), 0, 1) on the
// cross-entropy L.
//
// With an L-infinity budget alpha = Eps. With the normalized L2 budget the
// step spends the budget exactly before clipping, as in the paper's
// FGSM-0.04/0.08: alpha = Eps*||x0||_2/sqrt(m), m the number of non-zero
// gradient entries, so that ||x_adv - x0||_2/||x0||_2 = Eps. Clipping to
// [0,1] can only shrink the perturbation; Result reports what remains.
type FGSM struct{ opts FGSMOptions }

// NewFGSM validates o and returns the attack.
func NewFGSM(o FGSMOptions) (*FGSM, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &FGSM{opts: o}, nil
}

// Options returns the attack's validated options.
func (a *FGSM) Options() FGSMOptions { return a.opts }

// Budget returns the options' budget.
func (a *FGSM) Budget() Budget { return a.opts.Budget }

// Targeted reports whether the attack is targeted.
func (a *FGSM) Targeted() bool { return a.opts.Targeted }

// MarshalJSON encodes the options.
func (a *FGSM) MarshalJSON() ([]byte, error) { return json.Marshal(a.opts) }

// Name returns e.g. "FGSM-0.04" (L2 dissimilarity), "FGSM-l2z0.04" (on
// normalized tensors) or "FGSM-linf0.031".
func (a *FGSM) Name() string { return "FGSM" + budgetSuffix(a.opts.Budget) }

func budgetSuffix(b Budget) string {
	switch b.Norm {
	case L2Rel:
		return fmt.Sprintf("-%g", b.Eps)
	case L2Z:
		return fmt.Sprintf("-l2z%g", b.Eps)
	}
	return fmt.Sprintf("-linf%g", b.Eps)
}

// Run implements Attack with one forward and one backward pass.
func (a *FGSM) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	if err := a.opts.Budget.checkBudget(b); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	z, g, err := b.grad(ctx, m, x, crossEntropySeed(labels, b.k, a.opts.Targeted))
	if err != nil {
		return nil, err
	}
	clean := z.ArgmaxRows(nil)
	r := radii(a.opts.Budget, x.Data, b.n, b.d)
	adv := x.Clone()
	signStep(a.opts.Budget, adv.Data, g.Data, r, b.d)
	tensor.Clip(adv.Data, 0, 1)
	return finish(ctx, b, m, x, adv, clean, labels, a.opts.Targeted, 1)
}

// signStep adds to x (flat, d values per image) a step along sign(g) of
// size s[i] in the budget's norm: s[i] per coordinate for LInf, L2 length
// s[i] for L2Rel (each coordinate s[i]/sqrt(m), m the number of non-zero
// entries of g_i), and for L2Z the L2Rel step taken on the normalized
// tensor z (sign(grad_z) = sign(grad_x)), i.e. coordinate j moves by
// std_j*s[i]/sqrt(m) in pixels. An image whose gradient is all zero is
// left unchanged.
func signStep(bud Budget, x, g []float32, s []float64, d int) {
	std := bud.zStd(d)
	for i := range s {
		xi, gi := x[i*d:(i+1)*d], g[i*d:(i+1)*d]
		alpha := s[i]
		if bud.Norm != LInf {
			nz := 0
			for _, v := range gi {
				if v != 0 {
					nz++
				}
			}
			if nz == 0 {
				continue
			}
			alpha = s[i] / math.Sqrt(float64(nz))
		}
		a := float32(alpha)
		for j, v := range gi {
			if std != nil {
				a = float32(alpha * std[j])
			}
			if v > 0 {
				xi[j] += a
			} else if v < 0 {
				xi[j] -= a
			}
		}
	}
}

// gradStep adds to x a step of L2 length s[i] along g_i/||g_i||_2.
func gradStep(x, g []float32, s []float64, d int) {
	for i := range s {
		xi, gi := x[i*d:(i+1)*d], g[i*d:(i+1)*d]
		n := l2(gi)
		if n == 0 {
			continue
		}
		f := s[i] / n
		for j, v := range gi {
			xi[j] += float32(float64(v) * f)
		}
	}
}
