package attack

import (
	"context"
	"fmt"
	"math"

	"github.com/stl-defense/stl/tensor"
)

// Attack computes adversarial examples for a batch.
//
// Run perturbs the batch x of shape (N, C, H, W), pixels in [0,1], against
// the model m. labels holds one class per image: the true classes for an
// untargeted attack (the attack succeeds when the prediction differs from
// it) or the target classes when the attack's options say Targeted (it
// succeeds when the prediction equals it). x and labels are not modified;
// the result is newly allocated. Run returns a *tensor.ShapeError when x,
// labels and m do not agree, a *tensor.NonFiniteError or *PixelError for
// pixels that are NaN, infinite or outside [0,1], and the context's error
// when ctx is cancelled (checked once per iteration).
//
// An Attack holds only its validated options: it is safe for concurrent use
// when m is.
//
// The attacks of this package also implement json.Marshaler, encoding
// their options (used in a saved Set's metadata).
type Attack interface {
	// Name is a short name for reports, e.g. "FGSM-0.04".
	Name() string
	// Budget is the perturbation bound the results respect.
	Budget() Budget
	// Targeted reports whether labels passed to Run are target classes.
	Targeted() bool
	Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error)
}

// Result is the outcome of an attack on a batch of N images.
type Result struct {
	// Adv is the adversarial batch, same shape as the input, pixels in [0,1].
	Adv *tensor.Tensor
	// Dissim is the normalized L2 dissimilarity ||x_adv - x0||_2 / ||x0||_2
	// reached by each image (the paper's section 5.1 measure on [0,1]
	// pixels, whatever the budget's norm; DissimilarityZ measures an L2Z
	// budget), computed after clipping. It is 0 for an all-zero x0 (whose
	// budget is 0).
	Dissim []float64
	// LInf is ||x_adv - x0||_inf per image, after clipping.
	LInf []float64
	// CleanPred and AdvPred are the model's predictions on x0 and x_adv.
	CleanPred, AdvPred []int
	// Success tells, per image, whether the attack reached its goal on
	// x_adv: AdvPred != label (untargeted) or AdvPred == label (targeted).
	// An untargeted attack on an image that was already misclassified
	// counts as a success.
	Success []bool
	// Passes is the number of gradient (forward+backward) passes the
	// attack ran on the batch.
	Passes int
}

// SuccessRate returns the fraction of images with Success set.
func (r *Result) SuccessRate() float64 { return fraction(r.Success, true) }

// FoolingRate returns the fraction of images whose prediction the attack
// changed (AdvPred != CleanPred), whatever their labels: the measure of a
// universal perturbation (Moosavi-Dezfooli et al. 2017).
func (r *Result) FoolingRate() float64 {
	if len(r.CleanPred) == 0 || len(r.CleanPred) != len(r.AdvPred) {
		return 0
	}
	n := 0
	for i, p := range r.CleanPred {
		if p != r.AdvPred[i] {
			n++
		}
	}
	return float64(n) / float64(len(r.CleanPred))
}

// CleanAccuracy returns the fraction of images whose clean prediction equals
// labels[i]; AdvAccuracy the same for the adversarial predictions. For a
// targeted attack pass the true labels, not the targets.
func (r *Result) CleanAccuracy(labels []int) float64 { return accuracy(r.CleanPred, labels) }

// AdvAccuracy: see CleanAccuracy.
func (r *Result) AdvAccuracy(labels []int) float64 { return accuracy(r.AdvPred, labels) }

func fraction(b []bool, v bool) float64 {
	if len(b) == 0 {
		return 0
	}
	n := 0
	for _, x := range b {
		if x == v {
			n++
		}
	}
	return float64(n) / float64(len(b))
}

func accuracy(pred, labels []int) float64 {
	if len(pred) == 0 || len(pred) != len(labels) {
		return 0
	}
	n := 0
	for i, p := range pred {
		if p == labels[i] {
			n++
		}
	}
	return float64(n) / float64(len(pred))
}

// Norm names how a perturbation budget is measured.
type Norm int

const (
	// LInf bounds every pixel change: ||x_adv - x0||_inf <= Eps.
	LInf Norm = iota
	// L2Rel bounds the paper's normalized L2 dissimilarity:
	// ||x_adv - x0||_2 / ||x0||_2 <= Eps, i.e. an L2 radius of Eps*||x0||_2
	// that differs per image.
	L2Rel
	// L2Z bounds the normalized L2 dissimilarity measured on the
	// classifier's normalized tensors z = (x - mean)/std (per channel,
	// Budget.Normalization): ||z_adv - z0||_2 / ||z0||_2 <= Eps, the
	// measure of Guo et al.'s code (ProtocolGuo). Since z_adv - z0 =
	// (x_adv - x0)/std, the radius is Eps*||z0||_2 in the norm
	// ||(x_adv - x0)/std||_2; FGSM, BIM, DeepFool and CW take such budgets
	// and work in that norm (their steps and projections are those of the
	// attack run on z). PGD, APGD and Square do not.
	L2Z
)

