package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// BIMOptions configures the basic iterative method.
type BIMOptions struct {
	// Budget bounds the total perturbation. Default: normalized L2
	// dissimilarity 0.04 (the paper's BIM setting, section 5.1).
	Budget Budget
	// Steps is the number of iterations. Default 10.
	Steps int
	// StepFrac is each step's size as a fraction of the budget radius.
	// Default 0.125, so the steps can travel 1.25 times the budget, the
	// ratio of Kurakin et al.'s rule (alpha = 1/255, min(eps+4, 1.25 eps)
	// iterations).
	StepFrac float64
	// Targeted: see FGSMOptions. Default false.
	Targeted bool
}

// DefaultBIMOptions returns the paper's BIM setting.
func DefaultBIMOptions() BIMOptions {
	return BIMOptions{Budget: Budget{Norm: L2Rel, Eps: 0.04}, Steps: 10, StepFrac: 0.125}
}

// Validate checks the budget, Steps >= 1 and StepFrac in (0, 1].
func (o BIMOptions) Validate() error {
	return validateIter("BIM", o.Budget, o.Steps, o.StepFrac)
}

func validateIter(name string, b Budget, steps int, frac float64) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if steps < 1 {
		return optErr(name, "Steps", steps, "must be at least 1")
	}
	if !(frac > 0 && frac <= 1) {
		return optErr(name, "StepFrac", frac, "must be in (0, 1]")
	}
	return nil
}

// BIM is the basic iterative method of Kurakin et al. (ICLR 2017 workshop):
// FGSM steps x <- Proj(x + alpha*sign(grad L)) from x0, each followed by a
// projection onto the budget ball around x0 and onto [0,1]. With the L2
// budget each sign step has L2 length alpha (see FGSM) and the projection
// rescales the perturbation onto the sphere. The last iterate is returned.
type BIM struct{ opts BIMOptions }

// NewBIM validates o and returns the attack.
func NewBIM(o BIMOptions) (*BIM, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &BIM{opts: o}, nil
}

// Options returns the attack's validated options.
func (a *BIM) Options() BIMOptions { return a.opts }

// Budget returns the options' budget.
func (a *BIM) Budget() Budget { return a.opts.Budget }

// Targeted reports whether the attack is targeted.
func (a *BIM) Targeted() bool { return a.opts.Targeted }

// MarshalJSON encodes the options.
func (a *BIM) MarshalJSON() ([]byte, error) { return json.Marshal(a.opts) }

// Name returns e.g. "BIM-0.04".
func (a *BIM) Name() string { return "BIM" + budgetSuffix(a.opts.Budget) }

// Run implements Attack with Steps forward/backward passes.
func (a *BIM) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	if err := a.opts.Budget.checkBudget(b); err != nil {
		return nil, err
	}
	it := iterSpec{budget: a.opts.Budget, steps: a.opts.Steps, frac: a.opts.StepFrac, targeted: a.opts.Targeted, sign: true}
	return it.run(ctx, b, m, x, labels, x.Clone())
}

// PGDOptions configures projected gradient descent.
type PGDOptions struct {
	// Budget bounds the perturbation. Default: L-infinity 0.031 (8/255),
	// the paper's BPDA setting (Table 4).
	Budget Budget
	// Steps is the number of iterations. Default 20.
	Steps int
	// StepFrac is each step's size as a fraction of the budget radius.
	// Default 0.1 (so 2.5 budgets of travel over the default 20 steps, in
	// the range Madry et al. use: eps 8/255, step 2/255, 7-20 steps).
	StepFrac float64
	// RandomStart starts from a point drawn uniformly in the budget ball
	// (Madry et al.). Default true.
	RandomStart bool
	// Restarts is the number of runs from independent random starts
	// (Madry et al.); each image keeps the first run that succeeds, else
	// the first run's result. Default 1 (0 also means one run). Ignored
	// without RandomStart.
	Restarts int
	// Seed seeds the random start; a given seed and batch give the same
	// result. Default 1.
	Seed uint64
	// Targeted: see FGSMOptions. Default false.
	Targeted bool
	// Loss is the function of the logits each step ascends: LossCE (the
	// cross-entropy, Madry et al.) or LossCW (the Carlini-Wagner margin,
	// see LossCW). Default "" (the cross-entropy): left empty, the options
	// encode to JSON exactly as they did before the field existed, so
	// cache keys built from them do not change.
	Loss Loss `json:",omitempty"`
	// Kappa caps the margin LossCW ascends (f6's confidence): an image
	// misclassified by more than Kappa stops moving. Default 0, Carlini
	// and Wagner's f6 as they use it; must be 0 with the cross-entropy.
	Kappa float64 `json:",omitempty"`
}

