package advtrain

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// OptionError is the error type of Options.Validate.
type OptionError = option.Error

// Method names an adversarial-training method.
type Method string

// The methods.
const (
	// PGD is Madry et al.'s projected gradient descent with random start.
	PGD Method = "pgd"
	// FGSMRS is Wong et al.'s FGSM with random start.
	FGSMRS Method = "fgsm-rs"
)

// Methods lists the methods, PGD first.
var Methods = []Method{PGD, FGSMRS}

// Eps8 is 8/255, the L-infinity radius of Madry et al.'s and Wong et al.'s
// CIFAR-10 training, and of the paper's Table 4 attack (0.031).
const Eps8 = 8.0 / 255

// Options configures adversarial training. The JSON encoding is part of
// the cache key of `stl run`'s adversarially trained classifiers.
type Options struct {
	Method Method `json:"method"`
	// Eps is the L-infinity radius of the perturbations, in [0, 1] pixel
	// units. Default 8/255 (Madry et al.; Wong et al.).
	Eps float64 `json:"eps"`
	// Step is the size of each sign step. Default 2/255 for PGD (Madry et
	// al.), 1.25*Eps for FGSM-RS (Wong et al., section 4: alpha = 1.25 eps;
	// 10/255 at eps 8/255).
	Step float64 `json:"step"`
	// Steps is the number of attack steps, each one gradient of the model.
	// Default 7 for PGD (Madry et al.'s CIFAR-10 training), 1 for FGSM-RS
	// (which has exactly one).
	Steps int `json:"steps"`
	// Fraction is the share of each batch replaced by adversarial
	// examples, the rest staying clean (a mix as in Goodfellow et al. 2015
	// and Kurakin et al. 2017); the cost of the attack scales with it.
	// Default 1 (Madry et al.: every image adversarial).
	Fraction float64 `json:"fraction"`
	// Seed seeds the random starts, per batch together with its epoch and
	// position. Default 1.
	Seed uint64 `json:"seed"`
}

// DefaultOptions returns the published setting of method m: PGD at
// L-infinity 8/255 with 7 steps of 2/255 (Madry et al. 2018), or FGSM-RS at
// 8/255 with one step of 10/255 (Wong et al. 2020), every image
// adversarial. An unknown m gets PGD's numbers and fails Validate.
func DefaultOptions(m Method) Options {
	o := Options{Method: m, Eps: Eps8, Step: 2.0 / 255, Steps: 7, Fraction: 1, Seed: 1}
	if m == FGSMRS {
		o.Step, o.Steps = 1.25*Eps8, 1
	}
	return o
}

// Validate checks the method, Eps in (0, 1], Step in (0, 1], Steps >= 1
// (exactly 1 for FGSM-RS) and Fraction in (0, 1]. Errors are *OptionError.
func (o Options) Validate() error {
	bad := func(f string, v any, why string) error { return option.New("advtrain", "Options."+f, v, why) }
	switch {
	case o.Method != PGD && o.Method != FGSMRS:
		return bad("Method", fmt.Sprintf("%q", string(o.Method)), fmt.Sprintf("want %q or %q", PGD, FGSMRS))
	case !(o.Eps > 0 && o.Eps <= 1):
		return bad("Eps", o.Eps, "want in (0, 1]")
	case !(o.Step > 0 && o.Step <= 1):
		return bad("Step", o.Step, "want in (0, 1]")
	case o.Steps < 1:
		return bad("Steps", o.Steps, "want >= 1")
	case o.Method == FGSMRS && o.Steps != 1:
		return bad("Steps", o.Steps, "FGSM-RS takes exactly one step (use pgd for more)")
	case !(o.Fraction > 0 && o.Fraction <= 1):
		return bad("Fraction", o.Fraction, "want in (0, 1]")
	}
	return nil
}

// String describes the options, e.g. "PGD eps 8/255, 7 steps of 2/255".
func (o Options) String() string {
	name := "PGD"
	if o.Method == FGSMRS {
		name = "FGSM-RS"
	}
	s := fmt.Sprintf("%s eps %s, %d step", name, Fraction255(o.Eps), o.Steps)
	if o.Steps != 1 {
		s += "s"
	}
	s += " of " + Fraction255(o.Step)
	if o.Fraction < 1 {
		s += fmt.Sprintf(", %g of each batch", o.Fraction)
	}
	return s
}

// Fraction255 writes v as k/255 when 255 v is within 1e-9 of a whole or
// half number k (8/255, 2.5/255), as %g otherwise.
func Fraction255(v float64) string {
	k := v * 255
	if r := math.Round(2*k) / 2; math.Abs(k-r) < 1e-9 {
		return fmt.Sprintf("%g/255", r)
	}
	return fmt.Sprintf("%g", v)
}

