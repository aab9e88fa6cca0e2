package experiment

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
)

// savedModel writes an untrained, seeded classifier and returns its
// directory.
func savedModel(t *testing.T) string {
	t.Helper()
	c := nn.DefaultClassifierConfig()
	c.Threads = 1
	m, err := nn.NewClassifier(c)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "model")
	if err := nn.Save(model, m); err != nil {
		t.Fatal(err)
	}
	return model
}

// TestAttackJob runs FGSM on four sample images gray-box through JPEG with
// an untrained, seeded classifier and checks the job's figures against the
// saved set; it also checks the option and defense errors.
func TestAttackJob(t *testing.T) {
	dir := t.TempDir()
	model := savedModel(t)
	a, err := attack.NewFGSM(attack.DefaultFGSMOptions())
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultAttackOptions()
	o.Model, o.Out, o.N, o.SubsetSeed, o.Batch = model, filepath.Join(dir, "adv"), 4, 1, 2
	ctx := context.Background()

	bad := o
	bad.BPDA = true
	if _, err := NewAttackJob(ctx, a, bad, nil); err == nil {
		t.Error("BPDA without a defense accepted")
	}
	bad = o
	bad.Defense = "nope"
	if _, err := NewAttackJob(ctx, a, bad, nil); !errors.Is(err, ErrUnknownDefense) {
		t.Errorf("unknown defense: %v, want ErrUnknownDefense", err)
	}
	bad = o
	bad.Protocol = "paper"
	if _, err := NewAttackJob(ctx, a, bad, nil); err == nil || !strings.Contains(err.Error(), `"paper"`) {
		t.Errorf("unknown protocol: %v", err)
	}

	o.Defense = "jpeg"
	job, err := NewAttackJob(ctx, a, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.Name != a.Name() || job.Set.Len() != 4 || len(job.Indices) != 4 || job.Defense == nil || job.Learned != nil {
		t.Fatalf("job %q, %d images, indices %v, defense %v, learned %v", job.Name, job.Set.Len(), job.Indices, job.Defense, job.Learned)
	}
	res, err := job.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.GrayBox || res.CorrectBefore < res.Flipped || len(res.Labels) != 4 {
		t.Errorf("outcome: gray-box %v, %d flipped of %d, %d labels", res.GrayBox, res.Flipped, res.CorrectBefore, len(res.Labels))
	}
	s, err := attack.LoadSet(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Meta.Attack != job.Name || s.Adv.Shape[0] != 4 || len(s.Meta.Indices) != 4 {
		t.Errorf("saved set: attack %q, shape %v, indices %v", s.Meta.Attack, s.Adv.Shape, s.Meta.Indices)
	}
}

// cancelOn cancels its context at the n-th report of a stage starting
// with prefix.
type cancelOn struct {
	prefix string
	n      int
	cancel context.CancelFunc
}

func (c *cancelOn) Report(stage string, done, total int, note string) {
	if strings.HasPrefix(stage, c.prefix) {
		if c.n--; c.n == 0 {
			c.cancel()
		}
	}
}

// TestAttackJobSearch searches FGSM's budget so that the average
// normalized L2 dissimilarity on the classifier's normalized tensors of
// eight sample images is 0.06: the saved set reaches it within the 1%
// tolerance, and a search interrupted after its first probe and run again
// ends where an uninterrupted one does.
func TestAttackJobSearch(t *testing.T) {
	model := savedModel(t)
	o := DefaultAttackOptions()
	o.Model, o.N, o.SubsetSeed, o.Batch = model, 8, 1, 4
	so := attack.DefaultSearchOptions()
	run := func(out string, rep progress.Reporter, ctx context.Context) (*attack.SearchResult, *AttackJob, error) {
		o := o
		o.Out = out
		job, err := LoadAttackJob(ctx, o, nil)
		if err != nil {
			return nil, nil, err
		}
		m, _ := attack.LookupMethod("fgsm")
		c := attack.DefaultConfig()
		norm, err := job.Normalization()
		if err != nil {
			return nil, nil, err
		}
		c.FGSM.Budget = attack.Budget{Norm: attack.L2Z, Eps: 0.04, Normalization: norm}
		res, err := job.SearchStrength(ctx, m.Knob(), func(s float64) (attack.Attack, error) { return m.WithStrength(c, s) }, so, rep)
		if err != nil {
			return nil, nil, err
		}
		_, err = job.Run(ctx, rep)
		return res, job, err
	}
	dir := t.TempDir()
	want, job, err := run(filepath.Join(dir, "whole"), nil, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s, err := attack.LoadSet(filepath.Join(dir, "whole"))
	if err != nil {
		t.Fatal(err)
	}
	norm, _ := job.Normalization()
	mean, err := attack.MeanDissimilarityZ(s.Adv, job.Set.Images, *norm)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("budget %.5g: saved set's average %.5f after %d probes", want.Strength, mean, len(want.Probes))
	if math.Abs(mean-so.Target) > 0.01*so.Target || mean != want.Mean {
		t.Errorf("saved set's average %g (search: %g), want within 1%% of %g", mean, want.Mean, so.Target)
	}
	var rec searchRecord
	if err := readJSON(filepath.Join(dir, "whole", SearchFile), &rec); err != nil || rec.Strength != want.Strength || rec.Attack != job.Name {
		t.Errorf("%s: %+v, %v", SearchFile, rec, err)
	}
	out := filepath.Join(dir, "resumed")
	ctx, cancel := context.WithCancel(context.Background())
	if _, _, err := run(out, &cancelOn{prefix: "search", n: 1, cancel: cancel}, ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted search: %v", err)
	}
	var partial searchRecord
	if err := readJSON(filepath.Join(out, ".partial", SearchFile), &partial); err != nil || len(partial.Probes) != 1 {
		t.Fatalf("probes recorded by the interrupted search: %+v, %v", partial.Probes, err)
	}
	got, _, err := run(out, nil, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Strength != want.Strength || len(got.Probes) != len(want.Probes) {
		t.Errorf("resumed: %g after %d probes, want %g after %d", got.Strength, len(got.Probes), want.Strength, len(want.Probes))
	}
	if s2, err := attack.LoadSet(out); err != nil || !slices.Equal(s2.Adv.Data, s.Adv.Data) {
		t.Errorf("resumed set differs from the uninterrupted one (%v)", err)
	}
}

// TestAttackJobUniversal fits a universal perturbation on six training
// images of the sample, saves it beside the set and applies it to every
// attacked image; a second job reusing the saved perturbation writes the
// same set.
func TestAttackJobUniversal(t *testing.T) {
	model := savedModel(t)
	dir := t.TempDir()
	o := DefaultAttackOptions()
	o.Model, o.N, o.SubsetSeed, o.Batch, o.Out = model, 4, 1, 4, filepath.Join(dir, "fit")
	uo := DefaultUAPJobOptions()
	uo.FitImages, uo.UAP.MaxPasses, uo.UAP.Candidates, uo.UAP.DeepFoolIter = 6, 1, 3, 5
	ctx := context.Background()
	job, err := LoadAttackJob(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, fit, err := job.FitUniversal(ctx, uo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.FitImages != 6 || info.Passes != 1 || info.Radius <= 0 || job.Name != "UAP-0.06" {
		t.Fatalf("fit: %+v, job %q", info, job.Name)
	}
	res, err := job.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		x := job.Set.Images.Batch(i, i+1).Data
		for j, v := range fit.V.Data {
			if want := min(1, max(0, x[j]+v)); res.Adv.Data[i*len(x)+j] != want {
				t.Fatalf("image %d value %d: %g, want clip(x+v) %g", i, j, res.Adv.Data[i*len(x)+j], want)
			}
		}
	}
	v, err := npy.ReadFile(filepath.Join(o.Out, UAPFile))
	if err != nil || !slices.Equal(v.Data, fit.V.Data) {
		t.Fatalf("saved perturbation: %v", err)
	}
	o.Out = filepath.Join(dir, "reuse")
	again, err := LoadAttackJob(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	uo.From = filepath.Join(dir, "fit")
	if _, _, err := again.FitUniversal(ctx, uo, nil); err != nil {
		t.Fatal(err)
	}
	res2, err := again.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res2.Adv.Data, res.Adv.Data) || again.Name != job.Name {
		t.Error("the reused perturbation gave another set")
	}
	uo.From = filepath.Join(dir, "nowhere")
	if _, _, err := again.FitUniversal(ctx, uo, nil); err == nil {
		t.Error("a missing perturbation was accepted")
	}
}
