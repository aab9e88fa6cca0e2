package evaluate

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/tensor"
)

// Status is the verdict of an automatic check.
type Status string

const (
	Passed  Status = "passed"
	Failed  Status = "FAILED"
	Skipped Status = "not run" // what it needs was not evaluated
)

// Check is one automatic check of the evaluation (Carlini et al., "On
// Evaluating Adversarial Robustness", 2019, section 5; Croce and Hein 2020
// on Square as the check gradient masking cannot fool).
type Check struct {
	// ID names the check: "gradients", "square", "iterations",
	// "large-budget", "unbounded", "transfer", "noise", "weakens-clean",
	// "weakens-robust".
	ID    string `json:"id"`
	Title string `json:"title"`
	// Rule states when the check fails, with its threshold.
	Rule string `json:"rule"`
	// Budget is the budget the check looked at, "" when it has none.
	Budget string `json:"budget,omitempty"`
	Status Status `json:"status"`
	// Detail gives the figures the verdict rests on.
	Detail string `json:"detail"`
}

// Check IDs.
const (
	CheckGradients     = "gradients"
	CheckSquare        = "square"
	CheckIterations    = "iterations"
	CheckLargeBudget   = "large-budget"
	CheckUnbounded     = "unbounded"
	CheckTransfer      = "transfer"
	CheckNoise         = "noise"
	CheckWeakensClean  = "weakens-clean"
	CheckWeakensRobust = "weakens-robust"
)

// Probes of the checks that attack outside the suite.
const (
	probeIterations = "iterations"
	probeLarge      = "large-budget"
	probeUnbounded  = "unbounded"
)

// UnboundedEps is the L-infinity budget of the unbounded check: any image
// in [0, 1] is within it.
const UnboundedEps = 1.0

func verdict(fail bool) Status {
	if fail {
		return Failed
	}
	return Passed
}

// GradientProbe is the gradient check's measurement on one route: the L2
// norm of the input gradient of the margin loss max_{j != y} z_j - z_y
// (which does not saturate as the cross-entropy does) at the clean images
// the checked classifier gets right.
type GradientProbe struct {
	Route  string `json:"route"`
	Images int    `json:"images"`
	// Zero counts the images whose gradient is exactly zero; Vanishing
	// those whose gradient vanishes (zero included, see
	// Thresholds.VanishRatio).
	Zero      int `json:"zero"`
	Vanishing int `json:"vanishing"`
	// MedianNorm is the median gradient norm; MedianRatio the median
	// ratio to the undefended classifier's norm at the same image (0 on
	// the undefended classifier).
	MedianNorm  float64 `json:"median_norm"`
	MedianRatio float64 `json:"median_ratio,omitempty"`
}

// marginSeed seeds the gradient of max_{j != y} z_j - z_y.
func marginSeed(labels []int, k int) func(z, g *tensor.Tensor) {
	return func(z, g *tensor.Tensor) {
		for i, y := range labels {
			row := z.Data[i*k : (i+1)*k]
			best := -1
			for j, v := range row {
				if j != y && (best < 0 || v > row[best]) {
					best = j
				}
			}
			g.Data[i*k+y] = -1
			g.Data[i*k+best] = 1
		}
	}
}

// gradNorms returns the L2 norm of m's margin-loss input gradient at each
// image of x, in batches.
func (r *run) gradNorms(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int) ([]float64, error) {
	n := len(labels)
	d := len(x.Data) / max(n, 1)
	out := make([]float64, 0, n)
	for lo := 0; lo < n; lo += r.o.Batch {
		hi := min(lo+r.o.Batch, n)
		_, g, err := m.InputGrad(ctx, x.Batch(lo, hi), marginSeed(labels[lo:hi], r.k))
		if err != nil {
			return nil, err
		}
		if g == nil || len(g.Data) != (hi-lo)*d {
			return nil, &tensor.ShapeError{Op: "evaluate: input gradient", Want: x.Batch(lo, hi).Shape, Got: g.Shape}
		}
		for i := 0; i < hi-lo; i++ {
			s := 0.0
			for _, v := range g.Data[i*d : (i+1)*d] {
				s += float64(v) * float64(v)
			}
			out = append(out, math.Sqrt(s))
		}
	}
	return out, nil
}

