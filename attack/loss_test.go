package attack

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// TestMarginSeed checks the CW margin seed on hand-made logits: the +1/-1
// pair on the right logits, nothing beyond kappa, the first of tied other
// logits, the unclamped side at the kink, and the targeted analogue.
func TestMarginSeed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		z        []float32
		label    int
		targeted bool
		kappa    float64
		want     []float32
	}{
		{"correct: push the runner-up up, the label down", []float32{3, 1, 2}, 0, false, 0, []float32{-1, 0, 1}},
		{"runner-up below the label", []float32{0.5, 4, -2}, 1, false, 0, []float32{1, -1, 0}},
		{"misclassified: clamped at kappa 0", []float32{1, 3, 2}, 0, false, 0, []float32{0, 0, 0}},
		{"misclassified by less than kappa: keeps pushing", []float32{1, 3, 2}, 0, false, 5, []float32{-1, 1, 0}},
		{"misclassified by exactly kappa: unclamped side", []float32{1, 3, 2}, 0, false, 2, []float32{-1, 1, 0}},
		{"tie between label and runner-up at kappa 0", []float32{2, 2, 0}, 0, false, 0, []float32{-1, 1, 0}},
		{"tied runners-up: the first", []float32{5, 2, 2}, 0, false, 0, []float32{-1, 1, 0}},
		{"tied runners-up after the label", []float32{1, 7, 1}, 1, false, 0, []float32{1, -1, 0}},
		{"negative logits", []float32{-3, -1, -2}, 1, false, 0, []float32{0, -1, 1}},
		{"targeted: push the target up, the best other down", []float32{3, 1, 2}, 1, true, 0, []float32{-1, 1, 0}},
		{"targeted: reached, clamped", []float32{3, 5, 2}, 1, true, 0, []float32{0, 0, 0}},
		{"targeted: reached by less than kappa", []float32{3, 5, 2}, 1, true, 10, []float32{-1, 1, 0}},
		{"targeted: tie with the target", []float32{4, 4, 0}, 1, true, 0, []float32{-1, 1, 0}},
		{"one class: no margin", []float32{7}, 0, false, 0, []float32{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := len(tc.z)
			z := &tensor.Tensor{Shape: []int{1, k}, Data: tc.z}
			g := tensor.New(1, k)
			for i := range g.Data {
				g.Data[i] = 9 // the seed must overwrite every entry
			}
			marginSeed([]int{tc.label}, k, tc.targeted, tc.kappa)(z, g)
			for j, w := range tc.want {
				if g.Data[j] != w {
					t.Fatalf("g = %v, want %v", g.Data, tc.want)
				}
			}
		})
	}
	// A batch: each row independently, summed loss.
	z := &tensor.Tensor{Shape: []int{2, 3}, Data: []float32{3, 1, 2, 1, 3, 2}}
	g := tensor.New(2, 3)
	marginSeed([]int{0, 0}, 3, false, 0)(z, g)
	if want := []float32{-1, 0, 1, 0, 0, 0}; !slices.Equal(g.Data, want) {
		t.Errorf("batch g = %v, want %v", g.Data, want)
	}
}

// marginLoss is the summed loss marginSeed differentiates, computed from
// the logits in float64.
func marginLoss(z *tensor.Tensor, labels []int, k int, targeted bool, kappa float64) float64 {
	s := 0.0
	for i, y := range labels {
		row := z.Data[i*k : (i+1)*k]
		_, other := bestOther(row, y)
		m := float64(other) - float64(row[y])
		if targeted {
			m = -m
		}
		s += math.Min(m, kappa)
	}
	return s
}

