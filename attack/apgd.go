package attack

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// APGD's fixed parameters (Croce and Hein, ICML 2020, section 3): the
// momentum alpha of eq. 3 (the first step has none) and the first step
// size as a multiple of the budget radius.
const (
	apgdMomentum  = 0.75
	apgdFirstStep = 2.0
)

// APGDOptions configures Auto-PGD.
type APGDOptions struct {
	// Budget bounds the perturbation. Default: L-infinity 0.031 (8/255),
	// AutoAttack's CIFAR-10 setting and the paper's BPDA budget. With the
	// L2 dissimilarity the radius is Eps*||x0||_2 per image.
	Budget Budget
	// Steps is N_iter, the number of iterations of each run. Default 100
	// (Croce and Hein, section 3.1; AutoAttack's n_iter).
	Steps int
	// Loss is the ascended loss: LossCE (cross-entropy, "" means the
	// same: AutoAttack's APGD-CE), LossDLR (APGD-DLR), LossDLRTargeted
	// (APGD-T) or LossCW (APGD-CW: the Carlini-Wagner margin
	// max_{j!=y} z_j - z_y, unclamped, as Croce et al. 2022 use it on
	// test-time defenses; see cwMarginLoss). Default LossCE.
	Loss Loss
	// Rho is the fraction of steps that must increase the loss between two
	// checkpoints for the step size to be kept (condition 1 of section
	// 3.1). Default 0.75.
	Rho float64
	// RandomStart starts each run at a random point on the boundary of
	// the budget ball, as AutoAttack does: x0 + r*u/||u||_inf with u
	// uniform in [-1,1]^d (L-infinity) or x0 + r*u/||u||_2 with u Gaussian
	// (L2), clipped to [0,1]. Without it runs start at x0. Default true.
	RandomStart bool
	// Restarts is the number of runs (per target class with
	// LossDLRTargeted) from independent random starts; 0 means 1, and
	// without RandomStart there is one run. Default 1 (AutoAttack's
	// standard version).
	Restarts int
	// Seed seeds the random starts. Default 0 (AutoAttack's seed).
	Seed uint64
	// NTargetClasses is the number of target classes of untargeted APGD
	// with LossDLRTargeted: the classes ranked 2 to NTargetClasses+1 by
	// the clean logits, at most K-1. Default 9 (AutoAttack's
	// n_target_classes). Ignored with the other losses and when Targeted.
	NTargetClasses int
	// StopEarly stops attacking an image at its first successful iterate,
	// which becomes its result, and leaves out of further runs the images
	// already successful (on x0 or in an earlier run), as AutoAttack does.
	// Without it every image runs every iteration of every run and keeps
	// its highest-loss successful iterate. Default true.
	StopEarly bool
	// Targeted makes the labels passed to Run target classes: LossCE
	// descends the target's cross-entropy, LossCW ascends the target's
	// margin z_t - max_{j!=t} z_j, LossDLRTargeted ascends the targeted
	// DLR with y the clean prediction. Not with LossDLR.
	// Default false.
	Targeted bool
}

// DefaultAPGDOptions returns AutoAttack's APGD-CE at L-infinity 8/255:
// 100 steps, rho 0.75, one run from a random start, 9 target classes for
// APGD-T, stopping at success.
func DefaultAPGDOptions() APGDOptions {
	return APGDOptions{Budget: Budget{Norm: LInf, Eps: 0.031}, Steps: 100, Loss: LossCE, Rho: 0.75,
		RandomStart: true, Restarts: 1, NTargetClasses: 9, StopEarly: true}
}

