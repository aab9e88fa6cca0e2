package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// UAPOptions configures the universal adversarial perturbation of
// Moosavi-Dezfooli et al. (CVPR 2017, Algorithm 1), the UAP column of the
// paper's Tables 3 and 7.
type UAPOptions struct {
	// Budget bounds the universal perturbation v. For LInf, ||v||_inf <=
	// Eps. For L2Rel, ||v||_2 <= r with r = Eps / mean_i(1/||x_i||_2) over
	// the images v is fitted on, so that the average normalized L2
	// dissimilarity ||v||/||x_i|| over those images is exactly Eps before
	// clipping (Guo et al.'s average dissimilarity, as in the paper's
	// Table 3). For L2Z the same on the normalized tensors:
	// ||v/std||_2 <= Eps / mean_i(1/||z_i||_2). Default: L2Rel 0.06.
	Budget Budget
	// FoolingRate is the fraction 1-delta of the fitting images whose
	// prediction v must change before the fit stops. Default 0.8
	// (delta = 0.2, the authors' setting).
	FoolingRate float64
	// MaxPasses bounds the passes over the fitting images. Default 10.
	MaxPasses int
	// DeepFoolIter is the DeepFool iterations of the inner step that pushes
	// one image across its decision boundary; a step that does not cross
	// within them is not added to v (as in the authors' code). Default 10;
	// DeepFool's overshoot is 0.02.
	DeepFoolIter int
	// Candidates is DeepFool's number of classes considered (0: all).
	// Default 10.
	Candidates int
	// Seed seeds the order in which each pass visits the images (the
	// authors shuffle them every pass). Default 1.
	Seed uint64
}

// DefaultUAPOptions returns the published setting at the paper's Table 3
// budget (average normalized L2 0.06).
func DefaultUAPOptions() UAPOptions {
	return UAPOptions{Budget: Budget{Norm: L2Rel, Eps: 0.06}, FoolingRate: 0.8, MaxPasses: 10, DeepFoolIter: 10, Candidates: 10, Seed: 1}
}

// Validate checks the budget, FoolingRate in (0, 1], MaxPasses and
// DeepFoolIter >= 1, Candidates 0 or >= 2.
func (o UAPOptions) Validate() error {
	if err := o.Budget.Validate(); err != nil {
		return err
	}
	if !(o.FoolingRate > 0 && o.FoolingRate <= 1) {
		return optErr("UAP", "FoolingRate", o.FoolingRate, "must be in (0, 1]")
	}
	if o.MaxPasses < 1 {
		return optErr("UAP", "MaxPasses", o.MaxPasses, "must be at least 1")
	}
	if o.DeepFoolIter < 1 {
		return optErr("UAP", "DeepFoolIter", o.DeepFoolIter, "must be at least 1")
	}
	if o.Candidates < 0 || o.Candidates == 1 {
		return optErr("UAP", "Candidates", o.Candidates, "must be 0 (all) or at least 2")
	}
	return nil
}

// UAPFit is the outcome of FitUAP.
type UAPFit struct {
	// V is the universal perturbation, shape (1, C, H, W).
	V *tensor.Tensor
	// Radius is the bound v was projected onto: Eps for LInf, the absolute
	// L2 radius derived from the fitting images for L2Rel (of v/std for
	// L2Z).
	Radius float64
	// FoolingRate is the fraction of the fitting images whose prediction
	// clip(x+v) differs from that of x, after the last pass.
	FoolingRate float64
	// Passes is the number of passes made over the fitting images, and
	// Updates the number of DeepFool steps added to v.
	Passes, Updates int
}

// UAPState is where a fit stands after an image: what FitUAPFrom resumes
// from. V is the perturbation's values (C*H*W).
type UAPState struct {
	// Pass is the pass in progress (1-based) and Done the images of it
	// already visited (0 <= Done <= the number of images).
	Pass, Done int
	// Updates counts the DeepFool steps added to V so far.
	Updates int
	V       []float32
}

// UAPCheckpoint makes a fit resumable: FitUAPFrom starts from Resume (a
// state that Save received from a fit with the same model, images and
// options) and hands Save the state every Every images and after each
// pass. The zero value checkpoints nothing.
type UAPCheckpoint struct {
	Resume *UAPState
	Every  int
	Save   func(*UAPState) error
}