// probeGradients measures the gradients of every route of s.
func (r *run) probeGradients(ctx context.Context, s subject) ([]GradientProbe, error) {
	idx := indices(r.clean[s.name])
	if len(idx) == 0 {
		return nil, nil
	}
	x, labels := gather(r.x, idx, len(r.x.Data)/r.n), pick(r.labels, idx)
	var base []float64
	if s.defended {
		var err error
		if base, err = r.gradNorms(ctx, r.t.Model, x, labels); err != nil {
			return nil, err
		}
	}
	var out []GradientProbe
	for _, rt := range s.routes {
		m, err := r.t.whiteBox(s, rt, r.seed(s.name, rt.Name, "gradient probe"), r.o.EOTDraws, false)
		if err != nil {
			return nil, err
		}
		norms, err := r.gradNorms(ctx, m, x, labels)
		if err != nil {
			return nil, fmt.Errorf("evaluate: gradient probe of route %s: %w", rt.Name, err)
		}
		p := GradientProbe{Route: rt.Name, Images: len(norms), MedianNorm: median(norms)}
		var ratios []float64
		for i, v := range norms {
			vanish := v == 0 || v < 1e-12
			if v == 0 {
				p.Zero++
			}
			if base != nil {
				ratio := 0.0
				if base[i] > 0 {
					ratio = v / base[i]
				}
				ratios = append(ratios, ratio)
				vanish = vanish || (base[i] > 0 && ratio < r.o.Thresholds.VanishRatio)
			}
			if vanish {
				p.Vanishing++
			}
		}
		p.MedianRatio = median(ratios)
		out = append(out, p)
	}
	return out, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// gradientCheck is the zero or vanishing gradients check.
func (r *run) gradientCheck(probes []GradientProbe) Check {
	th := r.o.Thresholds
	c := Check{ID: CheckGradients, Title: "zero or vanishing gradients",
		Rule: fmt.Sprintf("fails when, on some route, more than %g of the correctly classified clean images have a margin-loss input gradient that is zero, below 1e-12 in L2 norm, or (through a defense) below %g times the undefended classifier's", th.VanishFrac, th.VanishRatio)}
	if len(probes) == 0 {
		c.Status, c.Detail = Skipped, "no correctly classified image to probe"
		return c
	}
	fail := false
	for _, p := range probes {
		frac := float64(p.Vanishing) / float64(max(p.Images, 1))
		fail = fail || frac > th.VanishFrac
		c.Detail += fmt.Sprintf("%s: %d of %d vanishing (%d zero), median norm %.3g", p.Route, p.Vanishing, p.Images, p.Zero, p.MedianNorm)
		if p.MedianRatio != 0 {
			c.Detail += fmt.Sprintf(", median ratio to the undefended %.3g", p.MedianRatio)
		}
		c.Detail += "; "
	}
	c.Detail = c.Detail[:len(c.Detail)-2]
	c.Status = verdict(fail)
	return c
}

// beatCheck is a check that a control (Square, transfer, noise) breaks no
// more than Thresholds.BeatFrac of the images every white-box gradient
// attack left correctly classified, at budget b of subject s.
func (r *run) beatCheck(id, control string, s subject, b attack.Budget) (Check, error) {
	frac := r.o.Thresholds.BeatFrac
	c := Check{ID: id, Budget: BudgetLabel(b), Title: displayName(control) + " beating the white-box gradient attacks",
		Rule: fmt.Sprintf("fails when %s misclassifies more than %g of the images (and at least one) that every white-box gradient attack left correctly classified", displayName(control), frac)}
	grads := r.outcomes(s.name, b, isGradient)
	ctl := r.outcomes(s.name, b, func(res *AttackResult) bool { return res.Attack == control })
	if len(grads) == 0 || len(ctl) == 0 {
		c.Status, c.Detail = Skipped, "needs "+displayName(control)+" and at least one gradient attack"
		return c, nil
	}
	count, scope, err := brokenOnlyBy(ctl[0], r.clean[s.name], grads)
	if err != nil {
		return c, err
	}
	c.Status = verdict(count > 0 && float64(count) > frac*float64(r.scopeSize(ctl[0])))
	c.Detail = fmt.Sprintf("%s broke %d of the %d images (in its scope) robust to every gradient attack", displayName(control), count, scope)
	return c, nil
}

func (r *run) scopeSize(o Outcome) int {
	if o.Scope == nil {
		return r.n
	}
	return len(indices(o.Scope))
}