// Validate checks the budget, Steps >= 1, the loss (one of APGDLosses or
// ""), Rho in (0, 1), Restarts >= 0, NTargetClasses >= 1 for untargeted
// LossDLRTargeted, and that LossDLR is not Targeted. Errors are
// *OptionError or *BudgetError.
func (o APGDOptions) Validate() error {
	if o.Budget.Norm == L2Z {
		return optErr("APGD", "Budget", o.Budget, "the l2z norm is supported by FGSM, BIM, DeepFool and CW only")
	}
	if err := o.Budget.Validate(); err != nil {
		return err
	}
	switch {
	case o.Steps < 1:
		return optErr("APGD", "Steps", o.Steps, "must be at least 1")
	case !apgdLossKnown(o.Loss):
		return optErr("APGD", "Loss", fmt.Sprintf("%q", string(o.Loss)), fmt.Sprintf("unknown loss, want one of %q", APGDLosses))
	case !(o.Rho > 0 && o.Rho < 1):
		return optErr("APGD", "Rho", o.Rho, "must be in (0, 1)")
	case o.Restarts < 0:
		return optErr("APGD", "Restarts", o.Restarts, "must be >= 0")
	case o.Loss == LossDLRTargeted && !o.Targeted && o.NTargetClasses < 1:
		return optErr("APGD", "NTargetClasses", o.NTargetClasses, "must be at least 1 with the targeted DLR loss")
	case o.Loss == LossDLR && o.Targeted:
		return optErr("APGD", "Loss", fmt.Sprintf("%q", string(o.Loss)), fmt.Sprintf("is untargeted, use %q or %q with Targeted", LossCE, LossDLRTargeted))
	}
	return nil
}

// APGD is Auto-PGD (Croce and Hein, "Reliable evaluation of adversarial
// robustness with an ensemble of diverse parameter-free attacks", ICML
// 2020, Algorithm 1), the gradient attack of AutoAttack. From x^(0) each
// iteration takes
//
//	z^(k+1) = P(x^(k) + eta^(k) s(grad f(x^(k))))
//	x^(k+1) = P(x^(k) + alpha (z^(k+1) - x^(k)) + (1-alpha) (x^(k) - x^(k-1)))
//
// with s the sign (L-infinity) or g/||g||_2 (L2), P the projection onto
// the budget ball and [0,1], alpha = 0.75 (1 on the first step) and
// eta^(0) = 2r. The step size is halved at the checkpoints w_j =
// ceil(p_j N_iter), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1}
// - 0.03, 0.06), when (1) fewer than rho (w_j - w_{j-1}) of the steps
// since the last checkpoint increased the loss, or (2) the step size was
// not halved at the previous checkpoint and the best loss has not grown
// since; the iterate then restarts from the highest-loss point x_max with
// its gradient. Each image runs independently, with its own step size.
//
// Where AutoAttack's code and the paper differ in detail, this follows the
// paper: condition 1 is a strict inequality and counts from x^(0)'s loss,
// condition 2 may fire at the first checkpoint, and the checkpoints are
// ceil(p_j N_iter) for every N_iter.
//
// Per image the result is the first successful iterate (StopEarly; the
// highest-loss successful iterate otherwise), else the highest-loss
// iterate over all runs. A run costs Steps forward+backward passes on the
// images it attacks (the last iterate needs only its logits, which are
// not counted); Result.Passes sums the passes over runs, each on the
// images still attacked.
type APGD struct{ holder[APGDOptions] }

// NewAPGD validates o and returns the attack.
func NewAPGD(o APGDOptions) (*APGD, error) {
	h, err := newHolder(o)
	if err != nil {
		return nil, err
	}
	return &APGD{h}, nil
}

// Options returns the attack's validated options.
func (a *APGD) Options() APGDOptions { return a.opts }

func (o APGDOptions) budget() Budget { return o.Budget }
func (o APGDOptions) targeted() bool { return o.Targeted }

// Name returns AutoAttack's names with the budget: "APGD-CE-linf0.031",
// "APGD-DLR-0.04", "APGD-T-linf0.031", and "APGD-CW-linf0.031" for the
// margin loss.
func (a *APGD) Name() string {
	name := "APGD-CE"
	switch a.opts.Loss {
	case LossCW:
		name = "APGD-CW"
	case LossDLR:
		name = "APGD-DLR"
	case LossDLRTargeted:
		name = "APGD-T"
	}
	return name + budgetSuffix(a.opts.Budget)
}

// apgdCheckpoints returns the checkpoint iterations w_1 < w_2 < ... <=
// steps, w_j = ceil(p_j steps), computed exactly in hundredths (p_1 =
// 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), while p_j <= 1).
// Checkpoints that round to the same iteration appear once.
func apgdCheckpoints(steps int) []int {
	var w []int
	for prev, p := 0, 22; p <= 100; prev, p = p, p+max(p-prev-3, 6) {
		wj := (p*steps + 99) / 100
		if wj > 0 && (len(w) == 0 || wj > w[len(w)-1]) {
			w = append(w, wj)
		}
	}
	return w
}

