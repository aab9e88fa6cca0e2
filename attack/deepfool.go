package attack

import (
	"context"
	"encoding/json"
	"math"
	"sort"

	"github.com/stl-defense/stl/tensor"
)

// DeepFoolOptions configures DeepFool.
type DeepFoolOptions struct {
	// Budget caps the perturbation: DeepFool looks for the smallest
	// perturbation that flips the label, and any iterate outside the
	// budget ball is projected back onto it. Its norm also picks the
	// variant: L2 DeepFool for L2Rel, L-infinity DeepFool for LInf.
	// Default: normalized L2 dissimilarity 0.04 (the paper's setting).
	Budget Budget
	// Overshoot multiplies the accumulated perturbation by 1+Overshoot to
	// cross the boundary. Default 0.02 (Moosavi-Dezfooli et al.); values
	// up to MaxOvershoot serve the search of a strength reaching a target
	// average dissimilarity (SearchStrength).
	Overshoot float64
	// MaxIter bounds the linearization steps. Default 50.
	MaxIter int
	// Candidates is how many classes are considered, the labelled class and
	// the Candidates-1 others with the largest clean logits; each iteration
	// costs Candidates-1 backward passes. Default 10; 0 or more than the
	// model's classes means all classes.
	Candidates int
}

// MaxOvershoot bounds DeepFoolOptions.Overshoot.
const MaxOvershoot = 100

// DefaultDeepFoolOptions returns the paper's DeepFool setting.
func DefaultDeepFoolOptions() DeepFoolOptions {
	return DeepFoolOptions{Budget: Budget{Norm: L2Rel, Eps: 0.04}, Overshoot: 0.02, MaxIter: 50, Candidates: 10}
}

// Validate checks the budget, Overshoot in [0, MaxOvershoot], MaxIter >= 1 and
// Candidates >= 0 and != 1.
func (o DeepFoolOptions) Validate() error {
	if err := o.Budget.Validate(); err != nil {
		return err
	}
	if !(o.Overshoot >= 0 && o.Overshoot <= MaxOvershoot) {
		return optErr("DeepFool", "Overshoot", o.Overshoot, "must be in [0, 100]")
	}
	if o.MaxIter < 1 {
		return optErr("DeepFool", "MaxIter", o.MaxIter, "must be at least 1")
	}
	if o.Candidates < 0 || o.Candidates == 1 {
		return optErr("DeepFool", "Candidates", o.Candidates, "must be 0 (all) or at least 2")
	}
	return nil
}

// DeepFool is the multi-class DeepFool attack of Moosavi-Dezfooli et al.
// (CVPR 2016), untargeted. At each iterate it linearizes the differences
// f_k = z_k - z_y of the candidate logits against the labelled class y,
// takes the class l closest to its linearized boundary,
// l = argmin |f_k|/||w_k||_q with w_k = grad f_k, and adds the step that
// reaches it: r = (|f_l|+1e-4)/||w_l||_2^2 w_l (L2) or
// (|f_l|+1e-4)/||w_l||_1 sign(w_l) (L-infinity, q = 1). The iterate is
// x0 + (1+overshoot) sum r, projected onto the budget ball and [0,1]. An
// image stops as soon as it is misclassified and leaves the batch: later
// passes only carry the images still being attacked.
type DeepFool struct{ opts DeepFoolOptions }

// NewDeepFool validates o and returns the attack.
func NewDeepFool(o DeepFoolOptions) (*DeepFool, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &DeepFool{opts: o}, nil
}

// Options returns the attack's validated options.
func (a *DeepFool) Options() DeepFoolOptions { return a.opts }

// Budget returns the options' budget.
func (a *DeepFool) Budget() Budget { return a.opts.Budget }

// Targeted reports whether the attack is targeted.
func (a *DeepFool) Targeted() bool { return false }

// MarshalJSON encodes the options.
func (a *DeepFool) MarshalJSON() ([]byte, error) { return json.Marshal(a.opts) }

// Name returns e.g. "DeepFool-0.04".
func (a *DeepFool) Name() string { return "DeepFool" + budgetSuffix(a.opts.Budget) }

