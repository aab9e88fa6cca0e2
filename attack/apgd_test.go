package attack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// fixture10 is a trained 10-class classifier with its held-out set, for
// the losses that need more than the shared fixture's 3 classes.
var fix10 *fixture

func getFixture10(t testing.TB) *fixture {
	t.Helper()
	if fix10 != nil {
		return fix10
	}
	rng := rand.New(rand.NewPCG(13, 17))
	d := fixC * fixH * fixW
	protos := prototypes(rng, 10, d, 0.06)
	xtr, ytr := synth(rng, protos, 200, 0.03, 0.1, 0.9, fixC, fixH, fixW)
	xte, yte := synth(rng, protos, 60, 0.03, 0.1, 0.9, fixC, fixH, fixW)
	m := newMLP(rng, fixC, fixH, fixW, 16, 10)
	m.train(xtr, ytr, 200, 0.5)
	fix10 = &fixture{m: m, x: xte, labels: yte}
	return fix10
}

func TestFixture10Accuracy(t *testing.T) {
	f := getFixture10(t)
	acc := accuracyOf(t, f.m, f.x, f.labels)
	t.Logf("10-class clean test accuracy %.3f", acc)
	if acc < 0.9 {
		t.Fatalf("10-class test classifier accuracy %.3f, want >= 0.9", acc)
	}
}

func TestAPGDCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		steps int
		want  []int
	}{
		// p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99.
		{100, []int{22, 41, 57, 70, 80, 87, 93, 99}},
		{50, []int{11, 21, 29, 35, 40, 44, 47, 50}},
		{10, []int{3, 5, 6, 7, 8, 9, 10}},
		{1, []int{1}},
	} {
		if got := apgdCheckpoints(tc.steps); !slices.Equal(got, tc.want) {
			t.Errorf("apgdCheckpoints(%d) = %v, want %v", tc.steps, got, tc.want)
		}
	}
}

// TestAPGDLossGradients checks the row losses' dL/dz against central
// differences on logits with distinct gaps (away from the kinks of the
// sorting), and a few hand-computed values.
func TestAPGDLossGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name     string
		loss     Loss
		targeted bool
	}{
		{"ce", LossCE, false},
		{"ce targeted", LossCE, true},
		{"dlr", LossDLR, false},
		{"dlr-t", LossDLRTargeted, false},
		{"cw", LossCW, false},
		{"cw targeted", LossCW, true},
	} {
		f := apgdRowLoss(tc.loss, tc.targeted)
		for trial := 0; trial < 20; trial++ {
			k := 4 + trial%7
			z := make([]float32, k)
			for j := range z {
				// Distinct values at least 0.1 apart, shuffled.
				z[j] = float32(j)*0.5 + float32(rng.Float64()*0.3)
			}
			rng.Shuffle(k, func(a, b int) { z[a], z[b] = z[b], z[a] })
			y, tg := rng.IntN(k), rng.IntN(k)
			if trial%3 == 0 {
				y = top4(z)[0] // the label the top class, as on a clean image
			}
			g := make([]float32, k)
			for j := range g {
				g[j] = 7 // must be overwritten
			}
			f(z, y, tg, g)
			const h = 1e-3
			for j := range z {
				zp, zm := slices.Clone(z), slices.Clone(z)
				zp[j] += h
				zm[j] -= h
				num := (f(zp, y, tg, nil) - f(zm, y, tg, nil)) / float64(zp[j]-zm[j])
				if math.Abs(num-float64(g[j])) > 1e-3*math.Max(1, math.Abs(num)) {
					t.Fatalf("%s: z %v y %d t %d: dL/dz[%d] = %g, central difference %g", tc.name, z, y, tg, j, g[j], num)
				}
			}
		}
	}
	// Values: DLR of (3, 1, 2, 0) for y 0 is -(3-2)/(3-1); misclassified
	// (y 1) it is -(1-3)/(3-1) = 1. Targeted DLR, y 0, t 2:
	// -(3-2)/(3-(1+0)/2).
	z := []float32{3, 1, 2, 0}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"dlr correct", dlrLoss(z, 0, 0, nil), -0.5},
		{"dlr misclassified", dlrLoss(z, 1, 0, nil), 1},
		{"dlr-t", dlrTargetedLoss(z, 0, 2, nil), -1 / 2.5},
		{"dlr-t reached", dlrTargetedLoss(z, 2, 0, nil), 1 / 2.5},
		{"cw correct", apgdRowLoss(LossCW, false)(z, 0, 0, nil), 2 - 3},
		{"cw misclassified", apgdRowLoss(LossCW, false)(z, 1, 0, nil), 3 - 1},
		{"cw targeted", apgdRowLoss(LossCW, true)(z, 0, 2, nil), 2 - 3},
		{"cw target reached", apgdRowLoss(LossCW, true)(z, 0, 0, nil), 3 - 2},
		{"cw one class", cwMarginLoss([]float32{5}, 0, nil, 1), 0},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
		}
	}
}

