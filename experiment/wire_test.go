package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/progress"
)

func TestPaperAttacks(t *testing.T) {
	cfg := DefaultConfig()
	tests := []struct {
		name   string
		eps    float64
		budget string
	}{
		{AttackFGSM008, 0.08, "normalized L2 0.08"},
		{AttackFGSM004, 0.04, "normalized L2 0.04"},
		{AttackBIM, 0.04, "normalized L2 0.04"},
		{AttackDeepFool, 0.04, "normalized L2 0.04"},
		{AttackCW, 0.04, "normalized L2 0.04"},
	}
	for _, tc := range tests {
		run, settings, budget, err := paperAttack(tc.name, cfg, nil)
		if err != nil || run == nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if budget != tc.budget {
			t.Errorf("%s: budget %q, want %q", tc.name, budget, tc.budget)
		}
		var b attack.Budget
		switch o := settings.(type) {
		case attack.FGSMOptions:
			b = o.Budget
		case attack.BIMOptions:
			b = o.Budget
		case attack.DeepFoolOptions:
			b = o.Budget
		case attack.CWOptions:
			b = o.Budget
			if o.MaxIter != cfg.CWIterations || o.BinarySteps != cfg.CWBinarySteps {
				t.Errorf("CW iterations %d/%d, want the config's %d/%d", o.MaxIter, o.BinarySteps, cfg.CWIterations, cfg.CWBinarySteps)
			}
		default:
			t.Fatalf("%s: settings %T", tc.name, settings)
		}
		if b.Norm != attack.L2Rel || b.Eps != tc.eps {
			t.Errorf("%s: budget %v, want normalized L2 %v", tc.name, b, tc.eps)
		}
	}
	if _, _, _, err := paperAttack("PGD", cfg, nil); err == nil {
		t.Error("unknown attack accepted")
	}
}

func TestRegistryBaselines(t *testing.T) {
	train := fakeSet("train", 12, 1)
	cfg := DefaultConfig()
	bases, miss, err := registryBaselines(context.Background(), cfg, train, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bases) != len(DefaultBaselines) || len(miss) != 0 {
		t.Errorf("%d baselines, missing %v, for %d names", len(bases), miss, len(DefaultBaselines))
	}
	names := map[string]bool{}
	for _, b := range bases {
		names[b.Name] = true
		tr, err := b.New(7)
		if err != nil {
			t.Errorf("%s: %v", b.Name, err)
			continue
		}
		x := dataset.NewSet("x", 2, dataset.Shape{C: 3, H: 32, W: 32}, []string{"a"}).Images
		for i := range x.Data {
			x.Data[i] = float32(i%7) / 7
		}
		y, err := tr.Apply(context.Background(), x)
		if err != nil || len(y.Data) != len(x.Data) {
			t.Errorf("%s: Apply: %v", b.Name, err)
		}
		// Backward is exact exactly when the transform provides its
		// gradient, and the default backend's BPDA then uses it.
		_, exact := tr.(attack.Approx)
		if exact != (b.Backward == BackwardExact) || (b.Backward != "" && b.Backward != BackwardExact) {
			t.Errorf("%s: Backward %q, transform provides its gradient: %v", b.Name, b.Backward, exact)
		}
		am, err := DefaultBackend().Adaptive(tr, &centroid{}, 2)
		if err != nil {
			t.Errorf("%s: Adaptive: %v", b.Name, err)
			continue
		}
		if bp, ok := am.(*attack.BPDA); ok && (bp.Approx != nil) != exact {
			t.Errorf("%s: BPDA's Approx %v, want exact %v", b.Name, bp.Approx, exact)
		} else if !ok && !tr.Randomized() {
			t.Errorf("%s: Adaptive returned %T, want *attack.BPDA for a deterministic transform", b.Name, am)
		}
	}
	if !names["MagNet"] {
		t.Fatal("no MagNet row")
	}
	for _, b := range bases {
		if b.Name == "MagNet" && b.Backward != BackwardExact {
			t.Errorf("MagNet's Backward = %q, want %q", b.Backward, BackwardExact)
		}
	}
	for _, want := range []string{"JPEG", "TVM", "Quilting", "Pixel deflection", "Feature squeezing", "MagNet"} {
		if !names[want] {
			t.Errorf("no %s row among %v", want, names)
		}
	}
	cfg.Baselines = []string{"jpeg", "nope"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Validate with an unknown baseline: %v", err)
	}
	var ce *ConfigError
	if _, _, err := registryBaselines(context.Background(), cfg, train, t.TempDir(), nil); !errors.As(err, &ce) {
		t.Errorf("registryBaselines with an unknown name: err = %v", err)
	}
}