// Examples returns adversarial examples of the batch x (N, C, H, W, pixels
// in [0, 1]) with the true labels against m: from x plus a perturbation
// drawn uniformly in the L-infinity ball of radius o.Eps (clipped to
// [0, 1]), o.Steps steps of o.Step along the sign of the cross-entropy's
// input gradient, each followed by the projection onto the ball around x
// and onto [0, 1]. Every result pixel is within o.Eps of x's and in
// [0, 1]. The random start is drawn from seed, so the same seed, model and
// batch give the same examples. It costs o.Steps calls of m.InputGrad and
// allocates the result; x is not modified. Errors: invalid options, a
// shape or label mismatch with m, m's errors, ctx's error between steps.
func Examples(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, o Options, seed uint64) (*tensor.Tensor, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if m == nil || x == nil {
		return nil, fmt.Errorf("advtrain: Examples needs a model and a batch")
	}
	c, h, w := m.InputShape()
	k := m.NumClasses()
	if len(x.Shape) != 4 || x.Shape[1] != c || x.Shape[2] != h || x.Shape[3] != w || len(x.Data) != x.Len() {
		return nil, &tensor.ShapeError{Op: "advtrain.Examples", Want: []int{-1, c, h, w}, Got: x.Shape}
	}
	if len(labels) != x.Shape[0] {
		return nil, fmt.Errorf("advtrain.Examples: %d labels for %d images", len(labels), x.Shape[0])
	}
	for i, y := range labels {
		if y < 0 || y >= k {
			return nil, fmt.Errorf("advtrain.Examples: label %d of image %d outside [0, %d)", y, i, k)
		}
	}
	eps, step := float32(o.Eps), float32(o.Step)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	adv := x.Clone()
	for i, v := range x.Data {
		adv.Data[i] = clamp(v+eps*float32(2*rng.Float64()-1), v, eps)
	}
	seedFn := crossEntropySeed(labels)
	for range o.Steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		_, g, err := m.InputGrad(ctx, adv, seedFn)
		if err != nil {
			return nil, err
		}
		if g == nil || len(g.Data) != len(adv.Data) {
			return nil, fmt.Errorf("advtrain.Examples: the model's input gradient does not have the batch's shape")
		}
		for i, gi := range g.Data {
			var s float32
			switch {
			case gi > 0:
				s = step
			case gi < 0:
				s = -step
			}
			adv.Data[i] = clamp(adv.Data[i]+s, x.Data[i], eps)
		}
	}
	return adv, nil
}

// clamp projects v onto [x0-eps, x0+eps] and then onto [0, 1]; both only
// move v towards x0 in [0, 1], so the result stays in the ball.
func clamp(v, x0, eps float32) float32 {
	v = min(max(v, x0-eps), x0+eps)
	return min(max(v, 0), 1)
}

// crossEntropySeed returns an InputGrad seed filling g with the gradient of
// the cross-entropy with respect to the logits, softmax(z) - onehot(y)
// (nn.SoftmaxCrossEntropy's, whose 1/N scale the sign steps ignore).
func crossEntropySeed(labels []int) func(z, g *tensor.Tensor) {
	return func(z, g *tensor.Tensor) {
		// z and g are (N, K) with N = len(labels), checked by Examples.
		if _, _, err := nn.SoftmaxCrossEntropy(z, labels, 0, g); err != nil {
			clear(g.Data) // unreachable: labels were checked against k
		}
	}
}

// BatchSeed derives the random start's seed of batch index of epoch (both
// 0-based) from seed.
func BatchSeed(seed uint64, epoch, index int) uint64 {
	r := rand.New(rand.NewPCG(seed, uint64(epoch)<<32|uint64(uint32(index))))
	return r.Uint64()
}

// Hook returns the nn.TrainOptions.BatchHook of adversarial training with
// o. In every batch it replaces the first round(o.Fraction * n) images (a
// random share, batches being shuffled) by Examples against the model
// under training, drawn from BatchSeed(o.Seed, epoch, index).
//
// With t not nil, the model attacked is the composite M∘t through BPDA
// (t's exact gradient when t implements attack.Approx, the identity
// otherwise), and every image of the batch, adversarial or clean, is
// replaced by its image under t, so that M learns on t(x_adv) and t(x): a
// batch costs o.Steps applications of t on the adversarial share and one
// on the whole batch. t must be deterministic (Randomized false); its
// Apply is called from the training goroutine.
func Hook(o Options, t attack.Transform) (func(context.Context, *nn.TrainBatch) error, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if t != nil && t.Randomized() {
		return nil, fmt.Errorf("advtrain: the transform %s is randomized; adversarial training through it would need EOT and is not supported", t.Name())
	}
	var approx attack.Approx
	if a, ok := t.(attack.Approx); ok {
		approx = a
	}
	return func(ctx context.Context, b *nn.TrainBatch) error {
		x := b.Images
		n := x.Shape[0]
		na := min(n, int(math.Round(o.Fraction*float64(n))))
		if na > 0 {
			var m attack.Model = b.Model
			if t != nil {
				m = &attack.BPDA{T: t, M: b.Model, Approx: approx}
			}
			adv, err := Examples(ctx, m, x.Batch(0, na), b.Labels[:na], o, BatchSeed(o.Seed, b.Epoch, b.Index))
			if err != nil {
				return err
			}
			copy(x.Data, adv.Data)
		}
		if t == nil {
			return nil
		}
		y, err := t.Apply(ctx, x)
		if err != nil {
			return fmt.Errorf("advtrain: transform %s: %w", t.Name(), err)
		}
		if y == nil || !tensor.SameShape(x, y) {
			return fmt.Errorf("advtrain: transform %s changed the batch's shape", t.Name())
		}
		copy(x.Data, y.Data)
		return nil
	}, nil
}
