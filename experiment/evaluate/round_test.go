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
// inside the budget b around x0 (up to the slack attack.Round8Within
// documents).
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