// DefaultPGDOptions returns L-infinity PGD at 8/255 with a random start.
func DefaultPGDOptions() PGDOptions {
	return PGDOptions{Budget: Budget{Norm: LInf, Eps: 0.031}, Steps: 20, StepFrac: 0.1, RandomStart: true, Restarts: 1, Seed: 1}
}

// Validate checks the budget, Steps >= 1, StepFrac in (0, 1],
// Restarts >= 0, the loss (one of "", LossCE, LossCW) and Kappa (finite,
// >= 0, and 0 unless the loss is LossCW). Errors are *OptionError or
// *BudgetError.
func (o PGDOptions) Validate() error {
	if o.Restarts < 0 {
		return optErr("PGD", "Restarts", o.Restarts, "must be >= 0")
	}
	if !o.Loss.known() {
		return optErr("PGD", "Loss", fmt.Sprintf("%q", string(o.Loss)), fmt.Sprintf("unknown loss, want %q (cross-entropy, also \"\") or %q (Carlini-Wagner margin)", LossCE, LossCW))
	}
	if !(o.Kappa >= 0) || math.IsInf(o.Kappa, 1) {
		return optErr("PGD", "Kappa", o.Kappa, "must be finite and >= 0")
	}
	if o.Kappa != 0 && !o.Loss.isCW() {
		return optErr("PGD", "Kappa", o.Kappa, "applies only to the CW loss (Loss \"cw\")")
	}
	if o.Budget.Norm == L2Z {
		return optErr("PGD", "Budget", o.Budget, "the l2z norm is supported by FGSM, BIM, DeepFool and CW only")
	}
	return validateIter("PGD", o.Budget, o.Steps, o.StepFrac)
}

// PGD is projected gradient descent with random start (Madry et al., ICLR
// 2018). With an L-infinity budget each step is alpha*sign(grad L); with the
// L2 budget it is alpha*grad L/||grad L||_2. After each step the iterate is
// projected onto the budget ball around x0 and onto [0,1]. The last iterate
// is returned. L is the cross-entropy, or the Carlini-Wagner margin with
// PGDOptions.Loss LossCW (where the margin is beyond Kappa, or the
// image's gradient is otherwise zero, the image does not move).
type PGD struct{ opts PGDOptions }

// NewPGD validates o and returns the attack.
func NewPGD(o PGDOptions) (*PGD, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &PGD{opts: o}, nil
}

// Options returns the attack's validated options.
func (a *PGD) Options() PGDOptions { return a.opts }

// Budget returns the options' budget.
func (a *PGD) Budget() Budget { return a.opts.Budget }

// Targeted reports whether the attack is targeted.
func (a *PGD) Targeted() bool { return a.opts.Targeted }

// MarshalJSON encodes the options.
func (a *PGD) MarshalJSON() ([]byte, error) { return json.Marshal(a.opts) }

// Name returns e.g. "PGD-linf0.031", or "PGD-CW-linf0.031" with the CW
// loss.
func (a *PGD) Name() string {
	if a.opts.Loss.isCW() {
		return "PGD-CW" + budgetSuffix(a.opts.Budget)
	}
	return "PGD" + budgetSuffix(a.opts.Budget)
}

