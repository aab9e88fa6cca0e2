package attack

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// on8Bits reports whether v is k/255 exactly (as float32).
func on8Bits(v float32) bool { return v == float32(math.Round(255*float64(v))/255) }

// checkInBudget fails unless every image of adv is on the 8-bit grid and
// inside b around x0, measured as the budget's norm measures it (radius r2
// squared per image for the L2 norms when given).
func checkInBudget(t *testing.T, what string, adv, x0 *tensor.Tensor, b Budget, r2 []float64) {
	t.Helper()
	n := adv.Shape[0]
	d := len(adv.Data) / n
	std := b.zStd(d)
	for i := 0; i < n; i++ {
		a, o := adv.Data[i*d:(i+1)*d], x0.Data[i*d:(i+1)*d]
		for j, v := range a {
			if !on8Bits(v) {
				t.Fatalf("%s: image %d pixel %d = %v is not k/255", what, i, j, v)
			}
		}
		switch {
		case b.Norm == LInf:
			if _, l := distances(a, o); l > b.Eps+5e-7 {
				t.Errorf("%s: image %d: L-inf %g above %g", what, i, l, b.Eps)
			}
		case r2 != nil:
			if dz := zDist(a, o, std); dz*dz > r2[i]*(1+1e-6) {
				t.Errorf("%s: image %d: distance %g above %g", what, i, dz, math.Sqrt(r2[i]))
			}
		default:
			if dz, r := zDist(a, o, std), radii(b, o, 1, d)[0]; dz > r*(1+1e-6) {
				t.Errorf("%s: image %d: distance %g above the radius %g (%s)", what, i, dz, r, b)
			}
		}
	}
}

// roundImages returns n images of 3 x 8 x 8 pixels, uniform in [0.05,
// 0.95], on the 8-bit grid when grid.
func roundImages(rng *rand.Rand, n int, grid bool) *tensor.Tensor {
	x := tensor.New(n, 3, 8, 8)
	for j := range x.Data {
		x.Data[j] = 0.05 + 0.9*rng.Float32()
	}
	if grid {
		Round8(x.Data)
	}
	return x
}

// perturbed returns x0 with a fraction frac of its pixels (every one when
// frac is 0) moved uniformly by up to spread, then projected into b as the
// attacks project (project), so that many images lie on the budget's
// boundary.
func perturbed(rng *rand.Rand, x0 *tensor.Tensor, b Budget, spread, frac float64) *tensor.Tensor {
	adv := x0.Clone()
	for j := range adv.Data {
		if frac == 0 || rng.Float64() < frac {
			adv.Data[j] += float32(spread * (2*rng.Float64() - 1))
		}
	}
	n := x0.Shape[0]
	d := len(x0.Data) / n
	project(b, adv.Data, x0.Data, radii(b, x0.Data, n, d), d)
	return adv
}

// TestRound8Within checks the 8-bit rounding of adversarial images on
// every norm, around clean images on and off the 8-bit grid: every image
// ends on the grid and inside its budget, rounding twice changes nothing,
// and it fails (naming the image) only where no 8-bit image fits.
func TestRound8Within(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	z := &Normalization{Mean: []float64{0.49, 0.48, 0.45}, Std: []float64{0.25, 0.24, 0.26}}
	linf8 := Budget{Norm: LInf, Eps: 8.0 / 255}
	cases := []struct {
		name   string
		b      Budget
		grid   bool
		spread float64 // perturbation before projecting into b
		frac   float64 // the fraction of pixels perturbed (0: all)
		ok     bool
	}{
		{"linf 8/255 on the grid", linf8, true, 8.0 / 255, 0, true},
		{"linf 8/255 off the grid: plain rounding would cross the ball", linf8, false, 8.0 / 255, 0, true},
		{"linf 0.031, a budget off the grid (at most 7/255 on it)", Budget{Norm: LInf, Eps: 0.031}, true, 0.031, 0, true},
		{"linf 0.4/255 off the grid: no 8-bit value", Budget{Norm: LInf, Eps: 0.4 / 255}, false, 0.4 / 255, 0, false},
		{"l2 0.04 on the grid", Budget{Norm: L2Rel, Eps: 0.04}, true, 0.1, 0, true},
		{"l2 0.005 on the grid: most pixels rounded towards x0", Budget{Norm: L2Rel, Eps: 0.005}, true, 0.1, 0, true},
		{"l2 0.003 off the grid", Budget{Norm: L2Rel, Eps: 0.003}, false, 0.1, 0, true},
		{"l2 0.003 off the grid, a sparse perturbation: pixels step on past their neighbours", Budget{Norm: L2Rel, Eps: 0.003}, false, 0.3, 0.1, true},
		{"l2 0.0005 off the grid: even the nearest 8-bit image is outside", Budget{Norm: L2Rel, Eps: 0.0005}, false, 0.1, 0, false},
		{"l2z 0.04 on the grid", Budget{Norm: L2Z, Eps: 0.04, Normalization: z}, true, 0.1, 0, true},
		{"l2z 0.008 off the grid", Budget{Norm: L2Z, Eps: 0.008, Normalization: z}, false, 0.1, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x0 := roundImages(rng, 12, c.grid)
			adv := perturbed(rng, x0, c.b, c.spread, c.frac)
			err := Round8Within(adv, x0, c.b)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok %v", err, c.ok)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "image 0") {
					t.Errorf("the error names no image: %v", err)
				}
				return
			}
			checkInBudget(t, c.name, adv, x0, c.b, nil)
			again := adv.Clone()
			if err := Round8Within(again, x0, c.b); err != nil || !slices.Equal(again.Data, adv.Data) {
				t.Errorf("rounding twice changed the images (err %v)", err)
			}
		})
	}
	x0 := roundImages(rng, 2, true)
	for _, bad := range []struct {
		name     string
		adv, x0  *tensor.Tensor
		b        Budget
		contains string
	}{
		{"shapes", x0.Clone(), x0.Batch(0, 1), linf8, "shape"},
		{"budget", x0.Clone(), x0, Budget{Norm: LInf, Eps: 2}, "epsilon"},
		{"normalization channels", x0.Clone(), x0, Budget{Norm: L2Z, Eps: 0.04, Normalization: &Normalization{Mean: []float64{0, 0}, Std: []float64{1, 1}}}, "channels"},
	} {
		if err := Round8Within(bad.adv, bad.x0, bad.b); err == nil || !strings.Contains(err.Error(), bad.contains) {
			t.Errorf("%s: err = %v, want one mentioning %q", bad.name, err, bad.contains)
		}
	}
}

