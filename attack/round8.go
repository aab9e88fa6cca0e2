package attack

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// Round8 rounds every value of x in place to the nearest multiple of 1/255
// within [0,1]: x = clip(round(255*x), 0, 255)/255, computed in float64
// with halves rounded away from zero, as an 8-bit image file stores it.
// Applying it twice changes nothing, and no value moves by more than
// 0.5/255 (plus float32 rounding) unless it was outside [0,1]. NaN stays
// NaN. It knows no budget: it is for clean images; adversarial images are
// rounded with Round8Within (or Rounded), which keeps them inside theirs.
func Round8(x []float32) {
	for i, v := range x {
		if v != v {
			continue
		}
		x[i] = float32(math.Min(255, math.Max(0, math.Round(float64(v)*255))) / 255)
	}
}

// stepSlack is how far (in 8-bit steps) a pixel may lie outside an
// L-infinity budget and still count as inside: it absorbs the float32
// representation of k/255 (about 1.5e-5 steps near 1), so that an 8-bit
// image k0/255 perturbed by exactly 8/255 is admitted. It allows at most
// 1e-4/255 (below 4e-7) beyond the budget.
const stepSlack = 1e-4

// l2Slack is the relative slack of the squared L2 radius, for the float64
// sums of float32 values.
const l2Slack = 1e-9

// Round8Within rounds the adversarial images adv (N images, pixels in
// [0,1]) in place to 8 bits, values k/255, keeping each inside the budget
// b around its clean image in x0 (same length and number of images), as
// an attack's images are rounded before a defense or classifier sees them
// (ProtocolRelease, Rounded, and the 8-bit option of the evaluation
// suite):
//
//   - LInf: each pixel takes the nearest k/255 among the 8-bit values
//     inside [x0 - eps, x0 + eps] and [0, 1] (rounding, then clipping to
//     the ball in 8-bit steps). The set is not empty when eps is at least
//     half a step (1/510); below that, around a pixel off the 8-bit grid,
//     it is an error.
//   - L2Rel and L2Z (the squared distance weighted by 1/std^2 per
//     channel, on the normalized tensors): each pixel takes its nearest
//     k/255; when the image then lies outside the ball (radius
//     eps*||x0||_2, or eps*||z0||_2), the pixels whose nearest value is
//     farther from x0 than their other neighbouring 8-bit value (the one
//     towards x0) take that value instead, those shrinking the distance
//     most first, until the image is inside. Around an 8-bit x0 no pixel
//     so rounded lies farther from x0 than the attack left it, so an
//     image the attack left inside always ends inside. Around an x0 off
//     the grid, when that is not enough, pixels step on by whole levels
//     towards the 8-bit value nearest x0, largest gains first, until the
//     image is inside; it is an error when even the nearest 8-bit image
//     to x0 lies outside the ball.
//
// The budget then holds up to the float32 representation of k/255 (within
// 4e-7 of eps for LInf, a relative 1e-9 of the squared radius for L2).
// Rounding an image twice changes nothing. Errors: a *tensor.ShapeError
// (also for an L2Z normalization without one channel per channel of the
// images), an invalid budget (Budget.Validate), or no 8-bit image inside
// the budget (naming the image). Safe for concurrent use on distinct adv.
func Round8Within(adv, x0 *tensor.Tensor, b Budget) error {
	if adv == nil || x0 == nil || len(adv.Data) != len(x0.Data) || len(adv.Shape) == 0 || len(x0.Shape) == 0 || adv.Shape[0] != x0.Shape[0] {
		var want, got []int
		if x0 != nil {
			want = x0.Shape
		}
		if adv != nil {
			got = adv.Shape
		}
		return &tensor.ShapeError{Op: "attack: rounding to 8 bits", Want: want, Got: got}
	}
	if err := b.Validate(); err != nil {
		return err
	}
	n := adv.Shape[0]
	if n == 0 {
		return nil
	}
	d := len(adv.Data) / n
	if b.Norm == L2Z {
		if c := len(b.Normalization.Std); d%c != 0 || len(adv.Shape) == 4 && adv.Shape[1] != c {
			return &tensor.ShapeError{Op: "attack: rounding to 8 bits: normalization channels vs image", Want: []int{c}, Got: adv.Shape[1:]}
		}
	}
	return round8Images(adv.Data, x0.Data, n, d, b, nil)
}

