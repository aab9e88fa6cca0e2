package experiment

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/nn/onnx"
)

// onnxFixture is a small classifier exported from PyTorch (3x32x32, 10
// classes; scripts/fixtures/torch_parity.py).
const onnxFixture = "../nn/onnx/testdata/torch/activations/model.onnx"

// tinyOutsideConfig is a run of a few seconds on the CIFAR-10 sample in
// front of the vanilla classifier model.
func tinyOutsideConfig(model string) Config {
	cfg := DefaultConfig()
	cfg.Limit, cfg.TestLimit, cfg.Epochs = 200, 50, 1
	cfg.Baselines, cfg.LambdaSweep, cfg.Attacks = []string{}, []float64{}, []string{AttackFGSM008}
	cfg.DictImages, cfg.DictIterations, cfg.DAEEpochs = 50, 5, 1
	cfg.VanillaModel = model
	return cfg
}

// TestRunOutsideVanilla runs stl run in front of an ONNX classifier: the
// vanilla stage is keyed on the file's content (a changed weight
// recomputes it and the attacks, not the defense), no classifier is
// retrained (the defenses' Table 1 cells say why, Table 5 is complete),
// settings that need retraining and a classifier of another input size are
// clear errors.
func TestRunOutsideVanilla(t *testing.T) {
	if testing.Short() {
		t.Skip("a small run (several seconds)")
	}
	b, err := os.ReadFile(onnxFixture)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(model, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx := context.Background()
	res, err := Run(ctx, tinyOutsideConfig(model), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := res.VanillaModel
	if v == nil || v.Arch != "onnx" || v.WeightsFile != "model.onnx" || len(v.WeightsSHA256) != 64 {
		t.Fatalf("results' vanilla model = %+v", v)
	}
	for _, s := range res.Stages {
		if strings.HasPrefix(s.Name, stageRetrain) && s.Name != stageVanilla {
			t.Errorf("stage %s retrained a classifier", s.Name)
		}
	}
	for _, tb := range res.Tables {
		for _, row := range tb.Rows {
			for i, c := range row.Cells {
				notRetrained := strings.HasPrefix(c.Missing, "not retrained: the vanilla classifier is not a model directory")
				switch {
				case tb.ID == "table1" && row.Defense != NoDefense && !notRetrained:
					t.Errorf("%s, %s, %s: %+v, want not retrained", tb.ID, row.Defense, tb.Columns[i], c)
				case (tb.ID == "table5" || row.Defense == NoDefense) && c.Acc == nil:
					t.Errorf("%s, %s, %s: missing (%s)", tb.ID, row.Defense, tb.Columns[i], c.Missing)
				}
			}
		}
	}
	notes := strings.Join(res.Notes, " ")
	if !strings.Contains(notes, "a loaded vanilla classifier, none retrained") || strings.Contains(notes, "epochs (retrained)") {
		t.Errorf("notes speak of retraining in a run that retrained nothing: %q", res.Notes)
	}
	key := stageKeyOf(t, res.Stages, stageVanilla)

	// Again: every stage cached, the same key.
	res2, err := Run(ctx, tinyOutsideConfig(model), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res2.Stages {
		if !s.Cached {
			t.Errorf("second run recomputed stage %s", s.Name)
		}
	}

	// One weight changed, same file name and size: the vanilla stage and
	// the attacks are recomputed, the defense is not.
	m, err := onnx.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for _, init := range m.Graph.Initializers {
		if len(init.Floats) > 10 {
			init.Floats[3] += 0.25
			changed = true
			break
		}
	}
	if !changed {
		t.Fatal("the fixture has no weight to change")
	}
	if err := os.WriteFile(model, onnx.Marshal(m), 0o644); err != nil {
		t.Fatal(err)
	}
	res3, err := Run(ctx, tinyOutsideConfig(model), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stageKeyOf(t, res3.Stages, stageVanilla) == key || res3.VanillaModel.WeightsSHA256 == v.WeightsSHA256 {
		t.Error("a changed weight kept the vanilla stage's key")
	}
	for _, s := range res3.Stages {
		recompute := s.Name == stageVanilla || strings.HasPrefix(s.Name, stageAttack)
		if s.Cached == recompute && (recompute || s.Name == stageDefense) {
			t.Errorf("after a changed weight stage %s cached %v", s.Name, s.Cached)
		}
	}

	// Retraining settings and a classifier of another input size are
	// errors before any work.
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"retrain-baselines", func(c *Config) { c.RetrainBaselines = true }, "retrain_baselines (--retrain-baselines) needs a classifier of the vanilla one's architecture"},
		{"adv-train", func(c *Config) { c.WhiteBox, c.AdvTrain.Method = true, "fgsm-rs" }, "adv_train (--adv-train) needs"},
		{"input size", func(c *Config) { c.VanillaModel = "../nn/onnx/testdata/torch/small_cnn/model.onnx" }, "takes 3x16x16 images"},
		{"not a model", func(c *Config) { c.VanillaModel = filepath.Join(t.TempDir(), "weights.bin") }, "no such file"},
	} {
		cfg := tinyOutsideConfig(model)
		tc.edit(&cfg)
		_, err := Run(ctx, cfg, t.TempDir(), nil)
		var ve *VanillaModelError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a *VanillaModelError saying %q", tc.name, err, tc.want)
		}
	}
}
