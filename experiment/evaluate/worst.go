package evaluate

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/tensor"
)

// Outcome is what one attack left of a set of images.
type Outcome struct {
	// Correct[i] tells whether image i was still classified correctly
	// after the attack (in every evaluation draw of a randomized defense).
	// An image outside the attack's scope has false.
	Correct []bool `json:"correct"`
	// Scope[i] tells whether the attack covered image i (Square may cover
	// a subset); nil means every image.
	Scope []bool `json:"scope,omitempty"`
}

// inScope reports whether image i is in o's scope.
func (o Outcome) inScope(i int) bool { return o.Scope == nil || o.Scope[i] }

// Accuracy returns the fraction of the images in scope still correct, with
// its Wilson 95% interval.
func (o Outcome) Accuracy() metrics.Accuracy {
	right, n := 0, 0
	for i, c := range o.Correct {
		if o.inScope(i) {
			n++
			if c {
				right++
			}
		}
	}
	return metrics.NewAccuracy(right, n)
}

// WorstCase returns, per image, whether it is robust to the whole suite:
// classified correctly without attack (clean) and still correct after every
// attack of outcomes whose scope includes it. An image attacked by no
// attack keeps its clean verdict. Every outcome must have len(clean)
// entries (and so must its Scope, when set).
func WorstCase(clean []bool, outcomes ...Outcome) ([]bool, error) {
	out := append([]bool(nil), clean...)
	for j, o := range outcomes {
		if len(o.Correct) != len(clean) || (o.Scope != nil && len(o.Scope) != len(clean)) {
			return nil, fmt.Errorf("evaluate: outcome %d covers %d images (scope %d), want %d", j, len(o.Correct), len(o.Scope), len(clean))
		}
		for i := range out {
			if o.inScope(i) && !o.Correct[i] {
				out[i] = false
			}
		}
	}
	return out, nil
}

// brokenOnlyBy counts the images in control's scope that control broke
// (not correct) while they were correct without attack and after every
// attack of the others: what a control found that the others missed.
func brokenOnlyBy(control Outcome, clean []bool, others []Outcome) (count, scope int, err error) {
	robust, err := WorstCase(clean, others...)
	if err != nil {
		return 0, 0, err
	}
	if len(control.Correct) != len(clean) {
		return 0, 0, fmt.Errorf("evaluate: control covers %d images, want %d", len(control.Correct), len(clean))
	}
	for i := range robust {
		if !control.inScope(i) || !robust[i] {
			continue
		}
		scope++
		if !control.Correct[i] {
			count++
		}
	}
	return count, scope, nil
}

// RandomNoise returns x plus random noise at the budget, clipped to [0, 1]: the
// random-noise control of Carlini et al. (2019, section 5.2). For
// L-infinity each pixel moves by plus or minus Eps with equal probability
// (a corner of the budget ball); for the normalized L2 dissimilarity each
// image moves along a Gaussian direction by Eps times its own L2 norm. The
// noise is a function of (x, b, seed).
func RandomNoise(x *tensor.Tensor, b attack.Budget, seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	y := x.Clone()
	if b.Norm == attack.LInf {
		e := float32(b.Eps)
		for i := range y.Data {
			if rng.Uint64()&1 == 0 {
				y.Data[i] += e
			} else {
				y.Data[i] -= e
			}
		}
		tensor.Clip(y.Data, 0, 1)
		return y
	}
	n := x.Shape[0]
	d := len(x.Data) / max(n, 1)
	dir := make([]float64, d)
	for i := 0; i < n; i++ {
		xi := y.Data[i*d : (i+1)*d]
		s, s0 := 0.0, 0.0
		for j := range dir {
			dir[j] = rng.NormFloat64()
			s += dir[j] * dir[j]
			s0 += float64(xi[j]) * float64(xi[j])
		}
		f := b.Eps * math.Sqrt(s0) / math.Sqrt(s)
		for j := range xi {
			xi[j] += float32(dir[j] * f)
		}
	}
	tensor.Clip(y.Data, 0, 1)
	return y
}