// round8Images is Round8Within on n images of d values. For the L2 norms,
// r2 gives each image's squared radius in the budget's norm (nil: the
// budget's own, eps^2 ||x0||^2 or eps^2 ||z0||^2).
func round8Images(adv, x0 []float32, n, d int, b Budget, r2 []float64) error {
	w := b.zStd(d) // std per value, nil for L2Rel
	if w != nil {
		for j, s := range w {
			w[j] = 1 / (s * s)
		}
	}
	for i := 0; i < n; i++ {
		a, o := adv[i*d:(i+1)*d], x0[i*d:(i+1)*d]
		var err error
		switch b.Norm {
		case LInf:
			err = round8LInf(a, o, b.Eps)
		default:
			var rr float64
			switch {
			case r2 != nil:
				rr = r2[i] * (1 + l2Slack)
			case b.Norm == L2Z:
				z := b.Normalization.zNorm(o)
				rr = z * z * (b.Eps * b.Eps * (1 + l2Slack))
			default:
				for _, v := range o {
					rr += float64(v) * float64(v)
				}
				rr *= b.Eps * b.Eps * (1 + l2Slack)
			}
			err = round8L2(a, o, w, rr)
		}
		if err != nil {
			return fmt.Errorf("attack: rounding image %d to 8 bits inside %s: %w", i, b, err)
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

// l2Step is a candidate move of pixel j to the 8-bit value k/255, shrinking
// the squared distance by gain.
type l2Step struct {
	j    int
	k    float64
	gain float64
}

// round8L2 rounds a to 8 bits inside the ball of squared radius r2 around
// o, the squared distance weighted by w per value (nil: unweighted).
func round8L2(a, o []float32, w []float64, r2 float64) error {
	weight := func(j int) float64 {
		if w == nil {
			return 1
		}
		return w[j]
	}
	var dist2 float64
	var swaps []l2Step
	for j, v := range a {
		x := math.Min(255, math.Max(0, 255*float64(v)))
		near := math.Round(x)
		// The neighbouring 8-bit value on the other side of x.
		other := math.Floor(x)
		if other == near {
			other = math.Min(255, near+1)
		}
		dn, do := float64(o[j])-near/255, float64(o[j])-other/255
		wj := weight(j)
		dist2 += wj * dn * dn
		if g := wj * (dn*dn - do*do); g > 0 {
			swaps = append(swaps, l2Step{j, other, g})
		}
		a[j] = float32(near / 255)
	}
	slices.SortFunc(swaps, func(p, q l2Step) int { return cmp.Compare(q.gain, p.gain) })
	for _, s := range swaps {
		if dist2 <= r2 {
			return nil
		}
		a[s.j] = float32(s.k / 255)
		dist2 -= s.gain
	}
	if dist2 <= r2 {
		return nil
	}
	return round8Towards(a, o, weight, dist2, r2)
}

// round8Towards moves the 8-bit pixels of a by whole levels towards the
// 8-bit value nearest o, the move shrinking the weighted squared distance
// dist2 most first, until dist2 <= r2: the second phase of round8L2,
// reached only around a clean image off the 8-bit grid.
func round8Towards(a, o []float32, weight func(int) float64, dist2, r2 float64) error {
	next := func(j int) (l2Step, bool) {
		k, k0 := math.Round(255*float64(a[j])), math.Min(255, math.Max(0, math.Round(255*float64(o[j]))))
		if k == k0 {
			return l2Step{}, false
		}
		kn := k - 1
		if k < k0 {
			kn = k + 1
		}
		dc, dn := float64(o[j])-k/255, float64(o[j])-kn/255
		return l2Step{j, kn, weight(j) * (dc*dc - dn*dn)}, true
	}
	var h stepHeap
	for j := range a {
		if s, ok := next(j); ok {
			h = append(h, s)
		}
	}
	heap.Init(&h)
	for dist2 > r2 && h.Len() > 0 {
		s := heap.Pop(&h).(l2Step)
		a[s.j] = float32(s.k / 255)
		dist2 -= s.gain
		if s, ok := next(s.j); ok {
			heap.Push(&h, s)
		}
	}
	if dist2 > r2 {
		return fmt.Errorf("no 8-bit image inside the ball: even the 8-bit image nearest the clean one lies outside")
	}
	return nil
}

// stepHeap is a max-heap of steps by gain (ties: the lower pixel index).
type stepHeap []l2Step

func (h stepHeap) Len() int { return len(h) }
func (h stepHeap) Less(i, j int) bool {
	if h[i].gain != h[j].gain {
		return h[i].gain > h[j].gain
	}
	return h[i].j < h[j].j
}
func (h stepHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *stepHeap) Push(x any)   { *h = append(*h, x.(l2Step)) }
func (h *stepHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// Rounded returns a with its adversarial images rounded to 8 bits inside
// its budget (Round8Within) before they are measured: its Run runs a,
// rounds Result.Adv in place and computes the distances, the model's
// predictions and the success flags again on the rounded images, as the
// model sees them (one forward pass more, not counted in Passes). A
// universal perturbation (Universal), whose L2 budget is an average over
// its fitting images rather than a bound on each image, keeps each image
// within the perturbation's own norm (||v||_2, or ||v/std||_2 for L2Z) of
// its clean image instead. Its Name is a's followed by " (8-bit)", its
// Budget a's. Run fails when no 8-bit image fits the budget (see
// Round8Within). Its JSON encoding is a's (NewSet records the rounding in
// SetMeta.Round8). Rounded is safe for concurrent use when a is.
func Rounded(a Attack) Attack { return rounded{a} }

type rounded struct{ a Attack }

func (r rounded) Name() string   { return r.a.Name() + " (8-bit)" }
func (r rounded) Budget() Budget { return r.a.Budget() }
func (r rounded) Targeted() bool { return r.a.Targeted() }

func (r rounded) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	res, err := r.a.Run(ctx, m, x, labels)
	if err != nil {
		return nil, err
	}
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	bud := r.a.Budget()
	if err := bud.checkBudget(b); err != nil {
		return nil, err
	}
	var r2 []float64
	if u, ok := r.a.(*Universal); ok && bud.Norm != LInf {
		r2 = slices.Repeat([]float64{math.Pow(zDist(u.v.Data, make([]float32, len(u.v.Data)), bud.zStd(b.d)), 2)}, b.n)
	}
	if err := round8Images(res.Adv.Data, x.Data, b.n, b.d, bud, r2); err != nil {
		return nil, err
	}
	return finish(ctx, b, m, x, res.Adv, res.CleanPred, labels, r.a.Targeted(), res.Passes)
}

func (r rounded) MarshalJSON() ([]byte, error) { return json.Marshal(r.a) }

// IsRounded reports whether a rounds its images to 8 bits (Rounded).
func IsRounded(a Attack) bool {
	_, ok := a.(rounded)
	return ok
}