// TestAPGDLossGradientModel checks the DLR and CW losses through a trained
// model: dL/dx from InputGrad with the APGD seed against central
// differences of the summed loss in x.
func TestAPGDLossGradientModel(t *testing.T) {
	f := getFixture10(t)
	const k = 10
	// Three images whose five largest logits are 0.1 apart or more, so
	// that the differences do not cross the kinks of the sorting.
	zall := accuracyLogits(t, f.m, f.x)
	x := tensor.New(3, fixC, fixH, fixW)
	var labels []int
	for i := 0; i < len(f.labels) && len(labels) < 3; i++ {
		row := slices.Clone(zall.Data[i*k : (i+1)*k])
		slices.Sort(row)
		slices.Reverse(row)
		if slices.ContainsFunc([]int{0, 1, 2, 3}, func(r int) bool { return row[r]-row[r+1] < 0.1 }) {
			continue
		}
		copy(x.Data[len(labels)*64:], f.x.Data[i*64:(i+1)*64])
		labels = append(labels, f.labels[i])
	}
	if len(labels) < 3 {
		t.Fatal("no three images with well separated logits")
	}
	z0 := accuracyLogits(t, f.m, x)
	for _, tc := range []struct {
		name string
		loss Loss
	}{{"dlr", LossDLR}, {"dlr-t", LossDLRTargeted}, {"cw", LossCW}} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultAPGDOptions()
			o.Loss = tc.loss
			s := newAPGDState(batch{n: 3, c: fixC, h: fixH, w: fixW, d: 64, k: k}, o, x.Data, labels, z0.ArgmaxRows(nil))
			for i := range s.ts {
				s.ts[i] = rankedClass(z0.Data[i*k:(i+1)*k], 2)
			}
			copy(s.cur, x.Data)
			loss, _, err := s.eval(context.Background(), f.m, []int{0, 1, 2}, true)
			if err != nil {
				t.Fatal(err)
			}
			total := func(x *tensor.Tensor) float64 {
				z := accuracyLogits(t, f.m, x)
				v := 0.0
				for i := range labels {
					v += s.loss(z.Data[i*k:(i+1)*k], s.ys[i], s.ts[i], nil)
				}
				return v
			}
			if sum := loss[0] + loss[1] + loss[2]; math.Abs(sum-total(x)) > 1e-9 {
				t.Fatalf("eval losses sum to %g, recomputed %g", sum, total(x))
			}
			gmax := 0.0
			for _, v := range s.grad[:3*64] {
				gmax = math.Max(gmax, math.Abs(float64(v)))
			}
			if gmax == 0 {
				t.Fatal("zero gradient")
			}
			for _, j := range []int{0, 9, 63, 64, 100, 130, 191} {
				xp, xm := x.Clone(), x.Clone()
				xp.Data[j] += 1e-3
				xm.Data[j] -= 1e-3
				num := (total(xp) - total(xm)) / float64(xp.Data[j]-xm.Data[j])
				if math.Abs(num-float64(s.grad[j])) > 1e-2*gmax {
					t.Errorf("dL/dx[%d] = %g, central difference %g (max |grad| %g)", j, s.grad[j], num, gmax)
				}
			}
		})
	}
}