// TestRound8WithinKeepsGridImages: an 8-bit image already inside its
// budget is left as it is (rounding moves nothing that need not move).
func TestRound8WithinKeepsGridImages(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 2))
	for _, b := range []Budget{{Norm: LInf, Eps: 8.0 / 255}, {Norm: L2Rel, Eps: 0.04}} {
		x0 := roundImages(rng, 6, true)
		adv := perturbed(rng, x0, b, 0.1, 0)
		if err := Round8Within(adv, x0, b); err != nil {
			t.Fatal(err)
		}
		want := adv.Clone()
		if err := Round8Within(adv, x0, b); err != nil || !slices.Equal(adv.Data, want.Data) {
			t.Errorf("%s: an 8-bit image inside the budget moved (err %v)", b, err)
		}
	}
}

// TestRounded checks the 8-bit wrapper: its images are 8-bit and inside the
// attack's budget, its figures are those of the rounded images (distances,
// predictions, success), the release step of 8/255 survives the rounding
// on 8-bit clean images, and its name says so while its budget and
// encoding are the attack's.
func TestRounded(t *testing.T) {
	f := getFixture(t)
	x0 := eightBit(f)
	a, _ := releaseAttack(t, PaperFGSM008)
	r := Rounded(a)
	res, err := r.Run(context.Background(), f.m, x0, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	checkInBudget(t, "FGSM-0.08 under release", res.Adv, x0, a.Budget(), nil)
	dissim, lInf, err := Distances(res.Adv, x0)
	if err != nil {
		t.Fatal(err)
	}
	z, err := f.m.Logits(context.Background(), res.Adv)
	if err != nil {
		t.Fatal(err)
	}
	pred := z.ArgmaxRows(nil)
	if !slices.Equal(dissim, res.Dissim) || !slices.Equal(lInf, res.LInf) || !slices.Equal(pred, res.AdvPred) {
		t.Error("the figures are not those of the rounded images")
	}
	for i, p := range pred {
		if res.Success[i] != (p != f.labels[i]) {
			t.Errorf("image %d: success %v with prediction %d, label %d", i, res.Success[i], p, f.labels[i])
		}
	}
	for i, l := range res.LInf {
		if math.Abs(l-8.0/255) > 1e-6 {
			t.Errorf("image %d: L-infinity %v after rounding, want 8/255", i, l)
		}
	}
	want, _ := json.Marshal(a)
	js, err := json.Marshal(r)
	if err != nil || string(js) != string(want) || r.Name() != a.Name()+" (8-bit)" || r.Budget() != a.Budget() || !IsRounded(r) || IsRounded(a) {
		t.Errorf("name %q, budget %v, encoding %s (want %s), %v", r.Name(), r.Budget(), js, want, err)
	}
}

// TestRoundedBudgets runs rounded attacks at L-infinity and L2 budgets
// around images off the 8-bit grid (where plain rounding leaves an
// L-infinity ball by up to half a level) and a universal perturbation at
// an L2 budget (an average, not a bound per image): every image ends on
// the grid, inside the attack's budget (the universal one within the
// perturbation's norm of its clean image), and rounding again changes
// nothing.
func TestRoundedBudgets(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	for _, b := range []Budget{{Norm: LInf, Eps: 0.031}, {Norm: L2Rel, Eps: 0.04}} {
		o := DefaultPGDOptions()
		o.Budget, o.Steps = b, 5
		p, err := NewPGD(o)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Rounded(p).Run(ctx, f.m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		checkInBudget(t, "PGD "+b.String(), res.Adv, f.x, b, nil)
		again := res.Adv.Clone()
		if err := Round8Within(again, f.x, b); err != nil || !slices.Equal(again.Data, res.Adv.Data) {
			t.Errorf("%s: rounding again changed the images (err %v)", b, err)
		}
	}
	n := f.x.Shape[0]
	d := len(f.x.Data) / n
	v := tensor.New(append([]int{1}, f.x.Shape[1:]...)...)
	rng := rand.New(rand.NewPCG(1, 1))
	for j := range v.Data {
		v.Data[j] = float32(0.05 * rng.NormFloat64())
	}
	b := Budget{Norm: L2Rel, Eps: 0.06}
	u, err := NewUniversal(&UAPFit{V: v}, b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Rounded(u).Run(ctx, f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	nv := l2(v.Data)
	checkInBudget(t, "universal", res.Adv, f.x, b, slices.Repeat([]float64{nv * nv}, n))
	beyond := 0
	for i := 0; i < n; i++ {
		if dist2(res.Adv.Data[i*d:(i+1)*d], f.x.Data[i*d:(i+1)*d]) > b.Eps*l2(f.x.Data[i*d:(i+1)*d]) {
			beyond++
		}
	}
	if beyond == 0 {
		t.Error("no universal image lies beyond eps*||x0||: the test cannot tell the universal radius from the per-image one")
	}
}
