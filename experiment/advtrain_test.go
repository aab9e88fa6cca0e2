package experiment

import (
	"context"
	"strings"
	"testing"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/progress"
)

// atTrainer is the fake trainer that also trains "adversarially": the
// centroids of t(x) (x itself without t), recording each call.
type atTrainer struct {
	*fakeTrainer
	calls []atCall
}

type atCall struct {
	opts      advtrain.Options
	transform string // "" without
	init      bool
	epochs    int
	lr        float64
}

func (f *atTrainer) TrainAdversarial(ctx context.Context, spec ClassifierSpec, adv advtrain.Options, t defense.Transform, init attack.Model, train *dataset.Set, rep progress.Reporter) (attack.Model, error) {
	c := atCall{opts: adv, init: init != nil, epochs: spec.Epochs, lr: spec.LearningRate}
	set := train
	if t != nil {
		c.transform = t.Name()
		y, err := t.Apply(ctx, train.Images)
		if err != nil {
			return nil, err
		}
		set = &dataset.Set{Images: y, Labels: train.Labels, Classes: train.Classes, Name: train.Name}
	}
	f.calls = append(f.calls, c)
	return f.fakeTrainer.Train(ctx, spec, set, rep)
}

// TestRunAdversarialTraining: with adv_train the white-box table gets AT
// alone, STL + AT and STL (cluster) + AT, each trained once through the
// right transform, attacked as the other rows; the other rows and their
// stages stay those of a run without it; a second run reuses everything;
// a trainer that cannot train adversarially leaves the rows missing.
func TestRunAdversarialTraining(t *testing.T) {
	f := newFakes()
	at := &atTrainer{fakeTrainer: f.trainer}
	b := f.backend()
	b.Classifier = at
	cfg := fakeConfig()
	cfg.WhiteBox, cfg.LambdaSweep, cfg.Attacks, cfg.Baselines = true, nil, []string{AttackFGSM008}, nil
	dir := t.TempDir()
	plain, err := RunWith(context.Background(), cfg, b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AdvTrain = AdvTrainSettings{Method: "fgsm-rs", Epochs: 2, FineTune: true, LearningRate: 0.01}
	rec := &recorder{}
	res, err := RunWith(context.Background(), cfg, b, dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d", rec.runLast, rec.runTotal)
	}
	want := []atCall{
		{transform: "", init: true},
		{transform: "STL", init: true},
		{transform: "STL (cluster)", init: true},
	}
	if len(at.calls) != len(want) {
		t.Fatalf("%d adversarial trainings, want 3: %+v", len(at.calls), at.calls)
	}
	for i, c := range at.calls {
		if c.transform != want[i].transform || c.init != want[i].init || c.epochs != 2 || c.lr != 0.01 ||
			c.opts != (advtrain.Options{Method: advtrain.FGSMRS, Eps: advtrain.Eps8, Step: 1.25 * advtrain.Eps8, Steps: 1, Fraction: 1, Seed: 1}) {
			t.Errorf("training %d: %+v, want transform %q, fine-tuned, 2 epochs at lr 0.01, FGSM-RS defaults", i, c, want[i].transform)
		}
	}
	t4 := res.Tables[2]
	for _, name := range []string{RowATAlone, RowSTLAT, RowSTLClusterAT} {
		row := findRow(t, t4, name)
		for j, c := range row.Cells {
			if c.Acc == nil || c.Acc.N != 12 {
				t.Errorf("%s, %s: %+v, want an accuracy on 12 images", name, t4.Columns[j], c)
			}
		}
	}
	if !strings.Contains(t4.Caption, "trained adversarially (FGSM-RS eps 8/255, 1 step of 10/255, fine-tuned") {
		t.Errorf("caption %q does not describe the adversarial training", t4.Caption)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "Clean accuracy of the adversarially trained classifiers on the 30 test images") {
		t.Errorf("notes %q lack the clean accuracy of the adversarially trained classifiers", res.Notes)
	}
	// The rows of the run without adversarial training are unchanged, and
	// so are their stages' keys.
	for _, name := range []string{NoDefense, RowSTL, RowSTLCluster} {
		if a, b := findRow(t, plain.Tables[2], name), findRow(t, t4, name); a.Cells[0].Acc.Value != b.Cells[0].Acc.Value {
			t.Errorf("%s: %v without adversarial training, %v with", name, a.Cells[0].Acc.Value, b.Cells[0].Acc.Value)
		}
	}
	keys := map[string]string{}
	for _, s := range plain.Stages {
		keys[s.Name] = s.Key
	}
	for _, s := range res.Stages {
		if k, ok := keys[s.Name]; ok && (k != s.Key || !s.Cached) {
			t.Errorf("stage %s: key %s cached %v, want the key %s of the run without adversarial training, cached", s.Name, s.Key, s.Cached, k)
		}
		if _, ok := keys[s.Name]; !ok && !strings.Contains(s.Name, "-at") {
			t.Errorf("new stage %s", s.Name)
		}
	}
	// A second run trains nothing.
	if _, err := RunWith(context.Background(), cfg, b, dir, nil); err != nil || len(at.calls) != 3 {
		t.Errorf("second run: %v, %d trainings", err, len(at.calls))
	}
	// A backend that cannot train adversarially leaves the rows missing.
	b.Classifier = f.trainer
	res, err = RunWith(context.Background(), cfg, b, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := findRow(t, res.Tables[2], RowSTLAT).Cells[0]; c.Acc != nil || !strings.Contains(c.Missing, "cannot train adversarially") {
		t.Errorf("STL + AT without an adversarial trainer: %+v", c)
	}
}

func TestAdvTrainSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    AdvTrainSettings
		wb   bool
		ok   bool
	}{
		{"none", AdvTrainSettings{}, false, true},
		{"pgd", AdvTrainSettings{Method: "pgd"}, true, true},
		{"fgsm-rs tuned", AdvTrainSettings{Method: "fgsm-rs", Eps: 4.0 / 255, Fraction: 0.5, Epochs: 3, FineTune: true}, true, true},
		{"without whitebox", AdvTrainSettings{Method: "pgd"}, false, false},
		{"without method", AdvTrainSettings{Epochs: 3}, true, false},
		{"unknown method", AdvTrainSettings{Method: "free"}, true, false},
		{"fgsm-rs steps", AdvTrainSettings{Method: "fgsm-rs", Steps: 3}, true, false},
		{"eps", AdvTrainSettings{Method: "pgd", Eps: 2}, true, false},
		{"negative epochs", AdvTrainSettings{Method: "pgd", Epochs: -1}, true, false},
		{"fraction", AdvTrainSettings{Method: "pgd", Fraction: 1.5}, true, false},
		{"lr", AdvTrainSettings{Method: "pgd", LearningRate: 20}, true, false},
	} {
		c := DefaultConfig()
		c.WhiteBox, c.AdvTrain = tc.wb, tc.a
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "adv_train") {
			t.Errorf("%s: %v does not name adv_train", tc.name, err)
		}
	}
	// In a file.
	c, err := DecodeConfig(strings.NewReader("whitebox: true\nadv_train:\n  method: pgd\n  epochs: 2\n  fine_tune: true\n"), false)
	if err != nil || c.AdvTrain != (AdvTrainSettings{Method: "pgd", Epochs: 2, FineTune: true}) {
		t.Errorf("YAML: %+v, %v", c.AdvTrain, err)
	}
	if _, err := DecodeConfig(strings.NewReader(`{"whitebox": true, "adv_train": {"method": "pgd", "epoch": 2}}`), true); err == nil {
		t.Error("misspelt adv_train field accepted")
	}
}