func TestLoadDataResolution(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Resolution = 64
	if _, _, err := loadData(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "resolution 64") {
		t.Errorf("CIFAR-10 sample at 64 px: err = %v", err)
	}
}

func TestChannelStats(t *testing.T) {
	s := dataset.NewSet("s", 2, dataset.Shape{C: 2, H: 1, W: 2}, []string{"a", "b"})
	copy(s.Images.Data, []float32{0, 1, 0.5, 0.5, 0, 1, 0.5, 0.5}) // channel 0: 0,1,0,1; channel 1: all 0.5
	mean, std := channelStats(s)
	if math.Abs(float64(mean[0])-0.5) > 1e-6 || math.Abs(float64(std[0])-0.5) > 1e-6 {
		t.Errorf("channel 0: mean %v std %v, want 0.5 0.5", mean[0], std[0])
	}
	if mean[1] != 0.5 || std[1] != 1e-3 {
		t.Errorf("constant channel: mean %v std %v, want 0.5 and the 1e-3 floor", mean[1], std[1])
	}
}

func TestDescribeSpecEncodes(t *testing.T) {
	d := nnTrainer{}.DescribeSpec(ClassifierSpec{Arch: "vgg-small", Epochs: 3, BatchSize: 64, LearningRate: 0.05, Seed: 1, Threads: 2})
	b, err := json.Marshal(d)
	if err != nil || !strings.Contains(string(b), `"weight_decay":0.0005`) || !strings.Contains(string(b), `"epochs":3`) {
		t.Errorf("DescribeSpec JSON = %s, %v", b, err)
	}
}

