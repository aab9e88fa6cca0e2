package evaluate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/tensor"
)

func TestWorstCase(t *testing.T) {
	T, F := true, false
	cases := []struct {
		name     string
		clean    []bool
		outcomes []Outcome
		want     []bool
	}{
		{"no attack keeps the clean verdict", []bool{T, F, T}, nil, []bool{T, F, T}},
		{"one attack", []bool{T, T, T}, []Outcome{{Correct: []bool{T, F, T}}}, []bool{T, F, T}},
		{"robust only if correct under every attack", []bool{T, T, T, T},
			[]Outcome{{Correct: []bool{T, F, T, T}}, {Correct: []bool{T, T, F, T}}}, []bool{T, F, F, T}},
		{"misclassified without attack stays non-robust", []bool{F, T}, []Outcome{{Correct: []bool{T, T}}}, []bool{F, T}},
		{"out of scope does not count", []bool{T, T, T},
			[]Outcome{{Correct: []bool{F, F, T}, Scope: []bool{F, T, T}}}, []bool{T, F, T}},
		{"scoped and full attacks combine", []bool{T, T, T},
			[]Outcome{{Correct: []bool{F, T, F}, Scope: []bool{F, T, T}}, {Correct: []bool{F, T, T}}}, []bool{F, T, F}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := WorstCase(c.clean, c.outcomes...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	if _, err := WorstCase([]bool{T, T}, Outcome{Correct: []bool{T}}); err == nil {
		t.Error("an outcome of the wrong length gave no error")
	}
	if _, err := WorstCase([]bool{T, T}, Outcome{Correct: []bool{T, T}, Scope: []bool{T}}); err == nil {
		t.Error("a scope of the wrong length gave no error")
	}
}

func TestBrokenOnlyBy(t *testing.T) {
	T, F := true, false
	clean := []bool{T, T, T, F, T}
	grads := []Outcome{{Correct: []bool{T, F, T, F, T}}}
	// Breaks image 0 (robust to the gradient attacks), 1 (already broken),
	// 3 (misclassified clean); image 4 is outside its scope.
	ctl := Outcome{Correct: []bool{F, F, T, F, F}, Scope: []bool{T, T, T, T, F}}
	count, scope, err := brokenOnlyBy(ctl, clean, grads)
	if err != nil {
		t.Fatal(err)
	}
	if count != 1 || scope != 2 {
		t.Errorf("count %d scope %d, want 1 and 2", count, scope)
	}
}

// fastOptions are small settings for the linear test classifiers.
func fastOptions() Options {
	o := DefaultOptions()
	o.PGDSteps, o.APGDSteps, o.SquareQueries, o.EOTDraws, o.EvalDraws = 10, 20, 300, 1, 1
	o.IterationSteps = []int{1, 3}
	o.Batch = 16
	return o
}

func failedIDs(r *Report) []string {
	var ids []string
	for _, c := range r.Failed() {
		ids = append(ids, c.ID)
	}
	return ids
}

// TestChecks runs each automatic check on a classifier or defense built to
// trip it and on a sound one, where none may fire.
func TestChecks(t *testing.T) {
	lin := newLinear(1)
	cases := []struct {
		name   string
		target Target
		opts   func(*Options)
		want   []string // checks that must fail
		quiet  bool     // no check may fail
	}{
		{name: "sound: linear classifier, identity defense",
			target: Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity}), DefenseName: "identity"}, quiet: true},
		{name: "sound: linear classifier alone", target: Target{Model: lin}, quiet: true},
		{name: "masked gradients: the route returns zero",
			target: Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity}), Routes: []Route{{Name: "masked", Backward: zeroBackward}}},
			want:   []string{CheckGradients, CheckSquare, CheckTransfer, CheckLargeBudget, CheckUnbounded}},
		{name: "a defense that destroys accuracy",
			target: Target{Model: lin, NewDefense: defenseOf(funcTransform{"gray", gray}), DefenseName: "gray"},
			want:   []string{CheckWeakensClean, CheckWeakensRobust}},
		{name: "gradients obfuscated with use: more iterations help",
			// Honest for the gradient probe (1 call) and the 1- and 3-step
			// probes, wrong for the 10-step one.
			target: Target{Model: &wearing{linear: lin, honest: 1 + 1 + 3}},
			opts:   func(o *Options) { o.Attacks = []string{Noise} },
			want:   []string{CheckIterations}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x, y := testData(lin, 40, 2)
			o := fastOptions()
			if c.opts != nil {
				c.opts(&o)
			}
			rep, err := Run(context.Background(), c.target, x, y, o)
			if err != nil {
				t.Fatal(err)
			}
			failed := failedIDs(rep)
			if c.quiet && len(failed) > 0 {
				for _, ck := range rep.Failed() {
					t.Errorf("check %s fired on a sound evaluation: %s (%s)", ck.ID, ck.Detail, ck.Rule)
				}
			}
			for _, id := range c.want {
				if !slices.Contains(failed, id) {
					for _, ck := range rep.Checks {
						if ck.ID == id {
							t.Errorf("check %s did not fire: %s: %s", id, ck.Status, ck.Detail)
						}
					}
				}
			}
		})
	}
}

