package attack

import (
	"fmt"
	"math"
	"strings"
)

// Losses of APGD besides the cross-entropy (LossCE) and the Carlini-Wagner
// margin (LossCW, see apgdRowLoss: APGD ascends it unclamped).
const (
	// LossDLR is the Difference of Logits Ratio of Croce and Hein (ICML
	// 2020, eq. 5), ascended by untargeted APGD:
	//
	//	DLR(z, y) = -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3 + 1e-12)
	//
	// with z_pi1 >= z_pi2 >= ... the sorted logits. It is invariant to
	// shifting and rescaling the logits, so neither softmax saturation nor
	// a scaled-up network hides the gradient; it needs 3 classes.
	LossDLR Loss = "dlr"
	// LossDLRTargeted is the targeted DLR (Croce and Hein, eq. 6) towards
	// a target t:
	//
	//	DLR-T(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12)
	//
	// Untargeted APGD with this loss is AutoAttack's APGD-T: one run per
	// target t among the classes ranked 2 to APGDOptions.NTargetClasses+1
	// by the clean logits, succeeding when the image is misclassified at
	// all. It needs 4 classes.
	LossDLRTargeted Loss = "dlr-t"
)

// APGDLosses lists the losses APGD accepts, in canonical order.
var APGDLosses = []Loss{LossCE, LossDLR, LossDLRTargeted, LossCW}

// ParseAPGDLoss parses "ce" (or ""), "dlr", "dlr-t" (also "dlr-targeted")
// and "cw", case-insensitively; anything else is an error naming the known
// losses.
func ParseAPGDLoss(s string) (Loss, error) {
	switch l := Loss(strings.ToLower(strings.TrimSpace(s))); l {
	case LossDLR, LossDLRTargeted:
		return l, nil
	case "dlr-targeted":
		return LossDLRTargeted, nil
	}
	if l, err := ParseLoss(s); err == nil && apgdLossKnown(l) {
		return l, nil
	}
	return "", fmt.Errorf("attack: unknown APGD loss %q (want %q, %q, %q or %q)", s, LossCE, LossDLR, LossDLRTargeted, LossCW)
}

// apgdLossKnown reports whether l is a loss APGD implements.
func apgdLossKnown(l Loss) bool {
	return l == "" || l == LossCE || l == LossDLR || l == LossDLRTargeted || l == LossCW
}

// minClasses returns the number of classes the loss needs: DLR reads the
// third largest logit, the targeted DLR the fourth.
func (l Loss) minClasses() int {
	switch l {
	case LossDLR:
		return 3
	case LossDLRTargeted:
		return 4
	}
	return 2
}

// rowLoss evaluates an attacker's loss (the quantity ascended) on one row
// z of logits, for the class y and, for the targeted losses, the target t.
// When g is not nil it also writes dL/dz to g (len(z) values, every entry
// written). The loss is computed in float64.
type rowLoss func(z []float32, y, t int, g []float32) float64

// apgdRowLoss returns the row loss of l: for LossCE the cross-entropy of
// y (untargeted) or minus the cross-entropy of t (targeted); for LossCW
// the Carlini-Wagner margin without its clamp (cwMarginLoss).
func apgdRowLoss(l Loss, targeted bool) rowLoss {
	switch {
	case l == LossDLR:
		return dlrLoss
	case l == LossDLRTargeted:
		return dlrTargetedLoss
	case l == LossCW && targeted:
		return func(z []float32, _, t int, g []float32) float64 { return -cwMarginLoss(z, t, g, -1) }
	case l == LossCW:
		return func(z []float32, y, _ int, g []float32) float64 { return cwMarginLoss(z, y, g, 1) }
	case targeted:
		return func(z []float32, _, t int, g []float32) float64 { return -ceLoss(z, t, g, -1) }
	}
	return func(z []float32, y, _ int, g []float32) float64 { return ceLoss(z, y, g, 1) }
}

