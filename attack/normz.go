package attack

import (
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// Normalization is a classifier's per-channel input normalization,
// z = (x - Mean[c]) / Std[c] on the pixels x in [0,1] of channel c: the
// space in which an L2Z budget is measured (Guo et al. 2018 measure the
// normalized L2 dissimilarity on the tensors their classifier reads).
type Normalization struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// Validate checks one or more channels, as many means as deviations, finite
// means and finite positive deviations.
func (n *Normalization) Validate() error {
	if n == nil {
		return fmt.Errorf("an l2z budget needs the classifier's input normalization (none given)")
	}
	if len(n.Mean) == 0 || len(n.Mean) != len(n.Std) {
		return fmt.Errorf("want as many means as standard deviations, at least one")
	}
	for c := range n.Mean {
		if math.IsNaN(n.Mean[c]) || math.IsInf(n.Mean[c], 0) || !(n.Std[c] > 0) || math.IsInf(n.Std[c], 1) {
			return fmt.Errorf("channel %d: mean %v, std %v: want finite values and std > 0", c, n.Mean[c], n.Std[c])
		}
	}
	return nil
}

// equal reports whether n and o hold the same values (both nil counts).
func (n *Normalization) equal(o *Normalization) bool {
	if n == nil || o == nil {
		return n == o
	}
	return slices.Equal(n.Mean, o.Mean) && slices.Equal(n.Std, o.Std)
}

// Equal reports whether two budgets are the same: norm, epsilon and
// normalization values.
func (b Budget) Equal(o Budget) bool {
	return b.Norm == o.Norm && b.Eps == o.Eps && b.Normalization.equal(o.Normalization)
}

// zStd returns, for an L2Z budget, the standard deviation of each of the d
// values of an image (channel planes in order); nil for the other norms.
// checkBudget has matched the channels.
func (b Budget) zStd(d int) []float64 {
	if b.Norm != L2Z {
		return nil
	}
	c := len(b.Normalization.Std)
	plane := d / c
	s := make([]float64, d)
	for j := range s {
		s[j] = b.Normalization.Std[j/plane]
	}
	return s
}

// checkBudget checks that an L2Z budget's normalization has one channel
// per channel of the batch.
func (b Budget) checkBudget(bt batch) error {
	if b.Norm != L2Z {
		return nil
	}
	if c := len(b.Normalization.Mean); c != bt.c {
		return &tensor.ShapeError{Op: "attack: normalization channels vs batch", Want: []int{bt.c}, Got: []int{c}}
	}
	return nil
}

// zNorm returns ||(x - mean)/std||_2 over one image of d values.
func (n *Normalization) zNorm(x []float32) float64 {
	plane := len(x) / len(n.Mean)
	s := 0.0
	for j, v := range x {
		c := j / plane
		z := (float64(v) - n.Mean[c]) / n.Std[c]
		s += z * z
	}
	return math.Sqrt(s)
}

// zDist returns ||(a - o)/std||_2, std per value (nil: plain L2).
func zDist(a, o []float32, std []float64) float64 {
	if std == nil {
		return dist2(a, o)
	}
	s := 0.0
	for j := range a {
		dj := (float64(a[j]) - float64(o[j])) / std[j]
		s += dj * dj
	}
	return math.Sqrt(s)
}

// DissimilarityZ returns, per image of two batches of equal (N, C, H, W)
// shape, the normalized L2 dissimilarity measured on the normalized
// tensors: ||z_adv - z0||_2 / ||z0||_2 with z = (x - Mean[c])/Std[c], as
// Guo et al.'s code measures it (before their mean over images). It is 0
// where adv equals x0 and +Inf where only z0 is zero. Errors: a
// *tensor.ShapeError, or an invalid normalization for C channels.
func DissimilarityZ(adv, x0 *tensor.Tensor, n Normalization) ([]float64, error) {
	if adv == nil || x0 == nil || !tensor.SameShape(adv, x0) || len(x0.Shape) != 4 {
		var want, got []int
		if x0 != nil {
			want = x0.Shape
		}
		if adv != nil {
			got = adv.Shape
		}
		return nil, &tensor.ShapeError{Op: "attack.DissimilarityZ", Want: want, Got: got}
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("attack: normalization: %w", err)
	}
	if len(n.Mean) != x0.Shape[1] {
		return nil, &tensor.ShapeError{Op: "attack.DissimilarityZ: normalization channels", Want: []int{x0.Shape[1]}, Got: []int{len(n.Mean)}}
	}
	b := Budget{Norm: L2Z, Normalization: &n}
	num, d := x0.Shape[0], len(x0.Data)/max(1, x0.Shape[0])
	std := b.zStd(d)
	out := make([]float64, num)
	for i := range out {
		a, o := adv.Data[i*d:(i+1)*d], x0.Data[i*d:(i+1)*d]
		dz, nz := zDist(a, o, std), n.zNorm(o)
		switch {
		case dz == 0:
		case nz == 0:
			out[i] = math.Inf(1)
		default:
			out[i] = dz / nz
		}
	}
	return out, nil
}