// TestSettingsEncodings pins the row labels and the JSON encodings of the
// settings of every registry baseline and paper attack: they enter the
// cache keys of the stages.
func TestSettingsEncodings(t *testing.T) {
	cfg := DefaultConfig()
	baselines := []struct{ name, row, settings string }{
		{"jpeg", "JPEG", `{"jpeg":{"Quality":75},"name":"jpeg"}`},
		{"tvm", "TVM", `{"name":"tvm","tvm":{"KeepProb":0.5,"Lambda":0.03,"MaxIter":100,"Sweeps":10,"Tol":0.001,"Seed":1}}`},
		{"quilt", "Quilting", `{"name":"quilt","patch_db":{"Patch":5,"Stride":1,"MaxPatches":100000,"Seed":1},"quilt":{"Overlap":2,"K":10,"Seed":1}}`},
		{"tvm-quilt", "TVM+Quilting", `{"name":"tvm-quilt","patch_db":{"Patch":5,"Stride":1,"MaxPatches":100000,"Seed":1},"quilt":{"Overlap":2,"K":10,"Seed":1},"tvm":{"KeepProb":0.5,"Lambda":0.03,"MaxIter":100,"Sweeps":10,"Tol":0.001,"Seed":1}}`},
		{"crop-ens", "Crop ensemble", `{"crop":{"Fraction":0.3010033444816054,"Crops":30,"Seed":1},"name":"crop-ens"}`},
		{"crop-tvm-quilt", "Crop-Ens", `{"crop":{"Fraction":0.3010033444816054,"Crops":30,"Seed":1},"name":"crop-tvm-quilt","patch_db":{"Patch":5,"Stride":1,"MaxPatches":100000,"Seed":1},"quilt":{"Overlap":2,"K":10,"Seed":1},"tvm":{"KeepProb":0.5,"Lambda":0.03,"MaxIter":100,"Sweeps":10,"Tol":0.001,"Seed":1}}`},
		{"deflect", "Pixel deflection", `{"deflect":{"Deflections":200,"Window":10,"Sigma":0.04,"Levels":0,"Seed":1},"name":"deflect"}`},
		{"pd-ens", "PD-Ens", `{"deflect":{"Deflections":200,"Window":10,"Sigma":0.04,"Levels":0,"Seed":1},"ensemble":10,"name":"pd-ens"}`},
		{"squeeze", "Feature squeezing", `{"name":"squeeze","squeeze":{"Bits":5,"MedianSize":2}}`},
		{"bitdepth", "Bit depth", `{"name":"bitdepth","squeeze":{"Bits":5,"MedianSize":2}}`},
		{"median", "Median", `{"name":"median","squeeze":{"Bits":5,"MedianSize":2}}`},
		{"magnet", "MagNet", `{"auto_encoder":{"Channels":3,"Filters":3,"Layers":3,"Noise":0.025,"Epochs":10,"BatchSize":32,"LR":0.01,"Seed":1,"Threads":0},"name":"magnet"}`},
	}
	cfg.Baselines = nil
	for _, b := range baselines {
		cfg.Baselines = append(cfg.Baselines, b.name)
	}
	bases, _, err := registryBaselines(context.Background(), cfg, fakeSet("train", 4, 1), "/x", nil)
	if err != nil || len(bases) != len(baselines) {
		t.Fatalf("%d baselines: %v", len(bases), err)
	}
	for i, b := range baselines {
		js, err := json.Marshal(bases[i].Settings)
		if err != nil || bases[i].Name != b.row || string(js) != b.settings {
			t.Errorf("%s: row %q, settings %s (%v), want %q, %s", b.name, bases[i].Name, js, err, b.row, b.settings)
		}
	}
	attacks := []struct{ name, budget, settings string }{
		{"FGSM-0.08", "normalized L2 0.08", `{"Budget":{"norm":"l2","eps":0.08},"Targeted":false}`},
		{"FGSM-0.04", "normalized L2 0.04", `{"Budget":{"norm":"l2","eps":0.04},"Targeted":false}`},
		{"BIM", "normalized L2 0.04", `{"Budget":{"norm":"l2","eps":0.04},"Steps":10,"StepFrac":0.125,"Targeted":false}`},
		{"DeepFool", "normalized L2 0.04", `{"Budget":{"norm":"l2","eps":0.04},"Overshoot":0.02,"MaxIter":50,"Candidates":10}`},
		{"CW", "normalized L2 0.04", `{"Budget":{"norm":"l2","eps":0.04},"Targeted":false,"Kappa":0,"InitialC":0.001,"BinarySteps":5,"MaxIter":100,"LearningRate":0.01,"AbortEarly":true}`},
	}
	for _, a := range attacks {
		_, set, budget, err := paperAttack(a.name, cfg, nil)
		js, _ := json.Marshal(set)
		if err != nil || budget != a.budget || string(js) != a.settings {
			t.Errorf("%s: budget %q, settings %s (%v), want %q, %s", a.name, budget, js, err, a.budget, a.settings)
		}
	}
}

// TestPaperAttacksRound8 runs every column of the backend's attacks with
// 8-bit rounding (the release protocol; round8 under the text protocol,
// and under guo on normalized tensors) on images off the 8-bit grid, where
// rounding to the nearest k/255 would leave an L-infinity budget: the
// images are 8-bit, inside the column's budget, and rounding them again
// changes nothing. Without rounding they are not 8-bit.
func TestPaperAttacksRound8(t *testing.T) {
	ctx := context.Background()
	train, test := fakeSet("train", 30, 1), fakeSet("test", 12, 2)
	m, err := (&fakeTrainer{}).Train(ctx, ClassifierSpec{}, train, nil)
	if err != nil {
		t.Fatal(err)
	}
	model := normCentroid{m.(*centroid)}
	for _, tc := range []struct {
		protocol string
		round8   bool
	}{{"release", false}, {"text", true}, {"guo", true}, {"text", false}} {
		cfg := DefaultConfig()
		cfg.Protocol, cfg.Round8, cfg.CWIterations, cfg.CWBinarySteps = tc.protocol, tc.round8, 10, 2
		for _, name := range AllAttacks {
			what := fmt.Sprintf("%s (protocol %s, round8 %v)", name, tc.protocol, tc.round8)
			run, _, _, err := paperAttack(name, cfg, model)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			s, _, err := paperSetting(name, cfg, model)
			if err != nil {
				t.Fatal(err)
			}
			adv, err := run(ctx, model, test.Images, test.Labels, progress.Nop)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			grid := adv.Clone()
			attack.Round8(grid.Data)
			if onGrid := slices.Equal(grid.Data, adv.Data); onGrid != cfg.round8() {
				t.Errorf("%s: images on the 8-bit grid %v", what, onGrid)
			}
			if !cfg.round8() {
				continue
			}
			again := adv.Clone()
			if err := attack.Round8Within(again, test.Images, s.Budget); err != nil || !slices.Equal(again.Data, adv.Data) {
				t.Errorf("%s: rounding again changed the images (err %v)", what, err)
			}
			dissim, linf, _ := attack.Distances(adv, test.Images)
			var dz []float64
			if s.Budget.Norm == attack.L2Z {
				dz, _ = attack.DissimilarityZ(adv, test.Images, *s.Budget.Normalization)
			}
			for i := range dissim {
				var got float64
				switch s.Budget.Norm {
				case attack.LInf:
					got = linf[i] - 5e-7
				case attack.L2Z:
					got = dz[i] / (1 + 1e-6)
				default:
					got = dissim[i] / (1 + 1e-6)
				}
				if got > s.Budget.Eps {
					t.Errorf("%s: image %d beyond the budget %s (L-inf %g, dissimilarity %g)", what, i, s.Budget, linf[i], dissim[i])
				}
			}
		}
	}
}