// TestSoundReport checks the figures of a sound evaluation: every check
// present, every attack of the suite run on both classifiers, the worst
// case no better than any attack, and robust accuracy below clean.
func TestSoundReport(t *testing.T) {
	lin := newLinear(1)
	x, y := testData(lin, 40, 2)
	rep, err := Run(context.Background(), Target{Model: lin, ModelName: "linear", NewDefense: defenseOf(funcTransform{"identity", identity}), DefenseName: "identity"}, x, y, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range rep.Checks {
		ids = append(ids, c.ID)
	}
	for _, id := range []string{CheckGradients, CheckSquare, CheckTransfer, CheckNoise, CheckIterations, CheckLargeBudget, CheckUnbounded, CheckWeakensClean, CheckWeakensRobust} {
		if !slices.Contains(ids, id) {
			t.Errorf("check %s missing", id)
		}
	}
	if len(rep.Budgets) != 1 {
		t.Fatalf("%d budgets", len(rep.Budgets))
	}
	b := rep.Budgets[0]
	// 6 gradient attacks + Square + noise undefended; the same + transfer defended.
	if len(b.Attacks) != 8+9 {
		t.Errorf("%d attacks, want 17", len(b.Attacks))
	}
	if b.Attacks[0].Subject != subjDefended {
		t.Errorf("the defended classifier's attacks come first, got %s", b.Attacks[0].Subject)
	}
	for _, a := range b.Attacks {
		if a.Subject == subjDefended && a.Accuracy.Value < b.Worst.Value {
			t.Errorf("%s: accuracy %g below the worst case %g", a.Label(), a.Accuracy.Value, b.Worst.Value)
		}
		if gradientAttack(a.Attack) && a.GradImages == 0 {
			t.Errorf("%s ran no gradient pass", a.Label())
		}
		if a.Attack == Square && (a.GradImages != 0 || a.ForwardImages == 0) {
			t.Errorf("Square: %d gradient and %d forward image-passes, want none and some", a.GradImages, a.ForwardImages)
		}
		if a.Attacked != 40 {
			t.Errorf("%s attacked %d images, want all 40", a.Label(), a.Attacked)
		}
	}
	if rep.Clean.Value != 1 || !(b.Worst.Value < 1) {
		t.Errorf("clean %g, worst case %g: want 1 and below 1", rep.Clean.Value, b.Worst.Value)
	}
	for _, w := range []func(*bytes.Buffer, *Report) error{
		func(buf *bytes.Buffer, r *Report) error { return WriteMarkdown(buf, r) },
		func(buf *bytes.Buffer, r *Report) error { return WriteHTML(buf, r) },
	} {
		var buf bytes.Buffer
		if err := w(&buf, rep); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"APGD-T (bpda)", "APGD-CW (bpda)", "transfer from undefended", "Automatic checks", "worst case", "PGD 10 steps"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("report lacks %q", want)
			}
		}
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Budgets[0].Worst != b.Worst || back.Options.PGDSteps != 10 {
		t.Errorf("JSON round trip: worst %v, PGD steps %d", back.Budgets[0].Worst, back.Options.PGDSteps)
	}
}

// TestRandomizedWorstCase: a randomized defense evaluated with more draws
// keeps fewer images, each needing every draw right.
func TestRandomizedWorstCase(t *testing.T) {
	lin := newLinear(1)
	x, y := testData(lin, 40, 2)
	tgt := Target{Model: lin, NewDefense: func(seed uint64) (attack.Transform, error) {
		return &coinFlip{rng: rand.New(rand.NewPCG(seed, 1))}, nil
	}}
	clean := map[int]float64{}
	for _, draws := range []int{1, 8} {
		o := fastOptions()
		o.Attacks, o.EvalDraws = []string{Noise}, draws
		rep, err := Run(context.Background(), tgt, x, y, o)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Randomized {
			t.Error("randomized defense not reported as such")
		}
		clean[draws] = rep.CleanDefended.Value
	}
	// The gray image is one class: about 1/2 + 1/8 of the images survive one
	// draw, about 1/4 (those of the gray image's class) every draw of eight.
	if !(clean[8] < clean[1]) || clean[8] > 0.5 {
		t.Errorf("clean accuracy with 1 draw %g, with 8 draws %g: want fewer correct with more draws", clean[1], clean[8])
	}
}