// String returns "linf" or "l2".
func (n Norm) String() string {
	switch n {
	case LInf:
		return "linf"
	case L2Rel:
		return "l2"
	case L2Z:
		return "l2z"
	}
	return fmt.Sprintf("Norm(%d)", int(n))
}

// MarshalText encodes the norm as its String.
func (n Norm) MarshalText() ([]byte, error) {
	if n != LInf && n != L2Rel && n != L2Z {
		return nil, fmt.Errorf("attack: unknown norm %d", int(n))
	}
	return []byte(n.String()), nil
}

// UnmarshalText parses a norm written by MarshalText.
func (n *Norm) UnmarshalText(b []byte) error {
	v, err := ParseNorm(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// ParseNorm parses "linf", "l2" (the normalized L2 dissimilarity) or
// "l2z" (the same on normalized tensors).
func ParseNorm(s string) (Norm, error) {
	switch s {
	case "linf", "inf", "Linf":
		return LInf, nil
	case "l2", "L2", "l2rel":
		return L2Rel, nil
	case "l2z":
		return L2Z, nil
	}
	return 0, fmt.Errorf("attack: unknown norm %q (want linf, l2 or l2z)", s)
}

// Budget is a perturbation bound: Eps in the given Norm. Eps must lie in
// (0, 1]: pixels live in [0,1], so larger L-infinity bounds are
// meaningless, and a dissimilarity above 1 destroys the image.
type Budget struct {
	Norm Norm    `json:"norm"`
	Eps  float64 `json:"eps"`
	// Normalization is the classifier's input normalization an L2Z
	// budget is measured in; nil for the other norms (and then absent
	// from the JSON encoding, which reads as before it existed). Compare
	// budgets with Equal.
	Normalization *Normalization `json:"normalization,omitempty"`
}

// Validate returns a *BudgetError when Eps is not in (0, 1], the norm is
// unknown, or the normalization is missing or invalid for L2Z or present
// for another norm.
func (b Budget) Validate() error {
	if b.Norm != LInf && b.Norm != L2Rel && b.Norm != L2Z {
		return &BudgetError{Budget: b, Why: "unknown norm"}
	}
	if b.Norm == L2Z {
		if err := b.Normalization.Validate(); err != nil {
			return &BudgetError{Budget: b, Why: "normalization: " + err.Error()}
		}
	} else if b.Normalization != nil {
		return &BudgetError{Budget: b, Why: "a normalization applies only to the l2z norm"}
	}
	if math.IsNaN(b.Eps) || b.Eps <= 0 || b.Eps > 1 {
		return &BudgetError{Budget: b, Why: "epsilon must be in (0, 1]"}
	}
	return nil
}

// String formats the budget as e.g. "l2=0.04".
func (b Budget) String() string { return fmt.Sprintf("%s=%g", b.Norm, b.Eps) }

// BudgetError reports an invalid perturbation budget.
type BudgetError struct {
	Budget Budget
	Why    string
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("attack: invalid budget %s: %s", e.Budget, e.Why)
}

// OptionError reports an invalid attack option.
type OptionError struct {
	Attack, Field string
	Value         string
	Why           string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("attack: %s: invalid %s %s: %s", e.Attack, e.Field, e.Value, e.Why)
}

func optErr(attack, field string, v any, why string) error {
	return &OptionError{Attack: attack, Field: field, Value: fmt.Sprint(v), Why: why}
}

// PixelError reports an input pixel outside [0,1].
type PixelError struct {
	Index int // flat index into the batch
	Value float32
}

func (e *PixelError) Error() string {
	return fmt.Sprintf("attack: pixel %v at flat index %d is outside [0,1]", e.Value, e.Index)
}

// LabelError reports a label outside [0, K).
type LabelError struct {
	Index, Label, NumClasses int
}

func (e *LabelError) Error() string {
	return fmt.Sprintf("attack: label %d of image %d is outside [0, %d)", e.Label, e.Index, e.NumClasses)
}

// batch is the validated geometry of an attack input.
type batch struct {
	n, c, h, w int
	d          int // c*h*w, values per image
	k          int // classes
}

// checkInput validates x, labels and m against each other.
func checkInput(m Model, x *tensor.Tensor, labels []int) (batch, error) {
	if m == nil {
		return batch{}, fmt.Errorf("attack: nil model")
	}
	if x == nil {
		return batch{}, fmt.Errorf("attack: nil input batch")
	}
	mc, mh, mw := m.InputShape()
	n, c, h, w, err := x.NCHW()
	if err != nil || c != mc || h != mh || w != mw || n == 0 {
		return batch{}, &tensor.ShapeError{Op: "attack: input batch vs model", Want: []int{-1, mc, mh, mw}, Got: x.Shape}
	}
	if err := x.Validate(); err != nil {
		return batch{}, fmt.Errorf("attack: input batch: %w", err)
	}
	for i, v := range x.Data {
		if v < 0 || v > 1 {
			return batch{}, &PixelError{Index: i, Value: v}
		}
	}
	if len(labels) != n {
		return batch{}, &tensor.ShapeError{Op: "attack: labels", Want: []int{n}, Got: []int{len(labels)}}
	}
	k := m.NumClasses()
	if k < 2 {
		return batch{}, fmt.Errorf("attack: model has %d classes, need at least 2", k)
	}
	for i, l := range labels {
		if l < 0 || l >= k {
			return batch{}, &LabelError{Index: i, Label: l, NumClasses: k}
		}
	}
	return batch{n: n, c: c, h: h, w: w, d: c * h * w, k: k}, nil
}

// checkLogits verifies what a model returned: the shape, and finite values
// (a NaN would otherwise spread silently into the adversarial images).
func (b batch) checkLogits(logits *tensor.Tensor) error {
	if logits == nil || len(logits.Shape) != 2 || logits.Shape[0] != b.n || logits.Shape[1] != b.k || len(logits.Data) != b.n*b.k {
		var got []int
		if logits != nil {
			got = logits.Shape
		}
		return &tensor.ShapeError{Op: "attack: model logits", Want: []int{b.n, b.k}, Got: got}
	}
	if err := tensor.CheckFinite(logits.Data); err != nil {
		return fmt.Errorf("attack: model logits: %w", err)
	}
	return nil
}

func (b batch) checkGrad(g *tensor.Tensor) error {
	if g == nil || len(g.Data) != b.n*b.d {
		var got []int
		if g != nil {
			got = g.Shape
		}
		return &tensor.ShapeError{Op: "attack: model input gradient", Want: []int{b.n, b.c, b.h, b.w}, Got: got}
	}
	if err := tensor.CheckFinite(g.Data); err != nil {
		return fmt.Errorf("attack: model input gradient: %w", err)
	}
	return nil
}

// logits runs the model's forward pass and checks the result.
func (b batch) logits(ctx context.Context, m Model, x *tensor.Tensor) (*tensor.Tensor, error) {
	z, err := m.Logits(ctx, x)
	if err != nil {
		return nil, err
	}
	if err := b.checkLogits(z); err != nil {
		return nil, err
	}
	return z, nil
}

// grad runs one forward and backward pass and checks the result.
func (b batch) grad(ctx context.Context, m Model, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, g, err := m.InputGrad(ctx, x, seed)
	if err != nil {
		return nil, nil, err
	}
	if err := b.checkLogits(z); err != nil {
		return nil, nil, err
	}
	if err := b.checkGrad(g); err != nil {
		return nil, nil, err
	}
	return z, g, nil
}

// l2 returns the Euclidean norm of v, accumulated in float64.
func l2(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// radii returns the budget's radius for each image of x0 (flat, d values
// per image): Eps for LInf, Eps*||x0_i||_2 for L2Rel, Eps*||z0_i||_2 for
// L2Z (in the norm ||delta/std||_2).
func radii(bud Budget, x0 []float32, n, d int) []float64 {
	r := make([]float64, n)
	for i := range r {
		switch bud.Norm {
		case LInf:
			r[i] = bud.Eps
		case L2Z:
			r[i] = bud.Eps * bud.Normalization.zNorm(x0[i*d:(i+1)*d])
		default:
			r[i] = bud.Eps * l2(x0[i*d:(i+1)*d])
		}
	}
	return r
}

// project moves adv (flat, d values per image) so that adv lies in [0,1]
// and adv - x0 in the budget's ball of radius r[i], as measured in float64
// on the float32 values (so the Result's figures never exceed the budget).
// adv is first clipped to [0,1]; for L2 the perturbation is then rescaled
// onto the sphere when outside, for LInf clamped coordinate-wise. Both only
// move pixels towards x0, which lies in [0,1], so adv stays in [0,1]. For
// L2Z the norm is ||delta/std||_2 and the rescaling the same (the
// projection onto the ball in the normalized space).
func project(bud Budget, adv, x0 []float32, r []float64, d int) {
	std := bud.zStd(d)
	var delta []float64 // scratch, allocated on the first rescale
	for i := range r {
		a, o := adv[i*d:(i+1)*d], x0[i*d:(i+1)*d]
		tensor.Clip(a, 0, 1)
		if bud.Norm == LInf {
			for j := range a {
				// Clamp in float64, then step the float32 result towards
				// x0 until its distance, measured in float64, is within r.
				dj := float64(a[j]) - float64(o[j])
				if dj > r[i] {
					a[j] = float32(float64(o[j]) + r[i])
					for float64(a[j])-float64(o[j]) > r[i] {
						a[j] = math.Nextafter32(a[j], o[j])
					}
				} else if dj < -r[i] {
					a[j] = float32(float64(o[j]) - r[i])
					for float64(o[j])-float64(a[j]) > r[i] {
						a[j] = math.Nextafter32(a[j], o[j])
					}
				}
			}
			continue
		}
		nrm := zDist(a, o, std)
		if nrm <= r[i] {
			continue
		}
		// Rescale onto the sphere. float32 rounding of x0 + f*delta can
		// land just outside, so shrink again until the measured norm is
		// within the radius; every shrink moves each pixel towards x0, so
		// pixels stay in [0,1].
		f := r[i] / nrm
		if delta == nil {
			delta = make([]float64, d)
		}
		for j := range a {
			delta[j] = float64(a[j]) - float64(o[j])
		}
		for try := 0; nrm > r[i]; try++ {
			for j := range a {
				a[j] = float32(float64(o[j]) + delta[j]*f)
			}
			if nrm = zDist(a, o, std); nrm > r[i] {
				f *= r[i] / nrm * (1 - 1e-7*float64(int(1)<<min(try, 40)))
			}
		}
	}
}

// dist2 returns ||a - o||_2 in float64.
func dist2(a, o []float32) float64 {
	s := 0.0
	for j := range a {
		dj := float64(a[j]) - float64(o[j])
		s += dj * dj
	}
	return math.Sqrt(s)
}

// finish measures the perturbations, predicts on adv and fills a Result.
func finish(ctx context.Context, b batch, m Model, x0, adv *tensor.Tensor, cleanPred, labels []int, targeted bool, iters int) (*Result, error) {
	z, err := b.logits(ctx, m, adv)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Adv:       adv,
		Dissim:    make([]float64, b.n),
		LInf:      make([]float64, b.n),
		CleanPred: cleanPred,
		AdvPred:   z.ArgmaxRows(nil),
		Success:   make([]bool, b.n),
		Passes:    iters,
	}
	for i := 0; i < b.n; i++ {
		a, o := adv.Data[i*b.d:(i+1)*b.d], x0.Data[i*b.d:(i+1)*b.d]
		res.Dissim[i], res.LInf[i] = distances(a, o)
		res.Success[i] = succeeded(res.AdvPred[i], labels[i], targeted)
	}
	return res, nil
}

// distances returns ||a-o||_2/||o||_2 (0 when o is all zero and a == o,
// +Inf when only o is zero) and ||a-o||_inf.
func distances(a, o []float32) (dissim, linf float64) {
	s, so := 0.0, 0.0
	for j := range a {
		dj := float64(a[j]) - float64(o[j])
		s += dj * dj
		so += float64(o[j]) * float64(o[j])
		if math.Abs(dj) > linf {
			linf = math.Abs(dj)
		}
	}
	switch {
	case s == 0:
		dissim = 0
	case so == 0:
		dissim = math.Inf(1)
	default:
		dissim = math.Sqrt(s / so)
	}
	return dissim, linf
}

// Distances returns the normalized L2 dissimilarity ||adv-x0||_2/||x0||_2
// and the L-infinity distance of every image of two batches of equal shape.
func Distances(adv, x0 *tensor.Tensor) (dissim, linf []float64, err error) {
	if adv == nil || x0 == nil || !tensor.SameShape(adv, x0) || len(adv.Shape) == 0 || len(adv.Data) != len(x0.Data) {
		var want, got []int
		if x0 != nil {
			want = x0.Shape
		}
		if adv != nil {
			got = adv.Shape
		}
		return nil, nil, &tensor.ShapeError{Op: "attack.Distances", Want: want, Got: got}
	}
	n := adv.Shape[0]
	if n == 0 {
		return nil, nil, nil
	}
	d := len(adv.Data) / n
	dissim, linf = make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		dissim[i], linf[i] = distances(adv.Data[i*d:(i+1)*d], x0.Data[i*d:(i+1)*d])
	}
	return dissim, linf, nil
}

func succeeded(pred, label int, targeted bool) bool {
	if targeted {
		return pred == label
	}
	return pred != label
}
