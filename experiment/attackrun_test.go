package experiment

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/nn"
)

// TestAttackJob runs FGSM on four sample images gray-box through JPEG with
// an untrained, seeded classifier and checks the job's figures against the
// saved set; it also checks the option and defense errors.
func TestAttackJob(t *testing.T) {
	c := nn.DefaultClassifierConfig()
	c.Threads = 1
	m, err := nn.NewClassifier(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	if err := nn.Save(model, m); err != nil {
		t.Fatal(err)
	}
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
