package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// fakePretrained is the fake trainer that also loads a centroid model
// from a directory holding centroid.json.
type fakePretrained struct {
	*fakeTrainer
	loads atomic.Int32
}

func (f *fakePretrained) LoadPretrained(dir string) (attack.Model, PretrainedInfo, error) {
	f.loads.Add(1)
	m, err := f.Load(filepath.Join(dir, "centroid.json"))
	if err != nil {
		return nil, PretrainedInfo{}, err
	}
	return m, PretrainedInfo{Files: []string{"centroid.json"}, Arch: "centroid", Epochs: 50, TestAccuracy: 0.93, Dataset: "fake/train", TrainImages: 60}, nil
}

func TestRunPretrainedVanillaCaching(t *testing.T) {
	f := newFakes()
	tr := &fakePretrained{fakeTrainer: f.trainer}
	b := f.backend()
	b.Classifier = tr
	model := t.TempDir()
	m, _ := (&fakeTrainer{}).Train(context.Background(), ClassifierSpec{}, f.train, nil)
	if err := tr.Save(filepath.Join(model, "centroid.json"), m); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fakeConfig()
	cfg.VanillaModel = model
	res, err := RunWith(context.Background(), cfg, b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Only STL and STL (cluster) are retrained: no vanilla training.
	if n := f.trainer.trained.Load(); n != 2 {
		t.Errorf("trained %d classifiers, want 2 (the vanilla one is loaded)", n)
	}
	v := res.VanillaModel
	if v == nil || v.Dir == "" || v.Arch != "centroid" || v.Epochs != 50 || v.TestAccuracy != 0.93 || len(v.WeightsSHA256) != 64 {
		t.Fatalf("results' vanilla model = %+v", v)
	}
	if !strings.Contains(strings.Join(res.Notes, " "), "loaded from "+v.Dir) {
		t.Errorf("notes do not say where the vanilla classifier came from: %q", res.Notes)
	}
	if a := findRow(t, res.Tables[0], NoDefense).Cells[0].Acc; a == nil || a.Value < 0.9 {
		t.Errorf("loaded vanilla clean accuracy = %+v, want ~1", a)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil || !strings.Contains(string(md), "loaded from") {
		t.Errorf("report.md does not say the vanilla classifier was loaded (%v)", err)
	}
	key1 := stageKeyOf(t, res.Stages, stageVanilla)
	if _, err := os.Stat(filepath.Join(dir, StagesDir, stageVanilla, "model", "centroid.json")); err != nil {
		t.Errorf("the stage holds no copy of the model: %v", err)
	}

	// Same model: everything is reused.
	res2, err := RunWith(context.Background(), cfg, b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res2.Stages {
		if !s.Cached {
			t.Errorf("stage %s recomputed with the same model", s.Name)
		}
	}
	attacked := f.attacked.Load()

	// A replaced weights file changes the key: the vanilla stage and the
	// attacks are recomputed, the defense is not.
	m.(*centroid).Mu[0][0] += 0.01
	if err := tr.Save(filepath.Join(model, "centroid.json"), m); err != nil {
		t.Fatal(err)
	}
	res3, err := RunWith(context.Background(), cfg, b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key3 := stageKeyOf(t, res3.Stages, stageVanilla); key3 == key1 {
		t.Error("a changed weights file kept the vanilla stage's key")
	}
	if res3.VanillaModel.WeightsSHA256 == v.WeightsSHA256 {
		t.Error("a changed weights file kept its reported SHA-256")
	}
	if f.attacked.Load() == attacked {
		t.Error("a changed vanilla model did not recompute the attacks")
	}
	if f.defense.built.Load() != 1 || f.trainer.trained.Load() != 2 {
		t.Errorf("a changed vanilla model rebuilt the defense (%d builds) or retrained (%d)", f.defense.built.Load(), f.trainer.trained.Load())
	}
	for _, s := range res3.Stages {
		if s.Name == stageVanilla || strings.HasPrefix(s.Name, stageAttack) {
			if s.Cached {
				t.Errorf("stage %s reused after the model changed", s.Name)
			}
		}
	}

	// A trainer that cannot load a model and a missing directory are
	// clear errors.
	b.Classifier = f.trainer
	var ve *VanillaModelError
	if _, err := RunWith(context.Background(), cfg, b, t.TempDir(), nil); !errors.As(err, &ve) || !strings.Contains(err.Error(), "cannot load") {
		t.Errorf("trainer without LoadPretrained: err = %v", err)
	}
	b.Classifier = tr
	cfg.VanillaModel = filepath.Join(model, "absent")
	if _, err := RunWith(context.Background(), cfg, b, t.TempDir(), nil); !errors.As(err, &ve) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent model directory: err = %v", err)
	}
}

func stageKeyOf(t *testing.T, stages []report.Stage, name string) string {
	t.Helper()
	for _, s := range stages {
		if s.Name == name {
			return s.Key
		}
	}
	t.Fatalf("no stage %s", name)
	return ""
}

// countingNN is package nn's trainer counting the classifiers it trains.
type countingNN struct {
	nnTrainer
	trained atomic.Int32
}

func (c *countingNN) Train(ctx context.Context, spec ClassifierSpec, train *dataset.Set, rep progress.Reporter) (attack.Model, error) {
	c.trained.Add(1)
	return c.nnTrainer.Train(ctx, spec, train, rep)
}

// saveNN saves an untrained nn classifier of the given input size and
// classes, with recorded metadata, into a new directory.
func saveNN(t *testing.T, c, h, w, classes int) string {
	t.Helper()
	cfg := nn.DefaultClassifierConfig()
	cfg.Arch, cfg.Channels, cfg.Height, cfg.Width, cfg.Classes, cfg.Seed = "vgg-small", c, h, w, classes, 7
	cfg.Mean, cfg.Std = make([]float32, c), make([]float32, c)
	for i := range cfg.Mean {
		cfg.Mean[i], cfg.Std[i] = 0.5, 0.25
	}
	m, err := nn.NewClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Meta = nn.Metadata{Dataset: "fake/train", TrainImages: 60, Epochs: 50, TestAccuracy: 0.8125}
	dir := t.TempDir()
	if err := nn.Save(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunPretrainedNN runs with a model directory written by nn.Save (as
// `stl train classifier` writes them): the attacks see exactly the saved
// model, only the retrained classifiers are trained, and models that do
// not fit the data are clear errors.
func TestRunPretrainedNN(t *testing.T) {
	f := newFakes()
	tr := &countingNN{}
	b := f.backend()
	b.Classifier, b.Baselines = tr, nil
	var mu sync.Mutex
	var attacked []attack.Model
	// The attack records the model it is given and inverts the images.
	b.Attack = func(name string, cfg Config, _ attack.Model) (Attacker, any, string, error) {
		return func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
			mu.Lock()
			attacked = append(attacked, m)
			mu.Unlock()
			adv := x.Clone()
			for i := range adv.Data {
				adv.Data[i] = 1 - adv.Data[i]
			}
			return adv, nil
		}, "invert", "none", nil
	}
	cfg := fakeConfig()
	cfg.Epochs, cfg.BatchSize, cfg.LambdaSweep, cfg.Baselines = 1, 16, nil, nil
	cfg.Attacks = []string{AttackFGSM008}
	model := saveNN(t, fakeC, fakeH, fakeW, fakeClasses)
	cfg.VanillaModel = model
	res, err := RunWith(context.Background(), cfg, b, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := tr.trained.Load(); n != 2 {
		t.Errorf("trained %d classifiers, want 2 (STL and STL (cluster) retrained; vanilla loaded)", n)
	}
	if len(attacked) != 1 {
		t.Fatalf("%d attacks ran, want 1", len(attacked))
	}
	saved, err := nn.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	test := fakeSet("fake/test", 30, 2)
	want, err := saved.Logits(context.Background(), test.Images)
	if err != nil {
		t.Fatal(err)
	}
	got, err := attacked[0].Logits(context.Background(), test.Images)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(want, got) {
		t.Fatalf("logits %v, want %v", got.Shape, want.Shape)
	}
	for i := range want.Data {
		if d := want.Data[i] - got.Data[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("logit %d = %v, the saved model gives %v", i, got.Data[i], want.Data[i])
		}
	}
	v := res.VanillaModel
	if v == nil || v.Arch != "vgg-small" || v.Epochs != 50 || v.TestAccuracy != 0.8125 || v.WeightsFile != nn.WeightsFile {
		t.Errorf("results' vanilla model = %+v", v)
	}
	js, _ := json.Marshal(res)
	if !strings.Contains(string(js), `"vanilla_model":{"dir":`) || !strings.Contains(string(js), `"recorded_test_accuracy":0.8125`) {
		t.Errorf("results.json lacks the vanilla model: %.300s", js)
	}

	corrupt := saveNN(t, fakeC, fakeH, fakeW, fakeClasses)
	os.WriteFile(filepath.Join(corrupt, nn.WeightsFile), []byte("not safetensors"), 0o644)
	noWeights := saveNN(t, fakeC, fakeH, fakeW, fakeClasses)
	os.Remove(filepath.Join(noWeights, nn.WeightsFile))
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"classes", saveNN(t, fakeC, fakeH, fakeW, fakeClasses+1), "4 classes, the run's data 3"},
		{"resolution", saveNN(t, fakeC, 2*fakeH, 2*fakeW, fakeClasses), "resolution (--resolution) to 16"},
		{"channels", saveNN(t, 1, fakeH, fakeW, fakeClasses), "1x8x8"},
		{"absent", filepath.Join(model, "absent"), "no such file"},
		{"not a directory", notDir, "not a model directory of stl train classifier, an ONNX file"},
		{"no weights", noWeights, "model.safetensors"},
		{"corrupt weights", corrupt, "model.safetensors"},
	} {
		cfg.VanillaModel = tc.dir
		before := tr.trained.Load()
		_, err := RunWith(context.Background(), cfg, b, t.TempDir(), nil)
		var ve *VanillaModelError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want a *VanillaModelError mentioning %q", tc.name, err, tc.want)
		}
		if tr.trained.Load() != before {
			t.Errorf("%s: trained a classifier before failing", tc.name)
		}
	}
}

// TestTrainerCutoutDropout checks that Config.Cutout and Config.Dropout
// reach every classifier the run trains, through ClassifierSpec.
func TestTrainerCutoutDropout(t *testing.T) {
	cfg := fakeConfig()
	cfg.Cutout, cfg.Dropout = 4, 0.3
	spec := (&runner{cfg: cfg}).classifierSpec(1)
	if spec.Cutout != 4 || spec.Dropout != 0.3 {
		t.Fatalf("classifierSpec = %+v, want cutout 4 and dropout 0.3", spec)
	}
	if o := trainOptions(spec); o.Cutout != 4 {
		t.Errorf("trainOptions cutout = %d, want 4", o.Cutout)
	}
	spec.BatchSize, spec.Threads = 16, 1
	m, err := nnTrainer{}.Train(context.Background(), spec, fakeSet("fake/train", 32, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.(*nn.Classifier).Config().Dropout; d != 0.3 {
		t.Errorf("trained classifier's dropout = %v, want 0.3", d)
	}
	js, _ := json.Marshal(nnTrainer{}.DescribeSpec(spec))
	if !strings.Contains(string(js), `"cutout":4`) || !strings.Contains(string(js), `"dropout":0.3`) {
		t.Errorf("DescribeSpec = %s, want cutout and dropout", js)
	}
}

// stageLog records the stages a reporter is told about.
type stageLog struct{ stages map[string]bool }

func (l *stageLog) Report(stage string, done, total int, msg string) { l.stages[stage] = true }

// TestTrainerResumes: a classifier training that finds a checkpoint in
// spec.CheckpointDir continues after its last epoch instead of starting
// again at epoch 1.
func TestTrainerResumes(t *testing.T) {
	spec := (&runner{cfg: fakeConfig()}).classifierSpec(1)
	spec.BatchSize, spec.Threads, spec.CheckpointDir = 16, 1, t.TempDir()
	set := fakeSet("fake/train", 32, 1)
	first := &stageLog{stages: map[string]bool{}}
	if _, err := (nnTrainer{}).Train(context.Background(), spec, set, first); err != nil {
		t.Fatal(err)
	}
	if !first.stages["classifier epoch 1/1"] {
		t.Fatalf("first training reported %v, want epoch 1/1", first.stages)
	}
	spec.Epochs = 2
	second := &stageLog{stages: map[string]bool{}}
	if _, err := (nnTrainer{}).Train(context.Background(), spec, set, second); err != nil {
		t.Fatal(err)
	}
	if second.stages["classifier epoch 1/2"] || !second.stages["classifier epoch 2/2"] {
		t.Errorf("second training reported %v, want only epoch 2/2 (resumed after the checkpointed epoch 1)", second.stages)
	}
}