func accuracyLogits(t testing.TB, m Model, x *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	z, err := m.Logits(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// checkBudget fails when an adversarial batch leaves [0,1] or the budget
// ball, or its reported figures differ from the measured ones.
func checkBudget(t *testing.T, name string, b Budget, x0 *tensor.Tensor, r *Result) {
	t.Helper()
	for j, v := range r.Adv.Data {
		if !(v >= 0 && v <= 1) {
			t.Fatalf("%s: adv pixel %d = %v outside [0,1]", name, j, v)
		}
	}
	dis, linf, err := Distances(r.Adv, x0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range dis {
		if dis[i] != r.Dissim[i] || linf[i] != r.LInf[i] {
			t.Fatalf("%s: image %d: reported (%g, %g), measured (%g, %g)", name, i, r.Dissim[i], r.LInf[i], dis[i], linf[i])
		}
		got := linf[i]
		if b.Norm == L2Rel {
			got = dis[i]
		}
		if got > b.Eps {
			t.Fatalf("%s: image %d: %s distance %.9g exceeds %g", name, i, b.Norm, got, b.Eps)
		}
	}
}

func newAPGDT(t *testing.T, o APGDOptions) *APGD {
	t.Helper()
	a, err := NewAPGD(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAPGDStrongerThanPGD compares APGD-CE with PGD (cross-entropy,
// random start) at the same number of steps and budget: APGD's robust
// accuracy must not be higher, on both norms.
func TestAPGDStrongerThanPGD(t *testing.T) {
	f := getFixture(t)
	for _, b := range []Budget{{Norm: LInf, Eps: 0.02}, {Norm: L2Rel, Eps: 0.03}} {
		const steps = 10
		po := DefaultPGDOptions()
		po.Budget, po.Steps = b, steps
		pgd, err := NewPGD(po)
		rP := mustRun(t, pgd, err, f.m, f)
		ao := DefaultAPGDOptions()
		ao.Budget, ao.Steps = b, steps
		apgd := newAPGDT(t, ao)
		rA := mustRun(t, apgd, nil, f.m, f)
		checkBudget(t, apgd.Name(), b, f.x, rA)
		accP, accA := rP.AdvAccuracy(f.labels), rA.AdvAccuracy(f.labels)
		t.Logf("%s: robust accuracy PGD %.3f (%d passes), APGD-CE %.3f (%d passes)", b, accP, rP.Passes, accA, rA.Passes)
		if accA > accP {
			t.Errorf("%s: APGD-CE robust accuracy %.3f above PGD's %.3f at %d steps", b, accA, accP, steps)
		}
		if accA >= accuracyOf(t, f.m, f.x, f.labels) {
			t.Errorf("%s: APGD-CE did not lower the accuracy", b)
		}
		if rA.Passes > steps {
			t.Errorf("%s: APGD ran %d passes, want at most %d", b, rA.Passes, steps)
		}
	}
}

// TestAPGDCWStrongerThanPGDCW compares APGD-CW with PGD on the same
// Carlini-Wagner margin loss (kappa 0, random start) at the same number of
// steps and budget, on the 3- and 10-class classifiers trained in the
// tests: APGD-CW's robust accuracy must not be higher, on both norms, and
// it must lower the clean accuracy.
func TestAPGDCWStrongerThanPGDCW(t *testing.T) {
	for _, fx := range []struct {
		name string
		f    *fixture
	}{{"3 classes", getFixture(t)}, {"10 classes", getFixture10(t)}} {
		f := fx.f
		clean := accuracyOf(t, f.m, f.x, f.labels)
		for _, b := range []Budget{{Norm: LInf, Eps: 0.02}, {Norm: L2Rel, Eps: 0.03}} {
			for _, steps := range []int{5, 10} {
				po := DefaultPGDOptions()
				po.Budget, po.Steps, po.Loss = b, steps, LossCW
				pgd, err := NewPGD(po)
				rP := mustRun(t, pgd, err, f.m, f)
				ao := DefaultAPGDOptions()
				ao.Budget, ao.Steps, ao.Loss = b, steps, LossCW
				apgd := newAPGDT(t, ao)
				rA := mustRun(t, apgd, nil, f.m, f)
				checkBudget(t, apgd.Name(), b, f.x, rA)
				accP, accA := rP.AdvAccuracy(f.labels), rA.AdvAccuracy(f.labels)
				t.Logf("%s %s %d steps: clean %.3f, robust accuracy PGD-CW %.3f, APGD-CW %.3f (%d passes)", fx.name, b, steps, clean, accP, accA, rA.Passes)
				if accA > accP {
					t.Errorf("%s %s: APGD-CW robust accuracy %.3f above PGD-CW's %.3f at %d steps", fx.name, b, accA, accP, steps)
				}
				if accA >= clean {
					t.Errorf("%s %s: APGD-CW did not lower the accuracy %.3f", fx.name, b, clean)
				}
				if rA.Passes > steps {
					t.Errorf("%s %s: APGD-CW ran %d passes, want at most %d", fx.name, b, rA.Passes, steps)
				}
			}
		}
	}
}

// TestAPGDBudgetsHold runs every loss on both norms, from interior and
// saturated images, and checks the ball, [0,1] and the success flags.
func TestAPGDBudgetsHold(t *testing.T) {
	f := getFixture10(t)
	inputs := []struct {
		name string
		x    *tensor.Tensor
	}{{"interior", f.x}, {"saturated", saturated(f)}}
	for _, in := range inputs {
		for _, b := range []Budget{{Norm: LInf, Eps: 0.02}, {Norm: LInf, Eps: 0.3}, {Norm: L2Rel, Eps: 0.03}, {Norm: L2Rel, Eps: 0.5}} {
			for _, loss := range APGDLosses {
				o := DefaultAPGDOptions()
				o.Budget, o.Steps, o.Loss, o.NTargetClasses = b, 10, loss, 3
				a := newAPGDT(t, o)
				r, err := a.Run(context.Background(), f.m, in.x, f.labels)
				if err != nil {
					t.Fatalf("%s: %v", a.Name(), err)
				}
				name := in.name + "/" + a.Name()
				checkBudget(t, name, b, in.x, r)
				for i, p := range r.AdvPred {
					if r.Success[i] != (p != f.labels[i]) {
						t.Fatalf("%s: image %d success %v with prediction %d, label %d", name, i, r.Success[i], p, f.labels[i])
					}
				}
				if b.Eps >= 0.3 && r.SuccessRate() < 0.9 {
					t.Errorf("%s: success %.3f at a large budget", name, r.SuccessRate())
				}
			}
		}
	}
}

// TestAPGDLosses compares the three losses at one budget on the 10-class
// model: each lowers the accuracy, APGD-T over 3 targets at least as much
// as APGD-DLR (its first run already attacks the runner-up class).
func TestAPGDLosses(t *testing.T) {
	f := getFixture10(t)
	clean := accuracyOf(t, f.m, f.x, f.labels)
	acc := map[Loss]float64{}
	for _, loss := range APGDLosses {
		o := DefaultAPGDOptions()
		o.Budget, o.Steps, o.Loss, o.NTargetClasses = Budget{Norm: LInf, Eps: 0.025}, 10, loss, 3
		a := newAPGDT(t, o)
		r := mustRun(t, a, nil, f.m, f)
		acc[loss] = r.AdvAccuracy(f.labels)
		t.Logf("%s: clean %.3f robust %.3f passes %d", a.Name(), clean, acc[loss], r.Passes)
		if acc[loss] >= clean {
			t.Errorf("%s did not lower the accuracy %.3f", a.Name(), clean)
		}
	}
	if acc[LossDLRTargeted] > acc[LossDLR]+0.05 {
		t.Errorf("APGD-T robust accuracy %.3f well above APGD-DLR's %.3f", acc[LossDLRTargeted], acc[LossDLR])
	}
}

// TestAPGDTargeted runs targeted APGD with the cross-entropy, the
// targeted DLR and the margin loss towards (y+1) mod 10.
func TestAPGDTargeted(t *testing.T) {
	f := getFixture10(t)
	targets := make([]int, len(f.labels))
	for i, y := range f.labels {
		targets[i] = (y + 1) % 10
	}
	for _, loss := range []Loss{LossCE, LossDLRTargeted, LossCW} {
		o := DefaultAPGDOptions()
		o.Budget, o.Steps, o.Loss, o.Targeted = Budget{Norm: L2Rel, Eps: 0.3}, 30, loss, true
		a := newAPGDT(t, o)
		r, err := a.Run(context.Background(), f.m, f.x, targets)
		if err != nil {
			t.Fatal(err)
		}
		checkBudget(t, a.Name(), o.Budget, f.x, r)
		checkTargetHits(t, fmt.Sprintf("%s (%s)", a.Name(), loss), r, targets)
	}
}

// TestAPGDStopEarly: without early stopping every image runs every step
// and keeps its highest-loss successful point, so no success is lost and
// the loss of the returned points is at least as high.
func TestAPGDStopEarly(t *testing.T) {
	f := getFixture(t)
	o := DefaultAPGDOptions()
	o.Budget, o.Steps = Budget{Norm: LInf, Eps: 0.012}, 20
	early := mustRun(t, newAPGDT(t, o), nil, f.m, f)
	o.StopEarly = false
	full := mustRun(t, newAPGDT(t, o), nil, f.m, f)
	checkBudget(t, "full", o.Budget, f.x, full)
	for i := range early.Success {
		if early.Success[i] && !full.Success[i] {
			t.Errorf("image %d: successful with StopEarly, not without", i)
		}
	}
	if early.Passes > full.Passes || full.Passes != o.Steps {
		t.Errorf("passes %d with StopEarly, %d without, want at most and exactly %d", early.Passes, full.Passes, o.Steps)
	}
	ce := func(r *Result) float64 {
		z := accuracyLogits(t, f.m, r.Adv)
		s := 0.0
		for i, y := range f.labels {
			if r.Success[i] {
				s += ceLoss(z.Data[i*fixK:(i+1)*fixK], y, nil, 1)
			}
		}
		return s
	}
	if ce(full) < ce(early) {
		t.Errorf("summed cross-entropy of the successful points %g without StopEarly, %g with", ce(full), ce(early))
	}
}

func TestAPGDSeedRestartsCancel(t *testing.T) {
	f := getFixture(t)
	run := func(seed uint64, restarts int) *Result {
		o := DefaultAPGDOptions()
		o.Budget, o.Steps, o.Seed, o.Restarts = Budget{Norm: LInf, Eps: 0.008}, 5, seed, restarts
		return mustRun(t, newAPGDT(t, o), nil, f.m, f)
	}
	a, b, c := run(5, 1), run(5, 1), run(6, 1)
	if !equalBits(a.Adv, b.Adv) {
		t.Error("APGD with the same seed gave different results")
	}
	if equalBits(a.Adv, c.Adv) {
		t.Error("APGD with different seeds gave identical results")
	}
	r3 := run(5, 3)
	for i := range a.Success {
		if a.Success[i] && !r3.Success[i] {
			t.Errorf("image %d: successful with 1 restart, not with 3", i)
		}
	}
	if r3.Passes <= a.Passes && r3.SuccessRate() < 1 {
		t.Errorf("3 restarts ran %d passes, 1 restart %d", r3.Passes, a.Passes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newAPGDT(t, DefaultAPGDOptions()).Run(ctx, f.m, f.x, f.labels); !errors.Is(err, context.Canceled) {
		t.Errorf("on a cancelled context: %v, want context.Canceled", err)
	}
}

func TestAPGDOptions(t *testing.T) {
	valid := DefaultAPGDOptions()
	for _, tc := range []struct {
		name  string
		edit  func(o *APGDOptions)
		field string // "" when valid
	}{
		{"default", func(o *APGDOptions) {}, ""},
		{"empty loss is CE", func(o *APGDOptions) { o.Loss = "" }, ""},
		{"targeted dlr-t", func(o *APGDOptions) { o.Loss, o.Targeted, o.NTargetClasses = LossDLRTargeted, true, 0 }, ""},
		{"no steps", func(o *APGDOptions) { o.Steps = 0 }, "Steps"},
		{"unknown loss", func(o *APGDOptions) { o.Loss = "hinge" }, "Loss"},
		{"cw", func(o *APGDOptions) { o.Loss = LossCW }, ""},
		{"targeted cw", func(o *APGDOptions) { o.Loss, o.Targeted = LossCW, true }, ""},
		{"rho 1", func(o *APGDOptions) { o.Rho = 1 }, "Rho"},
		{"rho NaN", func(o *APGDOptions) { o.Rho = math.NaN() }, "Rho"},
		{"negative restarts", func(o *APGDOptions) { o.Restarts = -1 }, "Restarts"},
		{"no target classes", func(o *APGDOptions) { o.Loss, o.NTargetClasses = LossDLRTargeted, 0 }, "NTargetClasses"},
		{"targeted dlr", func(o *APGDOptions) { o.Loss, o.Targeted = LossDLR, true }, "Loss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.edit(&o)
			_, err := NewAPGD(o)
			wantOptionErr(t, err, tc.field)
		})
	}
	if _, err := NewAPGD(APGDOptions{Budget: Budget{Norm: LInf, Eps: 2}, Steps: 1, Rho: 0.5}); !errors.As(err, new(*BudgetError)) {
		t.Errorf("budget 2: %v, want a *BudgetError", err)
	}
	// Too few classes for the loss: the 3-class fixture and the targeted DLR.
	o := valid
	o.Loss = LossDLRTargeted
	f := getFixture(t)
	if _, err := newAPGDT(t, o).Run(context.Background(), f.m, f.x, f.labels); !errors.As(err, new(*OptionError)) {
		t.Errorf("APGD-T on 3 classes: %v, want an *OptionError", err)
	}
	for _, c := range []struct {
		loss Loss
		name string
	}{{LossCE, "APGD-CE-linf0.031"}, {LossDLR, "APGD-DLR-linf0.031"}, {LossDLRTargeted, "APGD-T-linf0.031"}, {LossCW, "APGD-CW-linf0.031"}} {
		o := valid
		o.Loss = c.loss
		a := newAPGDT(t, o)
		if a.Name() != c.name {
			t.Errorf("Name() = %q, want %q", a.Name(), c.name)
		}
		js, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var back APGDOptions
		if err := json.Unmarshal(js, &back); err != nil || back != o {
			t.Errorf("options round trip: %+v, %v; want %+v", back, err, o)
		}
	}
	for _, s := range []string{"", "CE", "dlr", "DLR-T", "dlr-targeted", "cw", "CW"} {
		if _, err := ParseAPGDLoss(s); err != nil {
			t.Errorf("ParseAPGDLoss(%q): %v", s, err)
		}
	}
	if _, err := ParseAPGDLoss("hinge"); err == nil {
		t.Error(`ParseAPGDLoss("hinge") succeeded`)
	}
}

// wantOptionErr fails unless err is nil (field "") or an *OptionError on
// the field.
func wantOptionErr(t *testing.T, err error, field string) {
	t.Helper()
	var oe *OptionError
	if field == "" && err != nil {
		t.Fatalf("unexpected error %v", err)
	}
	if field != "" && (!errors.As(err, &oe) || oe.Field != field) {
		t.Fatalf("error %v, want an *OptionError on %s", err, field)
	}
}

// checkTargetHits checks a targeted result's success flags against the
// predictions and fails when fewer than 3/4 of the images reach their
// target.
func checkTargetHits(t *testing.T, name string, r *Result, targets []int) {
	t.Helper()
	hit := 0
	for i, p := range r.AdvPred {
		if r.Success[i] != (p == targets[i]) {
			t.Fatalf("%s: image %d success %v with prediction %d, target %d", name, i, r.Success[i], p, targets[i])
		}
		if r.Success[i] {
			hit++
		}
	}
	t.Logf("%s targeted: %d/%d reach the target", name, hit, len(targets))
	if hit < len(targets)*3/4 {
		t.Errorf("%s targeted: only %d/%d reach the target", name, hit, len(targets))
	}
}