// TestMarginGradientNN checks the margin seed through a real nn
// classifier (untrained vgg-small at 32 px): dL/dx from InputGrad against
// central differences of the summed margin loss, untargeted and targeted.
func TestMarginGradientNN(t *testing.T) {
	if testing.Short() {
		t.Skip("vgg-small forward/backward passes")
	}
	m, x, labels := vggSmall(t, 3)
	const k = 10
	ctx := context.Background()
	targets := make([]int, len(labels))
	for i, y := range labels {
		targets[i] = (y + 3) % k
	}
	logits := func(x *tensor.Tensor) *tensor.Tensor {
		z, err := m.Logits(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	// The finite differences are meaningful away from the max's kinks:
	// check that the runner-up leads the next logit by a clear gap.
	z0 := logits(x)
	for _, c := range []struct {
		name     string
		labels   []int
		targeted bool
	}{{"untargeted", labels, false}, {"targeted", targets, true}} {
		t.Run(c.name, func(t *testing.T) {
			for i, y := range c.labels {
				row := append([]float32(nil), z0.Data[i*k:(i+1)*k]...)
				j, v := bestOther(row, y)
				row[j] = float32(math.Inf(-1))
				_, v2 := bestOther(row, y)
				if v-v2 < 1e-3 {
					t.Skipf("image %d: runner-up %d leads by only %g, too close to a kink", i, j, v-v2)
				}
			}
			zg, g, err := m.InputGrad(ctx, x, marginSeed(c.labels, k, c.targeted, 0))
			if err != nil {
				t.Fatal(err)
			}
			if !equalBits(zg, z0) {
				t.Fatal("InputGrad logits differ from Logits")
			}
			gmax := 0.0
			for _, v := range g.Data {
				gmax = math.Max(gmax, math.Abs(float64(v)))
			}
			if gmax == 0 {
				t.Fatal("zero gradient on correctly classified images")
			}
			for _, j := range []int{0, 500, 1500, 3072 + 100, 3072 + 2000, 2*3072 + 3000} {
				xp, xm := x.Clone(), x.Clone()
				xp.Data[j] += 3e-3 // 1e-2 crosses ReLU kinks at some pixels
				xm.Data[j] -= 3e-3
				num := (marginLoss(logits(xp), c.labels, k, c.targeted, 0) - marginLoss(logits(xm), c.labels, k, c.targeted, 0)) / float64(xp.Data[j]-xm.Data[j])
				if math.Abs(num-float64(g.Data[j])) > 0.05*gmax {
					t.Errorf("dL/dx[%d] = %g, central difference %g (max |grad| %g)", j, g.Data[j], num, gmax)
				}
			}
		})
	}
}

// scaled multiplies a model's logits by s: the same decisions, but with a
// large s the softmax saturates in float64 and the cross-entropy's
// gradient is exactly zero, while the margin's sign steps are unchanged.
type scaled struct {
	Model
	s float32
}

func (m scaled) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	z, err := m.Model.Logits(ctx, x)
	if err != nil {
		return nil, err
	}
	scaleBy(z.Data, m.s)
	return z, nil
}

func (m scaled) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	var zs *tensor.Tensor
	_, g, err := m.Model.InputGrad(ctx, x, func(z, g *tensor.Tensor) {
		zs = z.Clone()
		scaleBy(zs.Data, m.s)
		seed(zs, g)
		scaleBy(g.Data, m.s) // d(s z)/dz
	})
	if err != nil {
		return nil, nil, err
	}
	return zs, g, nil
}

func scaleBy(v []float32, s float32) {
	for i := range v {
		v[i] *= s
	}
}