// Run implements Attack.
func (a *APGD) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	o := a.opts
	if need := o.Loss.minClasses(); b.k < need {
		return nil, optErr("APGD", "Loss", fmt.Sprintf("%q", string(o.Loss)), fmt.Sprintf("needs at least %d classes, the model has %d", need, b.k))
	}
	z0, clean, err := cleanPass(ctx, b, m, x)
	if err != nil {
		return nil, err
	}
	s := newAPGDState(b, o, x.Data, labels, clean)

	// The runs: one per target rank (APGD-T) and restart.
	ranks := []int{0}
	if o.Loss == LossDLRTargeted && !o.Targeted {
		ranks = ranks[:0]
		for r := 1; r <= min(o.NTargetClasses, b.k-1); r++ {
			ranks = append(ranks, r)
		}
	}
	restarts := max(o.Restarts, 1)
	if !o.RandomStart {
		restarts = 1
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	passes := 0
	for _, rank := range ranks {
		if rank > 0 {
			for i := range s.ts {
				s.ts[i] = rankedClass(z0.Data[i*b.k:(i+1)*b.k], rank)
			}
		}
		for run := 0; run < restarts; run++ {
			idx := s.toAttack()
			if len(idx) == 0 {
				break
			}
			for _, i := range idx {
				cur := s.cur[i*b.d : (i+1)*b.d]
				copy(cur, x.Data[i*b.d:(i+1)*b.d])
				if o.RandomStart {
					apgdStart(rng, o.Budget.Norm, cur, s.r[i])
				}
				project(o.Budget, cur, x.Data[i*b.d:(i+1)*b.d], s.r[i:i+1], b.d)
			}
			p, err := s.run(ctx, m, idx)
			passes += p
			if err != nil {
				return nil, err
			}
		}
	}
	adv := &tensor.Tensor{Shape: append([]int(nil), x.Shape...), Data: s.out}
	return finish(ctx, b, m, x, adv, clean, labels, o.Targeted, passes)
}

// rankedClass returns the class of the rank-th largest logit of row (rank
// 0 the largest), ties to the lower index.
func rankedClass(row []float32, rank int) int {
	taken := make([]bool, len(row))
	best := -1
	for r := 0; r <= rank; r++ {
		best = -1
		for j, v := range row {
			if !taken[j] && (best < 0 || v > row[best]) {
				best = j
			}
		}
		taken[best] = true
	}
	return best
}

// apgdStart moves x (one image) to x + r*u/||u|| with u uniform in
// [-1,1]^d and the max norm (LInf), or u Gaussian and the L2 norm (L2Rel):
// a random point on the boundary of the ball, as in AutoAttack.
func apgdStart(rng *rand.Rand, norm Norm, x []float32, r float64) {
	u := make([]float64, len(x))
	n := 0.0
	for j := range u {
		if norm == LInf {
			u[j] = 2*rng.Float64() - 1
			n = math.Max(n, math.Abs(u[j]))
		} else {
			u[j] = rng.NormFloat64()
			n += u[j] * u[j]
		}
	}
	if norm != LInf {
		n = math.Sqrt(n)
	}
	if n == 0 {
		return
	}
	for j := range x {
		x[j] += float32(r * u[j] / n)
	}
}

// apgdState holds the per-image state of APGD over a batch: flat arrays of
// n*d values for the points and gradients, n values for the scalars.
type apgdState struct {
	b         batch
	bud       Budget
	x0        []float32
	r         []float64
	steps     int
	rho       float64
	loss      rowLoss
	ys, ts    []int // per image: the loss's class y and target t
	labels    []int // the success criterion's labels
	targeted  bool
	stopEarly bool
	checks    []int

	// The current run.
	cur, prev, grad, best, gradBest, z []float32
	curLoss, bestLoss, bestAtCheck     []float64
	eta                                []float64
	ups                                []int // loss increases since the last checkpoint
	reduced, stopped                   []bool

	// The answer over all runs (see better).
	out        []float32
	outLoss    []float64
	outSuccess []bool
}