// FitUAP computes a universal perturbation v for m from the images x
// (N, C, H, W) in [0,1], by Algorithm 1 of Moosavi-Dezfooli et al.: each
// pass visits the images in a seeded random order; for an image whose
// prediction clip(x_i+v) still equals that of x_i, DeepFool finds the
// smallest step r pushing x_i+v across the boundary, and v becomes the
// projection of v+r onto the budget ball. It stops once the fooling rate on
// x reaches o.FoolingRate or after o.MaxPasses passes. It reports each image
// visited as "uap" progress to rep, and returns ctx's error when cancelled.
func FitUAP(ctx context.Context, m Model, x *tensor.Tensor, o UAPOptions, rep progress.Reporter) (*UAPFit, error) {
	return FitUAPFrom(ctx, m, x, o, UAPCheckpoint{}, rep)
}

// FitUAPFrom is FitUAP with checkpoints (see UAPCheckpoint). A fit resumed
// from a saved state gives the perturbation of an uninterrupted fit: each
// pass's visiting order is drawn again from the seed. A state that does
// not fit the images or options is an error.
func FitUAPFrom(ctx context.Context, m Model, x *tensor.Tensor, o UAPOptions, ck UAPCheckpoint, rep progress.Reporter) (*UAPFit, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	labels := make([]int, 0)
	if x != nil && len(x.Shape) > 0 {
		labels = make([]int, x.Shape[0])
	}
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	if err := o.Budget.checkBudget(b); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	z, err := b.logits(ctx, m, x)
	if err != nil {
		return nil, err
	}
	clean := z.ArgmaxRows(nil)
	radius, err := universalRadius(o.Budget, x.Data, b.n, b.d)
	if err != nil {
		return nil, err
	}
	c, h, w := m.InputShape()
	fit := &UAPFit{V: tensor.New(1, c, h, w), Radius: radius}
	v := fit.V.Data
	start, skip := 1, 0
	if r := ck.Resume; r != nil {
		if len(r.V) != len(v) || r.Pass < 1 || r.Pass > o.MaxPasses || r.Done < 0 || r.Done > b.n || r.Updates < 0 {
			return nil, fmt.Errorf("attack: UAP: a saved state (pass %d, %d images, %d values) does not fit %d images of %d values and %d passes", r.Pass, r.Done, len(r.V), b.n, len(v), o.MaxPasses)
		}
		copy(v, r.V)
		start, skip, fit.Updates = r.Pass, r.Done, r.Updates
	}
	save := func(pass, done int) error {
		if ck.Save == nil {
			return nil
		}
		return ck.Save(&UAPState{Pass: pass, Done: done, Updates: fit.Updates, V: slices.Clone(v)})
	}
	// The inner step is L2 DeepFool without a binding budget (a radius of
	// the image's own norm; a minimal step is far smaller), as in the authors' code for
	// both norms; only the image's own prediction matters, not its label.
	df, err := NewDeepFool(DeepFoolOptions{Budget: Budget{Norm: L2Rel, Eps: 1}, Overshoot: 0.02, MaxIter: o.DeepFoolIter, Candidates: o.Candidates})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x0a9))
	xi := tensor.New(1, c, h, w)
	for fit.Passes = 1; fit.Passes <= o.MaxPasses; fit.Passes++ {
		perm := rng.Perm(b.n)
		if fit.Passes < start {
			continue // drawn again only to reach the resumed pass's order
		}
		for done, i := range perm {
			if fit.Passes == start && done < skip {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			addClipped(xi.Data, x.Data[i*b.d:(i+1)*b.d], v)
			res, err := df.Run(ctx, m, xi, clean[i:i+1])
			if err != nil {
				return nil, fmt.Errorf("attack: UAP: image %d: %w", i, err)
			}
			if res.CleanPred[0] == clean[i] && res.Success[0] {
				for j := range v {
					v[j] += res.Adv.Data[j] - xi.Data[j]
				}
				projectUniversal(o.Budget, v, radius)
				fit.Updates++
			}
			rep.Report("uap", (fit.Passes-1)*b.n+done+1, o.MaxPasses*b.n, fmt.Sprintf("pass %d", fit.Passes))
			if ck.Every > 0 && (done+1)%ck.Every == 0 && done+1 < b.n {
				if err := save(fit.Passes, done+1); err != nil {
					return nil, err
				}
			}
		}
		if fit.FoolingRate, err = foolingRate(ctx, b, m, x, v, clean); err != nil {
			return nil, err
		}
		if fit.FoolingRate >= o.FoolingRate || fit.Passes == o.MaxPasses {
			break
		}
		if err := save(fit.Passes+1, 0); err != nil {
			return nil, err
		}
	}
	return fit, nil
}