// TestWhiteBoxPGDIsTheSuites: the Table 4 attack and the sanity checks'
// PGD are the evaluation suite's PGD-CE (and, with kappa, PGD-CW) seeded
// by the run seed, run to their last iterate: on the same images, every
// image the suite's PGD-CE (which stops at an image's first success)
// leaves correct ends where the Table 4 form's does, and the suite's
// accuracy is at most the Table 4 form's.
func TestWhiteBoxPGDIsTheSuites(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 7
	b := attack.Budget{Norm: attack.LInf, Eps: whiteBoxEps}
	for _, loss := range []string{LossCE, LossCW} {
		_, settings, err := whiteBoxPGD(cfg, loss)
		if err != nil {
			t.Fatal(err)
		}
		name := map[string]string{LossCE: evaluate.PGDCE, LossCW: evaluate.PGDCW}[loss]
		want, err := evaluate.PGDOptions(name, b, evaluate.Options{PGDSteps: cfg.WhiteBoxSteps}, uint64(cfg.Seed))
		if err != nil {
			t.Fatal(err)
		}
		if loss == LossCW {
			want.Kappa = cfg.WhiteBoxCWKappa
		}
		if settings != want {
			t.Errorf("%s: Table 4 settings %+v, want the suite's %+v", loss, settings, want)
		}
	}
	ctx := context.Background()
	train, test := fakeSet("train", 30, 1), fakeSet("test", 45, 3)
	m, err := (&fakeTrainer{}).Train(ctx, ClassifierSpec{}, train, nil)
	if err != nil {
		t.Fatal(err)
	}
	const eps, steps = 0.18, 10 // a budget that breaks some images of the fake classes, not all
	table, _, err := pgdAt(cfg, eps, steps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := table(ctx, m, test.Images, test.Labels, progress.Nop)
	if err != nil {
		t.Fatal(err)
	}
	suite, err := evaluate.NewAttack(evaluate.PGDCE, attack.Budget{Norm: attack.LInf, Eps: eps}, evaluate.Options{PGDSteps: steps}, fakeClasses, uint64(cfg.Seed))
	if err != nil {
		t.Fatal(err)
	}
	res, err := attack.RunBatched(ctx, suite, m, test.Images, test.Labels, attackBatch, nil)
	if err != nil {
		t.Fatal(err)
	}
	z, err := m.Logits(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	pred := z.ArgmaxRows(nil)
	d := len(got.Data) / len(test.Labels)
	broken, tableCorrect := 0, 0
	for i, y := range test.Labels {
		if pred[i] == y {
			tableCorrect++
		}
		if res.AdvPred[i] != y {
			broken++
			continue
		}
		if !slices.Equal(got.Data[i*d:(i+1)*d], res.Adv.Data[i*d:(i+1)*d]) {
			t.Errorf("image %d: the suite's PGD left it correct elsewhere than the Table 4 form's", i)
		}
	}
	if broken == 0 || broken == len(test.Labels) {
		t.Fatalf("the suite's PGD broke %d of %d images: the test cannot tell", broken, len(test.Labels))
	}
	if suiteCorrect := len(test.Labels) - broken; suiteCorrect > tableCorrect {
		t.Errorf("the suite's PGD left %d images correct, the Table 4 form's %d: stopping early cannot help the defense", suiteCorrect, tableCorrect)
	}
}