func newAPGDState(b batch, o APGDOptions, x0 []float32, labels, clean []int) *apgdState {
	nd := b.n * b.d
	s := &apgdState{
		b: b, bud: o.Budget, x0: x0, r: radii(o.Budget, x0, b.n, b.d), steps: o.Steps, rho: o.Rho,
		loss: apgdRowLoss(o.Loss, o.Targeted), ys: append([]int(nil), labels...), ts: append([]int(nil), labels...),
		labels: labels, targeted: o.Targeted, stopEarly: o.StopEarly, checks: apgdCheckpoints(o.Steps),
		cur: make([]float32, nd), prev: make([]float32, nd), grad: make([]float32, nd),
		best: make([]float32, nd), gradBest: make([]float32, nd), z: make([]float32, b.d),
		curLoss: make([]float64, b.n), bestLoss: make([]float64, b.n), bestAtCheck: make([]float64, b.n),
		eta: make([]float64, b.n), ups: make([]int, b.n), reduced: make([]bool, b.n), stopped: make([]bool, b.n),
		out: append([]float32(nil), x0...), outLoss: make([]float64, b.n), outSuccess: make([]bool, b.n),
	}
	if o.Targeted {
		copy(s.ys, clean) // the targeted DLR's y: the clean prediction
	}
	for i := range s.outLoss {
		s.outLoss[i] = math.Inf(-1)
		s.outSuccess[i] = succeeded(clean[i], labels[i], o.Targeted)
	}
	return s
}

// toAttack returns the images a run attacks: all, or with StopEarly those
// not yet successful.
func (s *apgdState) toAttack() []int {
	var idx []int
	for i := range s.outSuccess {
		if !s.stopEarly || !s.outSuccess[i] {
			idx = append(idx, i)
		}
	}
	return idx
}

// eval computes the loss and the prediction of the current points of the
// images idx in one batch, and their gradients into s.grad when withGrad.
func (s *apgdState) eval(ctx context.Context, m Model, idx []int, withGrad bool) ([]float64, []int, error) {
	d, k := s.b.d, s.b.k
	sb := s.b
	sb.n = len(idx)
	xa := tensor.New(len(idx), s.b.c, s.b.h, s.b.w)
	for a, i := range idx {
		copy(xa.Data[a*d:(a+1)*d], s.cur[i*d:(i+1)*d])
	}
	loss := make([]float64, len(idx))
	var z *tensor.Tensor
	var err error
	if withGrad {
		var g *tensor.Tensor
		z, g, err = sb.grad(ctx, m, xa, func(z, g *tensor.Tensor) {
			for a, i := range idx {
				loss[a] = s.loss(z.Data[a*k:(a+1)*k], s.ys[i], s.ts[i], g.Data[a*k:(a+1)*k])
			}
		})
		if err != nil {
			return nil, nil, err
		}
		for a, i := range idx {
			copy(s.grad[i*d:(i+1)*d], g.Data[a*d:(a+1)*d])
		}
	} else {
		if z, err = sb.logits(ctx, m, xa); err != nil {
			return nil, nil, err
		}
		for a, i := range idx {
			loss[a] = s.loss(z.Data[a*k:(a+1)*k], s.ys[i], s.ts[i], nil)
		}
	}
	return loss, z.ArgmaxRows(nil), nil
}

// step moves image i from cur to the next iterate (eq. 2-3), keeping the
// point it leaves in prev.
func (s *apgdState) step(i int, alpha float64) {
	d := s.b.d
	lo, hi := i*d, (i+1)*d
	cur, prev, x0, z := s.cur[lo:hi], s.prev[lo:hi], s.x0[lo:hi], s.z
	copy(z, cur)
	if s.bud.Norm == LInf {
		signStep(Budget{Norm: LInf}, z, s.grad[lo:hi], s.eta[i:i+1], d)
	} else {
		gradStep(z, s.grad[lo:hi], s.eta[i:i+1], d)
	}
	project(s.bud, z, x0, s.r[i:i+1], d)
	for j, c32 := range cur {
		c := float64(c32)
		cur[j] = float32(c + alpha*(float64(z[j])-c) + (1-alpha)*(c-float64(prev[j])))
		prev[j] = c32
	}
	project(s.bud, cur, x0, s.r[i:i+1], d)
}