// Run implements Attack. Each iteration costs Candidates-1 forward and
// backward passes on the whole batch.
func (a *DeepFool) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	o := a.opts
	z0, err := b.logits(ctx, m, x)
	if err != nil {
		return nil, err
	}
	clean := z0.ArgmaxRows(nil)
	nc := o.Candidates
	if nc == 0 || nc > b.k {
		nc = b.k
	}
	// cands[i] lists the nc-1 other classes of image i, by clean logit.
	cands := make([][]int, b.n)
	for i := range cands {
		row := z0.Data[i*b.k : (i+1)*b.k]
		others := make([]int, 0, b.k-1)
		for j := 0; j < b.k; j++ {
			if j != labels[i] {
				others = append(others, j)
			}
		}
		sort.SliceStable(others, func(p, q int) bool { return row[others[p]] > row[others[q]] })
		cands[i] = others[:nc-1]
	}

	if err := o.Budget.checkBudget(b); err != nil {
		return nil, err
	}
	r := radii(o.Budget, x.Data, b.n, b.d)
	// std weighs the gradients for an L2Z budget: the linearized step
	// taken on z = (x - mean)/std is std^2 * w/||std*w||^2 * |f| in x.
	std := o.Budget.zStd(b.d)
	adv := x.Clone()
	rtot := make([]float64, b.n*b.d)
	bestW := make([]float32, b.n*b.d)
	bestDist := make([]float64, b.n)
	bestF := make([]float64, b.n)
	active := make([]bool, b.n)
	for i := range active {
		active[i] = clean[i] == labels[i]
	}
	var idx []int    // the images still attacked in this iteration
	var still []bool // their status from the iterate's logits
	passes := 0
	for iter := 0; iter < o.MaxIter; iter++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Only the images not yet misclassified go through the model: the
		// batch shrinks as DeepFool finishes with them.
		idx = idx[:0]
		for i, on := range active {
			if on {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			break
		}
		sub, sb := gather(b, adv, idx)
		still = append(still[:0], make([]bool, len(idx))...)
		for li, gi := range idx {
			bestDist[gi], still[li] = math.Inf(1), true
		}
		for c := 0; c < nc-1; c++ {
			seed := func(z, g *tensor.Tensor) {
				for li, gi := range idx {
					row := z.Data[li*b.k : (li+1)*b.k]
					if c == 0 && iter > 0 {
						// The logits of the current iterate decide which
						// images are still correctly classified.
						still[li] = tensor.Argmax(row) == labels[gi]
					}
					if !still[li] {
						continue
					}
					g.Data[li*b.k+cands[gi][c]] = 1
					g.Data[li*b.k+labels[gi]] = -1
				}
			}
			z, w, err := sb.grad(ctx, m, sub, seed)
			passes++
			if err != nil {
				return nil, err
			}
			if c == 0 {
				live := false
				for li, gi := range idx {
					active[gi] = still[li]
					live = live || still[li]
				}
				if !live {
					break
				}
			}
			for li, gi := range idx {
				if !still[li] {
					continue
				}
				f := float64(z.Data[li*b.k+cands[gi][c]] - z.Data[li*b.k+labels[gi]])
				wi := w.Data[li*b.d : (li+1)*b.d]
				var wn float64
				if o.Budget.Norm == LInf {
					for _, v := range wi {
						wn += math.Abs(float64(v))
					}
				} else {
					wn = weightedL2(wi, std)
				}
				if wn == 0 {
					continue
				}
				if dist := math.Abs(f) / wn; dist < bestDist[gi] {
					bestDist[gi], bestF[gi] = dist, f
					copy(bestW[gi*b.d:(gi+1)*b.d], wi)
				}
			}
		}
		for li, i := range idx {
			if !still[li] || math.IsInf(bestDist[i], 1) {
				continue
			}
			wi, ri := bestW[i*b.d:(i+1)*b.d], rtot[i*b.d:(i+1)*b.d]
			if o.Budget.Norm == LInf {
				wn := 0.0
				for _, v := range wi {
					wn += math.Abs(float64(v))
				}
				step := (math.Abs(bestF[i]) + 1e-4) / wn
				for j, v := range wi {
					if v > 0 {
						ri[j] += step
					} else if v < 0 {
						ri[j] -= step
					}
				}
			} else {
				wn := weightedL2(wi, std)
				step := (math.Abs(bestF[i]) + 1e-4) / (wn * wn)
				for j, v := range wi {
					if std != nil {
						ri[j] += step * std[j] * std[j] * float64(v)
					} else {
						ri[j] += step * float64(v)
					}
				}
			}
			ai, oi := adv.Data[i*b.d:(i+1)*b.d], x.Data[i*b.d:(i+1)*b.d]
			for j := range ai {
				ai[j] = oi[j] + float32((1+o.Overshoot)*ri[j])
			}
			project(o.Budget, ai, oi, r[i:i+1], b.d)
		}
	}
	return finish(ctx, b, m, x, adv, clean, labels, false, passes)
}

// weightedL2 returns ||std*w||_2, std per value (nil: ||w||_2).
func weightedL2(w []float32, std []float64) float64 {
	if std == nil {
		return l2(w)
	}
	s := 0.0
	for j, v := range w {
		x := std[j] * float64(v)
		s += x * x
	}
	return math.Sqrt(s)
}

// gather returns the images idx of x as a batch, x itself when idx is
// every image, with the matching geometry.
func gather(b batch, x *tensor.Tensor, idx []int) (*tensor.Tensor, batch) {
	if len(idx) == b.n {
		return x, b
	}
	sub := tensor.New(len(idx), b.c, b.h, b.w)
	for li, gi := range idx {
		copy(sub.Data[li*b.d:(li+1)*b.d], x.Data[gi*b.d:(gi+1)*b.d])
	}
	sb := b
	sb.n = len(idx)
	return sub, sb
}
