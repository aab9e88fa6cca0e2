package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/progress"
)

func TestEvaluateFlags(t *testing.T) {
	model := t.TempDir()
	out := t.TempDir()
	base := func() evaluateFlags {
		f := evaluateFlags{opts: evaluate.DefaultOptions(), linf: "8/255", attacks: "pgd-ce,square", routes: "bpda", iters: "1,5", cluster: "vote"}
		f.load.Model, f.load.Out, f.vanilla = model, out, true
		return f
	}
	cases := []struct {
		name string
		f    func(*evaluateFlags)
		ok   bool
	}{
		{"vanilla", func(*evaluateFlags) {}, true},
		{"no model", func(f *evaluateFlags) { f.load.Model = "" }, false},
		{"no out", func(f *evaluateFlags) { f.load.Out = "" }, false},
		{"neither defense nor vanilla", func(f *evaluateFlags) { f.vanilla = false }, false},
		{"defense and vanilla", func(f *evaluateFlags) { f.load.Defense = "jpeg" }, false},
		{"fraction budget", func(f *evaluateFlags) { f.linf = "4/255"; f.l2 = "0.04" }, true},
		{"budget above 1", func(f *evaluateFlags) { f.linf = "2" }, false},
		{"no budget", func(f *evaluateFlags) { f.linf = "" }, false},
		{"unknown attack", func(f *evaluateFlags) { f.attacks = "pgd-ce,fgsm" }, false},
		{"unknown route", func(f *evaluateFlags) { f.routes = "magic" }, false},
		{"exact routes", func(f *evaluateFlags) { f.routes = "bpda,implicit,unrolled" }, true},
		{"iteration steps dropped at or above pgd-steps", func(f *evaluateFlags) { f.opts.PGDSteps = 3; f.iters = "1,5" }, true},
		{"bad iteration steps", func(f *evaluateFlags) { f.iters = "x" }, false},
		{"bad threshold", func(f *evaluateFlags) { f.opts.Thresholds.BeatFrac = 1.5 }, false},
		{"route twice", func(f *evaluateFlags) { f.routes = "bpda,implicit,bpda" }, false},
		{"gradient options", func(f *evaluateFlags) {
			f.grad.CGTol, f.grad.CGMaxIter, f.grad.Iterations, f.cluster = 1e-3, 30, 20, "eot"
		}, true},
		{"negative cg tolerance", func(f *evaluateFlags) { f.grad.CGTol = -1 }, false},
		{"negative cg iterations", func(f *evaluateFlags) { f.grad.CGMaxIter = -1 }, false},
		{"negative unrolled iterations", func(f *evaluateFlags) { f.grad.Iterations = -1 }, false},
		{"unknown cluster gradient", func(f *evaluateFlags) { f.cluster = "all" }, false},
		{"round8", func(f *evaluateFlags) { f.opts.Round8 = true }, true},
		{"universal without a defense", func(f *evaluateFlags) { f.load.Universal = true }, false},
		{"universal with a defense", func(f *evaluateFlags) { f.vanilla, f.load.Defense, f.load.Universal = false, "defenses/cifar10", true }, true},
	}
	for _, c := range cases {
		f := base()
		c.f(&f)
		err := f.check()
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
		var ue usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("%s: %v is not a usage error", c.name, err)
		}
	}
	f := base()
	f.linf, f.l2 = "8/255", "0.04"
	if err := f.check(); err != nil || len(f.opts.Budgets) != 2 || f.opts.Budgets[0].Eps != 8.0/255 {
		t.Errorf("budgets %v, err %v", f.opts.Budgets, err)
	}
}

