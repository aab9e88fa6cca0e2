package attack

import (
	"fmt"
	"math"
	"strings"

	"github.com/stl-defense/stl/tensor"
)

// crossEntropySeed returns a Model.InputGrad seed that fills g with dL/dz
// for the loss the attacker ascends: L = CE(softmax(z), y) untargeted, or
// L = -CE(softmax(z), t) targeted, summed over the batch. dCE/dz is
// softmax(z) - onehot(y), computed in float64 with the maximum logit
// subtracted for stability.
func crossEntropySeed(labels []int, k int, targeted bool) func(z, g *tensor.Tensor) {
	sign := 1.0
	if targeted {
		sign = -1
	}
	p := make([]float64, k)
	return func(z, g *tensor.Tensor) {
		for i, y := range labels {
			row := z.Data[i*k : (i+1)*k]
			softmax(p, row)
			out := g.Data[i*k : (i+1)*k]
			for j := range out {
				d := p[j]
				if j == y {
					d--
				}
				out[j] = float32(sign * d)
			}
		}
	}
}

// softmax writes softmax(z) to p.
func softmax(p []float64, z []float32) {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for j, v := range z {
		p[j] = math.Exp(float64(v) - m)
		s += p[j]
	}
	for j := range p {
		p[j] /= s
	}
}

// bestOther returns the index and value of the largest logit of row other
// than class y.
func bestOther(row []float32, y int) (int, float32) {
	best := -1
	var bv float32
	for j, v := range row {
		if j == y {
			continue
		}
		if best < 0 || v > bv {
			best, bv = j, v
		}
	}
	return best, bv
}

// Loss names the function of the logits a gradient attack (PGD) ascends.
// The zero value "" is the cross-entropy, so that options written before
// the field existed keep their meaning and their JSON encoding.
type Loss string

const (
	// LossCE is the cross-entropy of softmax(z) against the label,
	// ascended (untargeted) or descended against the target (targeted):
	// Madry et al.'s PGD loss. "" means the same.
	LossCE Loss = "ce"
	// LossCW is the margin loss f6 of Carlini & Wagner (IEEE S&P 2017,
	// section V.A): f = max(z_y - max_{j!=y} z_j, -kappa) is minimized,
	// i.e. the attacker ascends min(max_{j!=y} z_j - z_y, kappa)
	// untargeted, and min(z_t - max_{j!=t} z_j, kappa) towards a target t.
	// Unlike the cross-entropy its gradient does not vanish on confidently
	// classified images (softmax saturation) and it is invariant to a
	// shift of all logits, which is why adaptive evaluations run PGD with
	// both losses (Carlini et al., "On Evaluating Adversarial Robustness",
	// 2019; Madry et al.'s CIFAR-10 challenge offers both).
	LossCW Loss = "cw"
)

// Losses lists the losses PGD accepts, in canonical order.
var Losses = []Loss{LossCE, LossCW}

// ParseLoss parses "ce" (or "") and "cw", case-insensitively, into a
// Loss; anything else is an error naming the known losses.
func ParseLoss(s string) (Loss, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", string(LossCE):
		return LossCE, nil
	case string(LossCW):
		return LossCW, nil
	}
	return "", fmt.Errorf("attack: unknown loss %q (want %q, the cross-entropy, or %q, the Carlini-Wagner margin)", s, LossCE, LossCW)
}

// isCW reports whether l is the margin loss; "" and LossCE are the
// cross-entropy.
func (l Loss) isCW() bool { return l == LossCW }

// known reports whether l is "", LossCE or LossCW.
func (l Loss) known() bool { return l == "" || l == LossCE || l == LossCW }

// seed returns the InputGrad seed of the loss (see crossEntropySeed and
// marginSeed).
func (l Loss) seed(labels []int, k int, targeted bool, kappa float64) func(z, g *tensor.Tensor) {
	if l.isCW() {
		return marginSeed(labels, k, targeted, kappa)
	}
	return crossEntropySeed(labels, k, targeted)
}

// marginSeed returns a Model.InputGrad seed that fills g with dL/dz for
// the Carlini-Wagner margin loss (LossCW) the attacker ascends, summed over
// the batch: L = min(z_j - z_y, kappa) untargeted, with j the largest
// logit other than the label y, and L = min(z_t - z_j, kappa) targeted,
// with j the largest logit other than the target t. g is +1 and -1 at the
// two logits where the margin is at most kappa, 0 elsewhere and beyond
// kappa (the clamp of f6, where the image is misclassified with the wanted
// confidence and stops moving). At the kink (margin exactly kappa) the
// unclamped side is taken, so that an exact tie between the label and
// another logit, which argmax may resolve either way, still moves the
// image at kappa 0; among tied other logits the first is taken.
func marginSeed(labels []int, k int, targeted bool, kappa float64) func(z, g *tensor.Tensor) {
	return func(z, g *tensor.Tensor) {
		for i, y := range labels {
			row := z.Data[i*k : (i+1)*k]
			out := g.Data[i*k : (i+1)*k]
			clear(out)
			j, other := bestOther(row, y)
			if j < 0 {
				continue // one class: no margin
			}
			margin := float64(other) - float64(row[y])
			up, down := j, y // ascend z_j - z_y
			if targeted {
				margin, up, down = -margin, y, j // ascend z_t - z_j
			}
			if margin > kappa {
				continue
			}
			out[up], out[down] = 1, -1
		}
	}
}