// TestResume: a second run with the same directory reloads every attack
// and reports the same figures; a damaged entry is recomputed.
func TestResume(t *testing.T) {
	lin := newLinear(3)
	x, y := testData(lin, 20, 4)
	o := fastOptions()
	o.Dir = t.TempDir()
	o.Attacks = []string{PGDCE, APGDCE, Square, Transfer, Noise}
	tgt := Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity})}
	first, err := Run(context.Background(), tgt, x, y, o)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(o.Dir)
	if len(entries) == 0 {
		t.Fatal("nothing cached")
	}
	if err := os.WriteFile(filepath.Join(o.Dir, entries[0].Name(), storeResult), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := Run(context.Background(), tgt, x, y, o)
	if err != nil {
		t.Fatal(err)
	}
	recomputed := 0
	for i, b := range second.Budgets {
		for j, a := range b.Attacks {
			if !a.Cached {
				recomputed++
			}
			if a.Accuracy != first.Budgets[i].Attacks[j].Accuracy {
				t.Errorf("%s: %v then %v", a.Label(), first.Budgets[i].Attacks[j].Accuracy, a.Accuracy)
			}
		}
	}
	for _, p := range second.Probes {
		if !p.Cached {
			recomputed++
		}
	}
	if recomputed != 1 {
		t.Errorf("%d attacks recomputed, want the 1 damaged", recomputed)
	}
	o.Seed = 2
	third, err := Run(context.Background(), tgt, x, y, o)
	if err != nil {
		t.Fatal(err)
	}
	if third.Budgets[0].Attacks[0].Cached {
		t.Error("another seed reused a cached attack")
	}
}

// TestEarlyPGD: freezing images at their first success breaks every image
// plain PGD breaks (same start) and costs fewer gradient passes.
func TestEarlyPGD(t *testing.T) {
	for _, restarts := range []int{1, 3} {
		t.Run(fmt.Sprintf("restarts=%d", restarts), func(t *testing.T) { testEarlyPGD(t, restarts) })
	}
}

func testEarlyPGD(t *testing.T, restarts int) {
	lin := newLinear(5)
	x, y := testData(lin, 30, 6)
	o := attack.DefaultPGDOptions()
	o.Steps, o.Budget, o.Restarts = 20, attack.Budget{Norm: attack.LInf, Eps: 0.04}, restarts
	p, err := attack.NewPGD(o)
	if err != nil {
		t.Fatal(err)
	}
	plain := &counter{Model: lin}
	rp, err := p.Run(context.Background(), plain, x, y)
	if err != nil {
		t.Fatal(err)
	}
	early := &counter{Model: lin}
	re, err := earlyPGD{p}.Run(context.Background(), early, x, y)
	if err != nil {
		t.Fatal(err)
	}
	ep, pp := 0, 0
	for i := range y {
		if rp.Success[i] {
			pp++
			if !re.Success[i] {
				t.Errorf("image %d: broken by PGD, not by early-stopping PGD", i)
			}
		}
		if re.Success[i] {
			ep++
		}
		if re.LInf[i] > 0.04+1e-6 {
			t.Errorf("image %d: L-inf %g above the budget", i, re.LInf[i])
		}
	}
	if ep == 0 || early.grad >= plain.grad {
		t.Errorf("early stopping broke %d images with %d gradient image-passes, plain PGD %d with %d", ep, early.grad, pp, plain.grad)
	}
	// Its results are what the model says of them.
	z, _ := lin.Logits(context.Background(), re.Adv)
	for i, p := range z.ArgmaxRows(nil) {
		if (p != y[i]) != re.Success[i] || p != re.AdvPred[i] {
			t.Errorf("image %d: predicted %d, reported %d (success %v)", i, p, re.AdvPred[i], re.Success[i])
		}
	}
}