// universalRadius is the bound of a universal perturbation under bud over
// the n images of x (d values each): Eps for LInf, Eps / mean_i(1/||x_i||)
// for L2Rel, the same with ||z_i|| for L2Z.
func universalRadius(bud Budget, x []float32, n, d int) (float64, error) {
	if bud.Norm == LInf {
		return bud.Eps, nil
	}
	unit := bud
	unit.Eps = 1
	var inv float64
	for i, r := range radii(unit, x, n, d) {
		if r == 0 {
			return 0, fmt.Errorf("attack: UAP: image %d has a zero norm (no normalized L2 budget)", i)
		}
		inv += 1 / r
	}
	return bud.Eps / (inv / float64(n)), nil
}

// addClipped sets dst = clip(x + v, 0, 1).
func addClipped(dst, x, v []float32) {
	for j, p := range x {
		dst[j] = min(1, max(0, p+v[j]))
	}
}

// projectUniversal projects v onto the ball of radius r: the L-infinity
// box for LInf, the L2 ball (absolute radius) for L2Rel, the ball of
// ||v/std||_2 for L2Z.
func projectUniversal(bud Budget, v []float32, r float64) {
	if bud.Norm == LInf {
		for j, p := range v {
			v[j] = float32(math.Max(-r, math.Min(r, float64(p))))
		}
		return
	}
	if n := zDist(v, make([]float32, len(v)), bud.zStd(len(v))); n > r {
		s := float32(r / n)
		for j := range v {
			v[j] *= s
		}
	}
}

// foolingRate is the fraction of the images of x whose prediction on
// clip(x+v) differs from clean.
func foolingRate(ctx context.Context, b batch, m Model, x *tensor.Tensor, v []float32, clean []int) (float64, error) {
	xv := tensor.New(x.Shape...)
	for i := 0; i < b.n; i++ {
		addClipped(xv.Data[i*b.d:(i+1)*b.d], x.Data[i*b.d:(i+1)*b.d], v)
	}
	z, err := b.logits(ctx, m, xv)
	if err != nil {
		return 0, err
	}
	fooled := 0
	for i, p := range z.ArgmaxRows(nil) {
		if p != clean[i] {
			fooled++
		}
	}
	return float64(fooled) / float64(b.n), nil
}

// Universal is the attack that adds one fixed perturbation (a UAP fitted by
// FitUAP) to every image and clips to [0,1]: the UAP column of the paper's
// Tables 3 and 7. It runs no gradient pass.
type Universal struct {
	v      *tensor.Tensor
	budget Budget
	name   string
}

// NewUniversal returns the attack adding fit.V, with the budget it was
// fitted under, named e.g. "UAP-0.06".
func NewUniversal(fit *UAPFit, budget Budget) (*Universal, error) {
	if fit == nil || fit.V == nil || len(fit.V.Shape) != 4 || fit.V.Shape[0] != 1 {
		return nil, fmt.Errorf("attack: Universal needs a perturbation of shape (1, C, H, W)")
	}
	if err := budget.Validate(); err != nil {
		return nil, err
	}
	for j, p := range fit.V.Data {
		if math.IsNaN(float64(p)) || math.IsInf(float64(p), 0) {
			return nil, &tensor.NonFiniteError{Index: j, Value: p}
		}
	}
	return &Universal{v: fit.V.Clone(), budget: budget, name: "UAP" + budgetSuffix(budget)}, nil
}

// Name returns "UAP" with the budget, e.g. "UAP-0.06".
func (a *Universal) Name() string { return a.name }

// Budget returns the budget the perturbation was fitted under (for L2Rel an
// average over the fitting images, not a bound on each image).
func (a *Universal) Budget() Budget { return a.budget }

// Targeted returns false.
func (a *Universal) Targeted() bool { return false }

// MarshalJSON encodes the name and budget.
func (a *Universal) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name   string `json:"name"`
		Budget Budget `json:"budget"`
	}{a.name, a.budget})
}

// Run implements Attack: x_adv = clip(x + v) for every image.
func (a *Universal) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	if len(a.v.Data) != b.d {
		return nil, &tensor.ShapeError{Op: "attack: universal perturbation", Want: x.Shape[1:], Got: a.v.Shape[1:]}
	}
	z, err := b.logits(ctx, m, x)
	if err != nil {
		return nil, err
	}
	adv := tensor.New(x.Shape...)
	for i := 0; i < b.n; i++ {
		addClipped(adv.Data[i*b.d:(i+1)*b.d], x.Data[i*b.d:(i+1)*b.d], a.v.Data)
	}
	return finish(ctx, b, m, x, adv, z.ArgmaxRows(nil), labels, false, 0)
}
