package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/progress"
)

// EvaluationInputs are what `stl evaluate` evaluates, loaded: the
// classifier, the images and the defense in front of it.
type EvaluationInputs struct {
	Model *LoadedModel
	// Set holds the images evaluated, Indices their indices in the split
	// (nil when all are).
	Set     *dataset.Set
	Indices []int
	// NewDefense draws the defense, its random numbers seeded by seed;
	// nil without a defense. DefenseName names it.
	NewDefense  func(seed uint64) (attack.Transform, error)
	DefenseName string
	// Learned is set when the defense is a baseline that learned from the
	// clean training images.
	Learned *Learned
	// Key identifies the inputs for the evaluation's cache: the model's
	// and the defense's files, the data, the split, the subset and the
	// baselines' training settings.
	Key string
}

// LoadEvaluation loads the inputs of an evaluation as NewAttackJob does
// for an attack: the classifier o.Model (through LoadModel, with
// o.Threads), the split's images (a class-balanced subset of o.N drawn
// with o.SubsetSeed) and the defense o.Defense ("" for none: a defense
// directory or a baseline name, whose learned parts are cached as for
// stl attack). The attack fields of o (Targeted, BPDA, EOT, Batch) are not
// used. An unknown defense gives an error wrapping ErrUnknownDefense.
func LoadEvaluation(ctx context.Context, o AttackOptions, rep progress.Reporter) (*EvaluationInputs, error) {
	if o.EOT < 1 {
		o.EOT = 1
	}
	if o.Batch < 1 {
		o.Batch = 1
	}
	o.BPDA, o.Targeted = false, false
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	m, err := LoadModel(o.Model, o.Threads)
	if err != nil {
		return nil, err
	}
	in, err := loadInputs(ctx, m, o, rep)
	if err != nil {
		return nil, err
	}
	e := &EvaluationInputs{Model: m, Set: in.set, Indices: in.indices}
	if o.Defense != "" {
		if e.NewDefense, e.Learned, err = loadAttackDefense(ctx, o, in.train, rep); err != nil {
			return nil, err
		}
		t, err := e.NewDefense(0)
		if err != nil {
			return nil, err
		}
		e.DefenseName = t.Name()
	}
	h := sha256.New()
	for _, f := range m.Files {
		statFiles(h, filepath.Dir(f), filepath.Base(f))
	}
	fmt.Fprintf(h, "%s\n%s\n%s\n%v\n%s\n", o.Model, in.set.Name, o.Split, in.indices, o.Defense)
	if o.Universal {
		fmt.Fprintln(h, "universal")
	}
	if st, err := os.Stat(o.Defense); err == nil && st.IsDir() {
		statFiles(h, o.Defense)
	} else if e.Learned != nil {
		fmt.Fprintf(h, "%d %d %d %d\n", o.BaselineTrain, o.SubsetSeed, o.MagNetEpochs, o.QuiltPatches)
	}
	e.Key = hex.EncodeToString(h.Sum(nil))
	return e, nil
}
