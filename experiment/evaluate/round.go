package evaluate

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/tensor"
)

// stepSlack is how far (in 8-bit steps) a pixel may lie outside the budget
// and still count as inside: it absorbs the float32 representation of k/255
// (about 1.5e-5 steps near 1), so that an 8-bit image k0/255 perturbed by
// exactly 8/255 is admitted. It allows at most 1e-4/255 (below 4e-7) beyond
// the budget.
const stepSlack = 1e-4

// round8 rounds the adversarial images adv (N, C, H, W, pixels in [0, 1])
// in place to 8 bits, values k/255, keeping each inside the budget b
// around its clean image in x0 (same shape), for Options.Round8:
//
//   - L-infinity: each pixel is rounded to the nearest k/255 among the
//     8-bit values inside [x0 - eps, x0 + eps] and [0, 1] (rounding, then
//     clipping to the ball in 8-bit steps). The set is not empty when eps
//     is at least half a step (1/510), which the rounding requires.
//   - Normalized L2 (attack.L2Rel): each pixel is rounded to the nearest
//     k/255; when the image then lies outside the ball of radius
//     eps*||x0||_2, the pixels whose nearest value is farther from x0 than
//     their other neighbouring 8-bit value (the one towards x0) take that
//     value instead, those gaining the most first, until the image is
//     inside. On an 8-bit x0 every pixel so rounded towards x0 moves no
//     farther from x0 than the attack left it, so the image always ends
//     inside.
//
// It returns an error when no 8-bit image inside the budget is found (an
// L-infinity budget below half a step, or an L2 one around a clean image
// off the 8-bit grid), and for the other norms. Rounding an image twice
// changes nothing.
func round8(adv, x0 *tensor.Tensor, b attack.Budget) error {
	if len(adv.Data) != len(x0.Data) || len(adv.Shape) == 0 || len(x0.Shape) == 0 || adv.Shape[0] != x0.Shape[0] {
		return &tensor.ShapeError{Op: "evaluate: rounding to 8 bits", Want: x0.Shape, Got: adv.Shape}
	}
	n := adv.Shape[0]
	if n == 0 {
		return nil
	}
	d := len(adv.Data) / n
	for i := 0; i < n; i++ {
		a, o := adv.Data[i*d:(i+1)*d], x0.Data[i*d:(i+1)*d]
		var err error
		switch b.Norm {
		case attack.LInf:
			err = round8LInf(a, o, b.Eps)
		case attack.L2Rel:
			err = round8L2(a, o, b.Eps)
		default:
			err = fmt.Errorf("no 8-bit rounding inside a %s budget", b.Norm)
		}
		if err != nil {
			return fmt.Errorf("evaluate: rounding image %d to 8 bits at %s: %w", i, BudgetLabel(b), err)
		}
	}
	return nil
}

// round8LInf rounds a inside [o - eps, o + eps] in 8-bit steps.
func round8LInf(a, o []float32, eps float64) error {
	for j, v := range a {
		lo := math.Max(0, math.Ceil(255*(float64(o[j])-eps)-stepSlack))
		hi := math.Min(255, math.Floor(255*(float64(o[j])+eps)+stepSlack))
		if lo > hi {
			return fmt.Errorf("pixel %d: no 8-bit value within %g of %g", j, eps, o[j])
		}
		k := math.Min(hi, math.Max(lo, math.Round(255*float64(v))))
		a[j] = float32(k / 255)
	}
	return nil
}

// round8L2 rounds a to 8 bits inside the ball of radius eps*||o||_2.
func round8L2(a, o []float32, eps float64) error {
	r2 := 0.0
	for _, v := range o {
		r2 += float64(v) * float64(v)
	}
	r2 *= eps * eps * (1 + 1e-9) // float64 sums of float32 values
	type swap struct {
		j    int
		k    float64
		gain float64
	}
	var dist2 float64
	var swaps []swap
	for j, v := range a {
		x := math.Min(255, math.Max(0, 255*float64(v)))
		near := math.Round(x)
		// The neighbouring 8-bit value on the other side of x.
		other := math.Floor(x)
		if other == near {
			other = math.Min(255, near+1)
		}
		dn, do := float64(o[j])-near/255, float64(o[j])-other/255
		dist2 += dn * dn
		if g := dn*dn - do*do; g > 0 {
			swaps = append(swaps, swap{j, other, g})
		}
		a[j] = float32(near / 255)
	}
	slices.SortFunc(swaps, func(p, q swap) int { return cmp.Compare(q.gain, p.gain) })
	for _, s := range swaps {
		if dist2 <= r2 {
			break
		}
		a[s.j] = float32(s.k / 255)
		dist2 -= s.gain
	}
	if dist2 > r2 {
		return fmt.Errorf("no 8-bit image within the dissimilarity %g found (the clean image is off the 8-bit grid)", eps)
	}
	return nil
}
