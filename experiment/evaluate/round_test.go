package evaluate

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// on8Bits reports whether v is k/255 exactly (as float32).
func on8Bits(v float32) bool {
	return v == float32(math.Round(255*float64(v))/255)
}

// checkRounded fails unless every image of adv is on the 8-bit grid and
// inside the budget b around x0 (up to the slack round8 documents).
func checkRounded(t *testing.T, what string, adv, x0 *tensor.Tensor, b attack.Budget) {
	t.Helper()
	n := adv.Shape[0]
	d := len(adv.Data) / n
	for i := 0; i < n; i++ {
		a, o := adv.Data[i*d:(i+1)*d], x0.Data[i*d:(i+1)*d]
		var linf, dist2, norm2 float64
		for j := range a {
			if !on8Bits(a[j]) {
				t.Fatalf("%s: image %d pixel %d = %v is not k/255", what, i, j, a[j])
			}
			e := float64(a[j]) - float64(o[j])
			linf, dist2, norm2 = max(linf, math.Abs(e)), dist2+e*e, norm2+float64(o[j])*float64(o[j])
		}
		switch b.Norm {
		case attack.LInf:
			if linf > b.Eps+1e-6 {
				t.Errorf("%s: image %d: L-inf %g above %g", what, i, linf, b.Eps)
			}
		case attack.L2Rel:
			if r := math.Sqrt(dist2 / norm2); r > b.Eps*(1+1e-6) {
				t.Errorf("%s: image %d: dissimilarity %g above %g", what, i, r, b.Eps)
			}
		}
	}
}

// grid8 returns n images of 1 x 8 x 8 pixels k/255, seeded.
func grid8(n int, seed uint64) *tensor.Tensor {
	x, _ := testData(newLinear(seed), n, seed)
	attack.Round8(x.Data)
	return x
}

func TestRound8(t *testing.T) {
	x0 := grid8(6, 1)
	offGrid, _ := testData(newLinear(1), 6, 1)
	cases := []struct {
		name    string
		b       attack.Budget
		x0      *tensor.Tensor
		perturb float64 // uniform perturbation in [-perturb, perturb], then clipped to [0, 1]
		ok      bool
	}{
		{"linf 8/255, inside", attack.Budget{Norm: attack.LInf, Eps: 8.0 / 255}, x0, 8.0 / 255, true},
		{"linf 8/255, rounding would cross the ball", attack.Budget{Norm: attack.LInf, Eps: 8.0 / 255}, offGrid, 8.0 / 255, true},
		{"linf 3.5/255, a budget off the grid", attack.Budget{Norm: attack.LInf, Eps: 3.5 / 255}, x0, 3.5 / 255, true},
		{"linf 0.4/255 around an off-grid image: no 8-bit value", attack.Budget{Norm: attack.LInf, Eps: 0.4 / 255}, offGrid, 0.4 / 255, false},
		{"l2 0.04", attack.Budget{Norm: attack.L2Rel, Eps: 0.04}, x0, 0.1, true},
		{"l2 0.005: most pixels rounded towards x0", attack.Budget{Norm: attack.L2Rel, Eps: 0.005}, x0, 0.1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			adv := RandomNoise(c.x0, attack.Budget{Norm: attack.LInf, Eps: c.perturb}, 3)
			if c.b.Norm == attack.L2Rel { // project onto the L2 ball, as an attack leaves it
				projectL2(adv, c.x0, c.b.Eps)
			}
			err := round8(adv, c.x0, c.b)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok %v", err, c.ok)
			}
			if err != nil {
				return
			}
			checkRounded(t, c.name, adv, c.x0, c.b)
			again := adv.Clone()
			if err := round8(again, c.x0, c.b); err != nil || !tensorEqual(again, adv) {
				t.Errorf("rounding twice changed the image (err %v)", err)
			}
		})
	}
	if err := round8(x0.Clone(), x0, attack.Budget{Norm: attack.L2Z, Eps: 0.04}); err == nil {
		t.Error("an l2z budget gave no error")
	}
	if err := round8(x0.Clone(), x0.Batch(0, 2), DefaultBudget); err == nil {
		t.Error("mismatched shapes gave no error")
	}
}

// projectL2 scales each image's perturbation onto the ball of normalized
// L2 radius eps when outside.
func projectL2(adv, x0 *tensor.Tensor, eps float64) {
	n := adv.Shape[0]
	d := len(adv.Data) / n
	for i := 0; i < n; i++ {
		a, o := adv.Data[i*d:(i+1)*d], x0.Data[i*d:(i+1)*d]
		var dist2, norm2 float64
		for j := range a {
			e := float64(a[j]) - float64(o[j])
			dist2, norm2 = dist2+e*e, norm2+float64(o[j])*float64(o[j])
		}
		if s := eps * math.Sqrt(norm2) / math.Sqrt(dist2); s < 1 {
			for j := range a {
				a[j] = float32(float64(o[j]) + 0.999*s*(float64(a[j])-float64(o[j])))
			}
		}
	}
}

func tensorEqual(a, b *tensor.Tensor) bool {
	for i := range a.Data {
		if a.Data[i] != b.Data[i] {
			return false
		}
	}
	return len(a.Data) == len(b.Data)
}

// TestRunRound8 evaluates 8-bit images with and without Options.Round8:
// rounded, every image the suite judged (kept in Options.Dir) is k/255 and
// inside its budget at L-infinity and L2; unrounded, some are not on the
// grid, and the rounded attacks are cached under other keys.
func TestRunRound8(t *testing.T) {
	lin := newLinear(5)
	x := grid8(24, 5)
	z, _ := lin.Logits(context.Background(), x)
	y := z.ArgmaxRows(nil)
	tgt := Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity})}
	budgets := []attack.Budget{DefaultBudget, {Norm: attack.L2Rel, Eps: 0.05}}
	offGrid := map[bool]int{}
	keys := map[string]bool{}
	for _, round := range []bool{false, true} {
		o := fastOptions()
		o.Budgets, o.Round8, o.Dir = budgets, round, t.TempDir()
		o.SquareQueries = 50
		rep, err := Run(context.Background(), tgt, x, y, o)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(o.Dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("nothing kept in %s (%v)", o.Dir, err)
		}
		for _, e := range entries {
			if keys[e.Name()] {
				t.Errorf("%s: the same key with and without rounding", e.Name())
			}
			keys[e.Name()] = true
			adv, err := npy.ReadFile(filepath.Join(o.Dir, e.Name(), storeAdv))
			if err != nil {
				t.Fatal(err)
			}
			b := DefaultBudget
			switch {
			case strings.Contains(e.Name(), "l20.05"):
				b = budgets[1]
			case strings.Contains(e.Name(), "large-budget"):
				b = attack.Budget{Norm: attack.LInf, Eps: o.Thresholds.LargeEps}
			case strings.Contains(e.Name(), "unbounded"):
				b = attack.Budget{Norm: attack.LInf, Eps: UnboundedEps}
			}
			if round {
				checkRounded(t, e.Name(), adv, x, b)
				continue
			}
			for _, v := range adv.Data {
				if !on8Bits(v) {
					offGrid[round]++
					break
				}
			}
		}
		if round && !rep.Options.Round8 {
			t.Error("the report's options do not record the rounding")
		}
	}
	if offGrid[false] == 0 {
		t.Error("without rounding every attack's images were on the 8-bit grid: the test cannot tell")
	}
}