// TestRunEvaluate runs the command end to end on an untrained classifier
// behind a deterministic baseline with tiny settings: with lenient
// thresholds it succeeds, with strict ones it fails with checksFailed
// (exit code 3), and both times it writes the three reports; the second
// run reloads every attack.
func TestRunEvaluate(t *testing.T) {
	model := savedClassifier(t)
	out := filepath.Join(t.TempDir(), "eval")
	flags := func(strict bool) evaluateFlags {
		f := evaluateFlags{opts: evaluate.DefaultOptions(), linf: "8/255", attacks: strings.Join(evaluate.AttackNames, ","), routes: "bpda", iters: "1"}
		f.load.Model, f.load.Out, f.load.Defense, f.load.Data, f.load.N, f.load.SubsetSeed = model, out, "jpeg", "sample:cifar10", 10, 1
		o := &f.opts
		o.PGDSteps, o.APGDSteps, o.SquareQueries, o.Batch = 2, 2, 4, 10
		th := &o.Thresholds
		if strict {
			th.VanishRatio, th.VanishFrac, th.BeatFrac, th.IterTol, th.LargeMaxAcc, th.UnboundedMinSuccess, th.WeakenTol = 1, 0, 0, 0, 0, 1, 0
		} else {
			th.VanishRatio, th.VanishFrac, th.BeatFrac, th.IterTol, th.LargeMaxAcc, th.UnboundedMinSuccess, th.WeakenTol = 1e-9, 1, 1, 1, 1, 0, 1
		}
		if err := f.check(); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var stdout bytes.Buffer
	if err := runEvaluate(context.Background(), flags(false), &stdout, progress.Nop); err != nil {
		t.Fatalf("lenient thresholds: %v\n%s", err, stdout.String())
	}
	for _, want := range []string{"evaluating JPEG", "APGD-CW (bpda)", "worst case over every attack", "check passed", "total time", "wrote " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	err := runEvaluate(context.Background(), flags(true), &stdout, progress.Nop)
	var cf checksFailed
	if !errors.As(err, &cf) || exitCode(context.Background(), err) != exitChecks {
		t.Fatalf("strict thresholds: %v (exit %d), want failed checks\n%s", err, exitCode(context.Background(), err), stdout.String())
	}
	rep := readEvaluateReport(t, out)
	if len(rep.Failed()) != len(cf.ids) || rep.Images != 10 || rep.Environment["cpu"] == "" {
		t.Errorf("report: %d failed checks (error: %d), %d images, cpu %q", len(rep.Failed()), len(cf.ids), rep.Images, rep.Environment["cpu"])
	}
	for _, b := range rep.Budgets {
		for _, a := range b.Attacks {
			if !a.Cached {
				t.Errorf("%s on %s: not reloaded by the second run", a.Label(), a.Subject)
			}
		}
	}
	for _, name := range []string{"report.md", "report.html"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestEvaluateGradientOptions runs the exact routes through a small STL
// (cluster) with the gradient flags: the report records each route's
// settings, and another CG cap recomputes the implicit route's attacks
// only. With --universal the same directory's STL is evaluated, under
// other keys.
func TestEvaluateGradientOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a defense and attacks through the exact routes")
	}
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	out, model := filepath.Join(dir, "eval"), savedClassifier(t)
	evaluateOnce := func(cgMax int, universal bool) *evaluate.Report {
		t.Helper()
		f := evaluateFlags{opts: evaluate.DefaultOptions(), linf: "8/255", attacks: "pgd-ce", routes: "implicit,unrolled", iters: "1", cluster: "vote"}
		f.load.Model, f.load.Out, f.load.Defense, f.load.Data, f.load.N, f.load.SubsetSeed = model, out, def, "sample:cifar10", 3, 1
		f.load.Universal = universal
		f.opts.PGDSteps, f.opts.Batch = 2, 3
		f.grad.CGTol, f.grad.CGMaxIter, f.grad.Iterations = 1e-4, cgMax, 5
		th := &f.opts.Thresholds
		th.VanishRatio, th.VanishFrac, th.BeatFrac, th.IterTol, th.LargeMaxAcc, th.UnboundedMinSuccess, th.WeakenTol = 1e-9, 1, 1, 1, 1, 0, 1
		if err := f.check(); err != nil {
			t.Fatal(err)
		}
		var stdout bytes.Buffer
		if err := runEvaluate(context.Background(), f, &stdout, progress.Nop); err != nil {
			t.Fatalf("%v\n%s", err, stdout.String())
		}
		return readEvaluateReport(t, out)
	}
	first := evaluateOnce(20, false)
	compact := func(m json.RawMessage) string {
		var b bytes.Buffer
		if err := json.Compact(&b, m); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := compact(first.RouteSettings["implicit"]); got != `{"cg_max_iter":20,"cg_tol":0.0001,"cluster":"vote"}` {
		t.Errorf("implicit route settings %s", got)
	}
	if got := compact(first.RouteSettings["unrolled"]); got != `{"cluster":"vote","iterations":5}` {
		t.Errorf("unrolled route settings %s", got)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || !strings.Contains(string(md), `implicit {"cg_max_iter":20`) {
		t.Errorf("report.md does not state the implicit route's settings (%v)", err)
	}
	second := evaluateOnce(21, false)
	for _, a := range second.Budgets[0].Attacks {
		if want := a.Route != "implicit"; a.Cached != want {
			t.Errorf("%s on %s: cached %v after the CG cap changed, want %v", a.Label(), a.Subject, a.Cached, want)
		}
	}
	uni := evaluateOnce(21, true)
	if first.Defense != "STL (cluster)" || uni.Defense != "STL" {
		t.Errorf("defenses %q and, with --universal, %q; want STL (cluster) and STL", first.Defense, uni.Defense)
	}
	for _, a := range uni.Budgets[0].Attacks {
		if a.Subject == evaluate.SubjectDefended && a.Cached {
			t.Errorf("%s through STL: reloaded from STL (cluster)'s", a.Label())
		}
	}
}

// readEvaluateReport reads the report.json stl evaluate wrote into out.
func readEvaluateReport(t *testing.T, out string) *evaluate.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep evaluate.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}
