package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
)

// savedClassifier writes an untrained, seeded vgg-small to a temporary
// directory: enough to exercise the command's wiring.
func savedClassifier(t *testing.T) string {
	t.Helper()
	c := nn.DefaultClassifierConfig()
	c.Threads = 1
	m, err := nn.NewClassifier(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := nn.Save(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunAttack(t *testing.T) {
	model := savedClassifier(t)
	out := filepath.Join(t.TempDir(), "adv")
	f := attackFlags{Opts: experiment.AttackOptions{Model: model, Data: "sample:cifar10", Split: "test", N: 6, SubsetSeed: 1,
		Batch: 4, EOT: 1, Out: out}, Method: "fgsm", Budget: 0.08}
	var stdout bytes.Buffer
	if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FGSM-0.08 on 6 images", "success rate", "accuracy: clean", "wrote " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	s, err := attack.LoadSet(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Adv.Shape[0] != 6 || len(s.Meta.Indices) != 6 || s.Meta.Budget != (attack.Budget{Norm: attack.L2Rel, Eps: 0.08}) {
		t.Errorf("saved set: shape %v, %d indices, budget %v", s.Adv.Shape, len(s.Meta.Indices), s.Meta.Budget)
	}
	for i, d := range s.Meta.Dissim {
		if d > 0.08*(1+1e-5) {
			t.Errorf("image %d: dissimilarity %g above the budget", i, d)
		}
	}
}

// TestRunAttackBPDA attacks through a randomized defense (BPDA with EOT)
// and evaluates a deterministic one gray-box, targeted.
func TestRunAttackBPDA(t *testing.T) {
	if testing.Short() {
		t.Skip("vgg-small passes")
	}
	model := savedClassifier(t)
	cases := []struct {
		name string
		f    attackFlags
		want []string
	}{
		{"bpda-eot", attackFlags{Method: "pgd", Steps: 2, Restarts: 1, Opts: experiment.AttackOptions{Defense: "deflect", BPDA: true, EOT: 2}},
			[]string{"via BPDA(Pixel deflection) EOT x2", "accuracy through Pixel deflection"}},
		{"gray-box-targeted", attackFlags{Method: "fgsm", Opts: experiment.AttackOptions{Defense: "jpeg", Targeted: true, EOT: 1}},
			[]string{"FGSM-0.04 on 4 images", "(gray-box)"}},
	}
	for _, c := range cases {
		f := c.f
		o := &f.Opts
		o.Model, o.Data, o.Split, o.N, o.SubsetSeed, o.Batch = model, "sample:cifar10", "test", 4, 1, 4
		o.Out = filepath.Join(t.TempDir(), c.name)
		var stdout bytes.Buffer
		if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, w, stdout.String())
			}
		}
		s, err := attack.LoadSet(f.Opts.Out)
		if err != nil {
			t.Fatal(err)
		}
		if s.Meta.Targeted != f.Opts.Targeted {
			t.Errorf("%s: saved targeted %v", c.name, s.Meta.Targeted)
		}
		for i, l := range s.Meta.LInf {
			if s.Meta.Budget.Norm == attack.LInf && l > s.Meta.Budget.Eps {
				t.Errorf("%s: image %d L-inf %g above %g", c.name, i, l, s.Meta.Budget.Eps)
			}
		}
	}
}