// ceLoss returns CE(softmax(z), y) = logsumexp(z) - z_y and, when g is not
// nil, writes sign * dCE/dz = sign * (softmax(z) - onehot(y)) to g.
func ceLoss(z []float32, y int, g []float32, sign float64) float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	if g != nil {
		for j, v := range z {
			d := math.Exp(float64(v) - lse)
			if j == y {
				d--
			}
			g[j] = float32(sign * d)
		}
	}
	return lse - float64(z[y])
}

// cwMarginLoss returns the Carlini-Wagner margin max_{j!=y} z_j - z_y of
// the class y (Carlini and Wagner, IEEE S&P 2017, f6 with kappa = +inf)
// and, when g is not nil, writes sign * its gradient to g: +sign at the
// largest other logit (the first of tied ones), -sign at y, 0 elsewhere.
// APGD-CW ascends it untargeted; targeted towards t it ascends
// z_t - max_{j!=t} z_j, minus the margin of t. Unlike PGD's LossCW it is
// not clamped at kappa: APGD's step-size rule compares losses across
// iterations, which a clamp would flatten, and StopEarly ends the attack of
// an image at its first success anyway. This is the margin loss with which
// Croce et al. ("Evaluating the adversarial robustness of adaptive
// test-time defenses", ICML 2022) run APGD against test-time defenses
// ("APGD-CW"). With one class there is no margin: 0 and a zero gradient.
func cwMarginLoss(z []float32, y int, g []float32, sign float64) float64 {
	if g != nil {
		clear(g)
	}
	j, other := bestOther(z, y)
	if j < 0 {
		return 0
	}
	if g != nil {
		g[j], g[y] = float32(sign), float32(-sign)
	}
	return float64(other) - float64(z[y])
}

// top4 returns the indices of the four largest entries of z in decreasing
// order, ties to the lower index; entries past len(z) are -1.
func top4(z []float32) (pi [4]int) {
	for r := range pi {
		pi[r] = -1
		for j, v := range z {
			taken := false
			for _, p := range pi[:r] {
				taken = taken || p == j
			}
			if !taken && (pi[r] < 0 || v > z[pi[r]]) {
				pi[r] = j
			}
		}
	}
	return pi
}

// ratioLoss returns -num/den for num = z_a - z_b and a denominator den =
// sum_j w_j z_j + 1e-12 given by indices and weights, and writes the
// gradient to g when not nil: d(-num/den)/dz = -(dnum*den - num*dden)/den^2.
func ratioLoss(z []float32, a, b int, dIdx [3]int, dW [3]float64, g []float32) float64 {
	num := float64(z[a]) - float64(z[b])
	den := 1e-12
	for r, j := range dIdx {
		if j >= 0 {
			den += dW[r] * float64(z[j])
		}
	}
	if g != nil {
		// Gather the (at most five) non-zero entries in float64 first:
		// a, b and the denominator's indices may coincide.
		idx := [5]int{a, b, dIdx[0], dIdx[1], dIdx[2]}
		val := [5]float64{-1 / den, 1 / den}
		for r := range dIdx {
			val[2+r] = num * dW[r] / (den * den)
		}
		clear(g)
		for _, j := range idx {
			if j < 0 {
				continue
			}
			s := 0.0
			for q := range idx {
				if idx[q] == j {
					s += val[q]
				}
			}
			g[j] = float32(s)
		}
	}
	return -num / den
}

// dlrLoss is LossDLR for the class y (t unused).
func dlrLoss(z []float32, y, _ int, g []float32) float64 {
	pi := top4(z)
	other := pi[0]
	if other == y {
		other = pi[1]
	}
	return ratioLoss(z, y, other, [3]int{pi[0], pi[2], -1}, [3]float64{1, -1, 0}, g)
}

// dlrTargetedLoss is LossDLRTargeted for the class y and the target t.
func dlrTargetedLoss(z []float32, y, t int, g []float32) float64 {
	pi := top4(z)
	return ratioLoss(z, y, t, [3]int{pi[0], pi[2], pi[3]}, [3]float64{1, -0.5, -0.5}, g)
}