// margins returns max_{j!=y} z_j - z_y per image.
func margins(t *testing.T, m Model, x *tensor.Tensor, labels []int) []float64 {
	t.Helper()
	z, err := m.Logits(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	k := m.NumClasses()
	out := make([]float64, len(labels))
	for i, y := range labels {
		_, o := bestOther(z.Data[i*k:(i+1)*k], y)
		out[i] = float64(o) - float64(z.Data[i*k+y])
	}
	return out
}

// TestPGDCWLoss runs PGD with the margin loss on the trained test
// classifier: it raises every correctly classified image's margin towards
// misclassification, succeeds at a budget where PGD does, never leaves
// the budget, and keeps succeeding when the logits are scaled so far that
// the cross-entropy's gradient vanishes (where PGD on the cross-entropy
// stays at its random start).
func TestPGDCWLoss(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	run := func(m Model, loss Loss) *Result {
		o := DefaultPGDOptions()
		o.Budget, o.Steps, o.Loss = Budget{Norm: LInf, Eps: 0.1}, 10, loss
		a, err := NewPGD(o)
		if err != nil {
			t.Fatal(err)
		}
		r, err := a.Run(ctx, m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range r.LInf {
			if v > 0.1 {
				t.Fatalf("%s: image %d at L-inf %g, above the budget", a.Name(), i, v)
			}
		}
		return r
	}
	before := margins(t, f.m, f.x, f.labels)
	cw, ce := run(f.m, LossCW), run(f.m, LossCE)
	after := margins(t, f.m, cw.Adv, f.labels)
	for i := range before {
		if before[i] < 0 && !(after[i] > before[i]) {
			t.Errorf("image %d: margin %g -> %g, want it raised", i, before[i], after[i])
		}
		if cw.Success[i] != (after[i] > 0) && after[i] != 0 {
			t.Errorf("image %d: success %v with margin %g", i, cw.Success[i], after[i])
		}
	}
	t.Logf("success at L-inf 0.1: CW loss %.3f, cross-entropy %.3f", cw.SuccessRate(), ce.SuccessRate())
	if cw.SuccessRate() < 0.9 || cw.SuccessRate() < ce.SuccessRate()-0.05 {
		t.Errorf("CW-loss PGD success %.3f, want >= 0.9 and about PGD's %.3f", cw.SuccessRate(), ce.SuccessRate())
	}
	// Logits scaled by 1e4: the same classifier, saturated softmax.
	sm := scaled{f.m, 1e4}
	cwS, ceS := run(sm, LossCW), run(sm, LossCE)
	t.Logf("logits x 1e4: CW loss %.3f, cross-entropy %.3f", cwS.SuccessRate(), ceS.SuccessRate())
	if cwS.SuccessRate() < 0.9 {
		t.Errorf("CW-loss PGD on scaled logits: success %.3f, want >= 0.9 (scale-invariant steps)", cwS.SuccessRate())
	}
	if ceS.SuccessRate() > cwS.SuccessRate()-0.3 {
		t.Errorf("cross-entropy PGD on scaled logits: success %.3f, want far below the CW loss's %.3f (vanishing gradient)", ceS.SuccessRate(), cwS.SuccessRate())
	}
}

// TestPGDLossOptions covers the Loss and Kappa options: names, JSON
// encoding (the default's is pinned: cache keys are built from it),
// validation errors and ParseLoss.
func TestPGDLossOptions(t *testing.T) {
	def := DefaultPGDOptions()
	b, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	const pinned = `{"Budget":{"norm":"linf","eps":0.031},"Steps":20,"StepFrac":0.1,"RandomStart":true,"Restarts":1,"Seed":1,"Targeted":false}`
	if string(b) != pinned {
		t.Errorf("default PGD options encode as\n%s\nwant (as before the Loss field)\n%s", b, pinned)
	}
	cwo := def
	cwo.Loss, cwo.Kappa = LossCW, 2
	if b, _ := json.Marshal(cwo); !strings.Contains(string(b), `"Loss":"cw","Kappa":2`) {
		t.Errorf("CW options encode as %s, want the loss and kappa", b)
	}
	var back PGDOptions
	if err := json.Unmarshal(b, &back); err != nil || back != def {
		t.Errorf("default options round trip: %+v, %v", back, err)
	}
	for _, tc := range []struct {
		loss Loss
		name string
	}{{"", "PGD-linf0.031"}, {LossCE, "PGD-linf0.031"}, {LossCW, "PGD-CW-linf0.031"}} {
		o := def
		o.Loss = tc.loss
		a, err := NewPGD(o)
		if err != nil {
			t.Fatalf("loss %q: %v", tc.loss, err)
		}
		if a.Name() != tc.name {
			t.Errorf("loss %q: name %q, want %q", tc.loss, a.Name(), tc.name)
		}
	}
	for _, tc := range []struct {
		name  string
		loss  Loss
		kappa float64
		field string
	}{
		{"unknown loss", "hinge", 0, "Loss"},
		{"upper-case loss", "CW", 0, "Loss"},
		{"kappa NaN", LossCW, math.NaN(), "Kappa"},
		{"kappa negative", LossCW, -1, "Kappa"},
		{"kappa infinite", LossCW, math.Inf(1), "Kappa"},
		{"kappa with the cross-entropy", LossCE, 1, "Kappa"},
		{"kappa with the default loss", "", 1, "Kappa"},
	} {
		o := def
		o.Loss, o.Kappa = tc.loss, tc.kappa
		_, err := NewPGD(o)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Field != tc.field || oe.Attack != "PGD" {
			t.Errorf("%s: %v, want an *OptionError on PGD's %s", tc.name, err, tc.field)
		}
	}
	_, err = NewPGD(PGDOptions{Budget: def.Budget, Steps: 1, StepFrac: 0.1, Loss: "hinge"})
	if err == nil || !strings.Contains(err.Error(), `"hinge"`) || !strings.Contains(err.Error(), `"cw"`) {
		t.Errorf("unknown loss error %q, want it to name the loss and the known ones", err)
	}
	for _, tc := range []struct {
		in   string
		want Loss
		ok   bool
	}{{"", LossCE, true}, {"ce", LossCE, true}, {"CE", LossCE, true}, {" cw ", LossCW, true}, {"CW", LossCW, true}, {"xent", "", false}, {"margin", "", false}} {
		got, err := ParseLoss(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseLoss(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