// observe records the loss and prediction of image i's current point:
// the run's best point, the answer over runs, and the stop at success.
func (s *apgdState) observe(i int, loss float64, pred int, withGrad bool) {
	d := s.b.d
	lo, hi := i*d, (i+1)*d
	if loss > s.curLoss[i] {
		s.ups[i]++
	}
	s.curLoss[i] = loss
	if loss > s.bestLoss[i] {
		s.bestLoss[i] = loss
		copy(s.best[lo:hi], s.cur[lo:hi])
		if withGrad {
			copy(s.gradBest[lo:hi], s.grad[lo:hi])
		}
	}
	ok := succeeded(pred, s.labels[i], s.targeted)
	if (ok && !s.outSuccess[i]) || (ok == s.outSuccess[i] && loss > s.outLoss[i]) {
		s.outSuccess[i], s.outLoss[i] = ok, loss
		copy(s.out[lo:hi], s.cur[lo:hi])
	}
	if ok && s.stopEarly {
		s.stopped[i] = true
	}
}

// run runs APGD on the images idx, whose start points are in s.cur, and
// returns the number of gradient passes.
func (s *apgdState) run(ctx context.Context, m Model, idx []int) (int, error) {
	d := s.b.d
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	loss, pred, err := s.eval(ctx, m, idx, true)
	if err != nil {
		return 0, err
	}
	passes := 1
	for a, i := range idx {
		lo, hi := i*d, (i+1)*d
		copy(s.prev[lo:hi], s.cur[lo:hi])
		s.curLoss[i], s.bestLoss[i] = loss[a], math.Inf(-1)
		s.eta[i] = apgdFirstStep * s.r[i]
		s.ups[i], s.reduced[i], s.stopped[i] = 0, false, false
		s.observe(i, loss[a], pred[a], true)
		s.bestAtCheck[i] = s.bestLoss[i]
	}
	active := s.running(idx)
	check, last := 0, 0 // the next checkpoint's index in s.checks, the last checkpoint
	for k := 1; k <= s.steps && len(active) > 0; k++ {
		if err := ctx.Err(); err != nil {
			return passes, err
		}
		alpha := apgdMomentum
		if k == 1 {
			alpha = 1
		}
		for _, i := range active {
			s.step(i, alpha)
		}
		withGrad := k < s.steps // the last iterate needs only its loss
		loss, pred, err := s.eval(ctx, m, active, withGrad)
		if err != nil {
			return passes, err
		}
		if withGrad {
			passes++
		}
		for a, i := range active {
			s.observe(i, loss[a], pred[a], withGrad)
		}
		if check < len(s.checks) && k == s.checks[check] && k < s.steps {
			s.checkpoint(active, k-last)
			check, last = check+1, k
		}
		active = s.running(active)
	}
	return passes, nil
}

// running returns the images of idx not stopped.
func (s *apgdState) running(idx []int) []int {
	out := idx[:0:0]
	for _, i := range idx {
		if !s.stopped[i] {
			out = append(out, i)
		}
	}
	return out
}

// checkpoint applies the two conditions of section 3.1 to the images idx
// at a checkpoint reached after span steps: where either holds, halve the
// step size and continue from the best point with its gradient.
func (s *apgdState) checkpoint(idx []int, span int) {
	d := s.b.d
	for _, i := range idx {
		if s.stopped[i] {
			continue
		}
		cond1 := float64(s.ups[i]) < s.rho*float64(span)
		cond2 := !s.reduced[i] && s.bestAtCheck[i] == s.bestLoss[i]
		s.reduced[i] = cond1 || cond2
		if s.reduced[i] {
			lo, hi := i*d, (i+1)*d
			s.eta[i] /= 2
			copy(s.cur[lo:hi], s.best[lo:hi])
			copy(s.grad[lo:hi], s.gradBest[lo:hi])
			s.curLoss[i] = s.bestLoss[i]
		}
		s.bestAtCheck[i] = s.bestLoss[i]
		s.ups[i] = 0
	}
}