// Run implements Attack with Steps forward/backward passes.
func (a *PGD) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	o := a.opts
	restarts := max(o.Restarts, 1)
	if !o.RandomStart {
		restarts = 1 // every run would be the same
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	r := radii(o.Budget, x.Data, b.n, b.d)
	it := iterSpec{budget: o.Budget, steps: o.Steps, frac: o.StepFrac, targeted: o.Targeted, sign: o.Budget.Norm == LInf, loss: o.Loss, kappa: o.Kappa}
	var best *Result
	for run := 0; run < restarts; run++ {
		start := x.Clone()
		if o.RandomStart {
			randomStart(rng, o.Budget.Norm, start.Data, r, b.d)
			project(o.Budget, start.Data, x.Data, r, b.d)
		}
		res, err := it.run(ctx, b, m, x, labels, start)
		if err != nil {
			return nil, err
		}
		if best == nil {
			best = res
			continue
		}
		// Keep, per image, the first restart that succeeds.
		best.Passes += res.Passes
		for i := 0; i < b.n; i++ {
			if best.Success[i] || !res.Success[i] {
				continue
			}
			copy(best.Adv.Data[i*b.d:(i+1)*b.d], res.Adv.Data[i*b.d:(i+1)*b.d])
			best.Dissim[i], best.LInf[i] = res.Dissim[i], res.LInf[i]
			best.AdvPred[i], best.Success[i] = res.AdvPred[i], true
		}
	}
	return best, nil
}

// randomStart adds to x a perturbation drawn uniformly from the ball of
// radius r[i]: independent uniforms in [-r, r] for LInf; for L2 a Gaussian
// direction scaled to radius r*u^(1/d), u uniform in [0,1).
func randomStart(rng *rand.Rand, norm Norm, x []float32, r []float64, d int) {
	dir := make([]float64, d)
	for i := range r {
		xi := x[i*d : (i+1)*d]
		if norm == LInf {
			for j := range xi {
				xi[j] += float32((2*rng.Float64() - 1) * r[i])
			}
			continue
		}
		s := 0.0
		for j := range dir {
			dir[j] = rng.NormFloat64()
			s += dir[j] * dir[j]
		}
		if s == 0 {
			continue
		}
		f := r[i] * math.Pow(rng.Float64(), 1/float64(d)) / math.Sqrt(s)
		for j := range xi {
			xi[j] += float32(dir[j] * f)
		}
	}
}

// iterSpec is the shared loop of BIM and PGD.
type iterSpec struct {
	budget   Budget
	steps    int
	frac     float64
	targeted bool
	sign     bool // sign steps (BIM, L-inf PGD) or normalized-gradient steps
	loss     Loss // the ascended loss ("": cross-entropy)
	kappa    float64
}

// run iterates from adv (modified in place and returned in the Result):
// one forward and one input-gradient pass per step, then the step and the
// projection on the flat slices.
func (it iterSpec) run(ctx context.Context, b batch, m Model, x0 *tensor.Tensor, labels []int, adv *tensor.Tensor) (*Result, error) {
	r := radii(it.budget, x0.Data, b.n, b.d)
	s := make([]float64, b.n)
	for i := range s {
		s[i] = it.frac * r[i]
	}
	seed := it.loss.seed(labels, b.k, it.targeted, it.kappa)
	var clean []int
	for step := 0; step < it.steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		z, g, err := b.grad(ctx, m, adv, seed)
		if err != nil {
			return nil, err
		}
		if step == 0 && clean == nil && sameData(adv, x0) {
			clean = z.ArgmaxRows(nil)
		}
		if it.sign {
			signStep(it.budget, adv.Data, g.Data, s, b.d)
		} else {
			gradStep(adv.Data, g.Data, s, b.d)
		}
		project(it.budget, adv.Data, x0.Data, r, b.d)
	}
	if clean == nil {
		z, err := b.logits(ctx, m, x0)
		if err != nil {
			return nil, err
		}
		clean = z.ArgmaxRows(nil)
	}
	return finish(ctx, b, m, x0, adv, clean, labels, it.targeted, it.steps)
}

func sameData(a, b *tensor.Tensor) bool {
	for i, v := range a.Data {
		if v != b.Data[i] {
			return false
		}
	}
	return true
}