// TestRunAttackTrainedBaselines evaluates the baselines that learn from the
// clean training images (MagNet's auto-encoder, quilting's patch database),
// trained on a small subset, and checks a second run loads the auto-encoder
// from the cache instead of training it again.
func TestRunAttackTrainedBaselines(t *testing.T) {
	model := savedClassifier(t)
	cache := filepath.Join(t.TempDir(), "baselines")
	cases := []struct {
		defense, name, artifact string
		runs                    int
	}{
		{"magnet", "MagNet", "magnet-*.dae", 2},
		{"quilt", "Quilting", "quilt-*.qdb", 1},
	}
	for _, c := range cases {
		f := attackFlags{Opts: experiment.AttackOptions{Model: model, Data: "sample:cifar10", Split: "test", N: 4, SubsetSeed: 1,
			Batch: 4, EOT: 1, Defense: c.defense, BaselineDir: cache, BaselineTrain: 20, MagNetEpochs: 1, QuiltPatches: 500},
			Method: "fgsm", Budget: 0.04}
		var mod time.Time
		for run := 0; run < c.runs; run++ {
			f.Opts.Out = filepath.Join(t.TempDir(), c.defense)
			var stdout bytes.Buffer
			if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
				t.Fatalf("%s run %d: %v", c.defense, run, err)
			}
			for _, w := range []string{c.defense + ": learned from 20 training images", "accuracy through " + c.name + " (gray-box)"} {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("%s: output lacks %q:\n%s", c.defense, w, stdout.String())
				}
			}
			files, _ := filepath.Glob(filepath.Join(cache, "*", c.artifact))
			if len(files) != 1 {
				t.Fatalf("%s: cached %v, want one %s", c.defense, files, c.artifact)
			}
			st, err := os.Stat(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if run == 1 && !st.ModTime().Equal(mod) {
				t.Errorf("%s: second run rewrote %s instead of loading it", c.defense, files[0])
			}
			mod = st.ModTime()
			if s, err := attack.LoadSet(f.Opts.Out); err != nil || s.Adv.Shape[0] != 4 {
				t.Errorf("%s: saved set %v, %v", c.defense, s, err)
			}
		}
	}
}

// TestRunAttackUAP fits a universal perturbation through the command and
// searches its scale so that the average dissimilarity on the classifier's
// normalized tensors is 0.06: the perturbation is saved beside the set,
// the search's outcome too, and the figures are printed.
func TestRunAttackUAP(t *testing.T) {
	model := savedClassifier(t)
	out := filepath.Join(t.TempDir(), "uap")
	f := attackFlags{Opts: experiment.AttackOptions{Model: model, Data: "sample:cifar10", Split: "test", N: 6, SubsetSeed: 1,
		Batch: 4, EOT: 1, Out: out}, Method: methodUAP, MaxIter: 5, Candidates: 3,
		UAP:    experiment.UAPJobOptions{FitImages: 6, FitSeed: 1, UAP: attack.UAPOptions{FoolingRate: 0.8, MaxPasses: 1, Seed: 1}},
		Search: attack.SearchOptions{Target: 0.06, MaxProbes: 20}}
	var stdout bytes.Buffer
	if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UAP fitted on 6 training images", "search: budget", "fooling rate on the attacked images", "normalized tensors: mean 0.06"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, name := range []string{experiment.UAPFile, experiment.UAPInfoFile, experiment.SearchFile, attack.AdvFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, ".partial")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoints left behind: %v", err)
	}
	// The saved perturbation, reused and scaled to another budget.
	f.Search, f.UAP.From, f.Budget, f.Opts.Out = attack.SearchOptions{}, out, 0.03, filepath.Join(t.TempDir(), "reuse")
	stdout.Reset()
	if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
		t.Fatal(err)
	}
	s, err := attack.LoadSet(f.Opts.Out)
	if err != nil || s.Meta.Budget.Eps != 0.03 || !strings.Contains(stdout.String(), "UAP loaded from") {
		t.Errorf("reused UAP: budget %v (%v)\n%s", s.Meta.Budget, err, stdout.String())
	}
}

func TestAttackFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"attack", "--out", "x"}, "--model is required"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "jsma"}, "--attack"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "deepfool", "--steps", "3"}, "does not apply"},
		{[]string{"attack", "--model", "m", "--out", "x", "--budget", "1.5"}, "(0, 1]"},
		{[]string{"attack", "--model", "m", "--out", "x", "--budget", "-1"}, "(0, 1]"},
		{[]string{"attack", "--model", "m", "--out", "x", "--bpda"}, "--bpda needs --defense"},
		{[]string{"attack", "--model", "m", "--out", "x", "--norm", "l1"}, "--norm"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "bim", "--steps", "-2"}, "Steps"},
		{[]string{"attack", "--model", "m", "--out", "x", "--magnet-epochs", "-1"}, "--magnet-epochs"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "apgd", "--loss", "hinge"}, "hinge"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "square", "--queries", "0"}, "MaxQueries"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "square", "--steps", "3"}, "does not apply"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "pgd", "--queries", "3"}, "does not apply"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "fgsm", "--fit-images", "3"}, "does not apply"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "uap", "--steps", "3"}, "does not apply"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "uap", "--fooling-rate", "0"}, "FoolingRate"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "uap", "--fit-images", "-1"}, "--fit-images"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "uap", "--defense", "jpeg", "--bpda"}, "not with --bpda"},
		{[]string{"attack", "--model", "m", "--out", "x", "--attack", "uap", "--targeted"}, "--targeted"},
		{[]string{"attack", "--model", "m", "--out", "x", "--target-dissimilarity", "1.5"}, "Target"},
		{[]string{"attack", "--model", "m", "--out", "x", "--target-dissimilarity", "0.06", "--shard", "1/2"}, "not with --bpda or --shard"},
		{[]string{"attack", "--model", "m", "--out", "x", "--max-probes", "5"}, "need --target-dissimilarity"},
		{[]string{"attack", "--model", "m", "--out", "x", "--target-dissimilarity", "0.06", "--max-probes", "1"}, "MaxProbes"},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "paper"}, `--protocol "paper": want text, release or guo`},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "release", "--budget", "0.06"}, "normalized L2 0.08 (FGSM-0.08: L-infinity 8/255) or 0.04 (FGSM-0.04: L-infinity 4/255)"},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "release", "--attack", "bim", "--budget", "0.08", "--target-dissimilarity", "0.06"}, "0.04 (BIM: L-infinity 4/255)"},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "guo", "--norm", "l2"}, "--norm l2 measures on [0,1] pixels"},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "release", "--budget", "0.08", "--target-dissimilarity", "0.06"}, "the search cannot meet it"},
		{[]string{"attack", "--model", "m", "--out", "x", "--round8", "--attack", "pgd", "--target-dissimilarity", "0.06"}, "whole levels of 1/255"},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "guo", "--attack", "uap", "--norm", "l2"}, "drop --norm"},
		{[]string{"attack", "--model", "m", "--out", "x", "--protocol", "guo", "--attack", "pgd", "--norm", "l2z"}, "l2z"},
	}
	for _, c := range cases {
		cmd := newAttackCmd()
		cmd.SetArgs(c.args[1:])
		cmd.SetOut(&bytes.Buffer{})
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.ExecuteContext(context.Background())
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want a usage error mentioning %q", c.args, err, c.want)
		}
	}
}

// TestRunAttackAPGDAndSquare runs the two attacks of AutoAttack's kind
// through the command, within their budget.
func TestRunAttackAPGDAndSquare(t *testing.T) {
	model := savedClassifier(t)
	for _, f := range []attackFlags{
		{Method: "apgd", Steps: 5, Restarts: 1, Loss: "dlr", Queries: 1, PInit: 0.8},
		{Method: "square", Restarts: 1, Loss: "ce", Queries: 50, PInit: 0.8},
	} {
		out := filepath.Join(t.TempDir(), f.Method)
		f.Opts = experiment.AttackOptions{Model: model, Data: "sample:cifar10", Split: "test", N: 4, SubsetSeed: 1, Batch: 4, EOT: 1, Out: out}
		var stdout bytes.Buffer
		if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
			t.Fatalf("%s: %v", f.Method, err)
		}
		s, err := attack.LoadSet(out)
		if err != nil {
			t.Fatal(err)
		}
		if s.Meta.Budget != (attack.Budget{Norm: attack.LInf, Eps: 0.031}) || s.Adv.Shape[0] != 4 || len(s.Meta.LInf) != 4 {
			t.Errorf("%s: budget %v, %d images", f.Method, s.Meta.Budget, s.Adv.Shape[0])
		}
		for i, d := range s.Meta.LInf {
			if d > 0.031*(1+1e-5) {
				t.Errorf("%s: image %d moved %g in L-inf, above 0.031", f.Method, i, d)
			}
		}
	}
}