func TestRunErrors(t *testing.T) {
	lin := newLinear(1)
	x, y := testData(lin, 4, 2)
	bad := x.Clone()
	bad.Data[3] = 1.5
	badOpts := DefaultOptions()
	badOpts.Attacks = []string{"fgsm"}
	cases := []struct {
		name   string
		target Target
		x      *tensor.Tensor
		y      []int
		o      Options
	}{
		{"no classifier", Target{}, x, y, DefaultOptions()},
		{"pixel outside [0,1]", Target{Model: lin}, bad, y, DefaultOptions()},
		{"label out of range", Target{Model: lin}, x, []int{0, 1, 2, 9}, DefaultOptions()},
		{"labels count", Target{Model: lin}, x, y[:3], DefaultOptions()},
		{"unknown attack", Target{Model: lin}, x, y, badOpts},
		{"duplicate routes", Target{Model: lin, Routes: []Route{RouteBPDA, RouteBPDA}}, x, y, DefaultOptions()},
		{"wrong image shape", Target{Model: lin}, tensor.New(4, 3, 8, 8), y, DefaultOptions()},
	}
	for _, c := range cases {
		if _, err := Run(context.Background(), c.target, c.x, c.y, c.o); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Target{Model: lin}, x, y, fastOptions()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		f    func(*Options)
	}{
		{"no budget", func(o *Options) { o.Budgets = nil }},
		{"bad budget", func(o *Options) { o.Budgets = []attack.Budget{{Norm: attack.LInf, Eps: 2}} }},
		{"twice the same budget", func(o *Options) { o.Budgets = append(o.Budgets, o.Budgets[0]) }},
		{"no attack", func(o *Options) { o.Attacks = nil }},
		{"zero steps", func(o *Options) { o.PGDSteps = 0 }},
		{"iteration probe not below the steps", func(o *Options) { o.IterationSteps = []int{20} }},
		{"no eval draw", func(o *Options) { o.EvalDraws = 0 }},
		{"p_init", func(o *Options) { o.SquarePInit = 0 }},
		{"threshold", func(o *Options) { o.Thresholds.BeatFrac = 2 }},
		{"zero large budget", func(o *Options) { o.Thresholds.LargeEps = 0 }},
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.f(&o)
		if o.Validate() == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestRandomNoise(t *testing.T) {
	lin := newLinear(1)
	x, _ := testData(lin, 5, 2)
	for _, b := range []attack.Budget{{Norm: attack.LInf, Eps: 0.03}, {Norm: attack.L2Rel, Eps: 0.04}} {
		y := RandomNoise(x, b, 1)
		if !slices.Equal(y.Data, RandomNoise(x, b, 1).Data) || slices.Equal(y.Data, RandomNoise(x, b, 2).Data) {
			t.Errorf("%s: not a function of the seed", b)
		}
		for i := 0; i < 5; i++ {
			var lInf, d2, n2 float64
			for j := i * testD; j < (i+1)*testD; j++ {
				d := float64(y.Data[j]) - float64(x.Data[j])
				lInf = max(lInf, max(d, -d))
				d2 += d * d
				n2 += float64(x.Data[j]) * float64(x.Data[j])
				if y.Data[j] < 0 || y.Data[j] > 1 {
					t.Fatalf("pixel %g outside [0,1]", y.Data[j])
				}
			}
			if b.Norm == attack.LInf && lInf > b.Eps+1e-6 || b.Norm == attack.L2Rel && d2 > b.Eps*b.Eps*n2*(1+1e-5) {
				t.Errorf("%s: image %d moved beyond the budget", b, i)
			}
		}
	}
}

// TestTransferSource: the transfer attack feeds, per image, the first
// example that fooled the undefended classifier, also when Cascade leaves
// each later attack only the images the earlier ones missed. Behind the
// identity every image fooled on the undefended classifier is fooled.
func TestTransferSource(t *testing.T) {
	lin := newLinear(1)
	x, y := testData(lin, 40, 2)
	o := fastOptions()
	o.Cascade = true
	o.Attacks = []string{PGDCE, APGDCE, APGDDLR, Transfer}
	rep, err := Run(context.Background(), Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity})}, x, y, o)
	if err != nil {
		t.Fatal(err)
	}
	var undefended []Outcome
	var transfer *AttackResult
	for _, a := range rep.Budgets[0].Attacks {
		switch {
		case a.Subject == subjUndefended:
			undefended = append(undefended, a.Outcome)
		case a.Attack == Transfer:
			transfer = a
		}
	}
	if transfer == nil {
		t.Fatal("no transfer attack")
	}
	robust, err := WorstCase(slices.Repeat([]bool{true}, 40), undefended...)
	if err != nil {
		t.Fatal(err)
	}
	fooled := 0
	for i, r := range robust {
		if !r {
			fooled++
			if transfer.Correct[i] {
				t.Errorf("image %d: fooled the undefended classifier, not the transfer attack behind the identity", i)
			}
		}
	}
	if fooled == 0 {
		t.Fatal("no image fooled: the test is void")
	}
	if undefended[1].Accuracy().Value > undefended[0].Accuracy().Value {
		t.Errorf("cascade: the second attack's accuracy %g above the first's %g", undefended[1].Accuracy().Value, undefended[0].Accuracy().Value)
	}
}
