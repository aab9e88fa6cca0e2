package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
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
		run, settings, budget, err := paperAttack(tc.name, cfg)
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
	if _, _, _, err := paperAttack("PGD", cfg); err == nil {
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
