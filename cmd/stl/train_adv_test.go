package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
)

func TestAdvFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    advFlags
		want *advtrain.Options // nil: no adversarial training
		bad  bool
	}{
		{"none", advFlags{fraction: 1}, nil, false},
		{"none, zero fraction", advFlags{}, nil, false},
		{"pgd", advFlags{method: "pgd", fraction: 1}, &advtrain.Options{Method: advtrain.PGD, Eps: 8.0 / 255, Step: 2.0 / 255, Steps: 7, Fraction: 1, Seed: 3}, false},
		{"fgsm-rs at 4/255", advFlags{method: "fgsm-rs", eps: "4/255", fraction: 0.5}, &advtrain.Options{Method: advtrain.FGSMRS, Eps: 4.0 / 255, Step: 5.0 / 255, Steps: 1, Fraction: 0.5, Seed: 3}, false},
		{"pgd decimal", advFlags{method: "pgd", eps: "0.031", step: "0.01", steps: 10, fraction: 1}, &advtrain.Options{Method: advtrain.PGD, Eps: 0.031, Step: 0.01, Steps: 10, Fraction: 1, Seed: 3}, false},
		{"unknown method", advFlags{method: "free", fraction: 1}, nil, true},
		{"eps without --adv", advFlags{eps: "8/255", fraction: 1}, nil, true},
		{"defense without --adv", advFlags{defense: "d", fraction: 1}, nil, true},
		{"universal without defense", advFlags{method: "pgd", universal: true, fraction: 1}, nil, true},
		{"bad eps", advFlags{method: "pgd", eps: "8/0", fraction: 1}, nil, true},
		{"eps text", advFlags{method: "pgd", eps: "eight", fraction: 1}, nil, true},
		{"eps too large", advFlags{method: "pgd", eps: "2", fraction: 1}, nil, true},
		{"fgsm-rs steps", advFlags{method: "fgsm-rs", steps: 3, fraction: 1}, nil, true},
		{"fraction 0", advFlags{method: "pgd"}, nil, true},
	} {
		got, err := tc.f.options(3)
		var ue usageError
		if tc.bad {
			if !errors.As(err, &ue) {
				t.Errorf("%s: %v, want a usage error", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (got == nil) != (tc.want == nil) || (got != nil && (got.Method != tc.want.Method || math.Abs(got.Eps-tc.want.Eps) > 1e-12 ||
			math.Abs(got.Step-tc.want.Step) > 1e-12 || got.Steps != tc.want.Steps || got.Fraction != tc.want.Fraction || got.Seed != tc.want.Seed)) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestTrainAdversarial trains with --adv fgsm-rs on a few sample images:
// the settings are recorded and noted in the model, and --resume refuses
// other settings or none.
func TestTrainAdversarial(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on the embedded sample")
	}
	out := t.TempDir()
	f := trainFlags{arch: nn.ArchResNet20, data: "sample:cifar10", limit: 48, epochs: 1, batch: 16, lr: 0.05,
		schedule: "onecycle", wd: 5e-4, seed: 1, threads: 2, out: out, adv: advFlags{method: "fgsm-rs", fraction: 1}}
	if err := f.check(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := runTrainClassifier(context.Background(), f, &buf, progress.Nop); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "adversarial training: FGSM-RS eps 8/255, 1 step of 10/255") {
		t.Errorf("output:\n%s", buf.String())
	}
	m, err := nn.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Meta.Notes, "FGSM-RS eps 8/255") {
		t.Errorf("notes %q", m.Meta.Notes)
	}
	if _, err := os.Stat(filepath.Join(out, advFile)); err != nil {
		t.Error(err)
	}
	f.resume = true
	if err := runTrainClassifier(context.Background(), f, &buf, progress.Nop); err != nil {
		t.Errorf("resume with the same settings: %v", err)
	}
	var ue usageError
	other := f
	other.adv = advFlags{method: "pgd", fraction: 1}
	if err := runTrainClassifier(context.Background(), other, &buf, progress.Nop); !errors.As(err, &ue) {
		t.Errorf("resume with pgd: %v, want a usage error", err)
	}
	other.adv = advFlags{fraction: 1}
	if err := runTrainClassifier(context.Background(), other, &buf, progress.Nop); !errors.As(err, &ue) {
		t.Errorf("resume without --adv: %v, want a usage error", err)
	}
}

// TestTrainAdversarialThroughDefense trains behind a tiny defense's
// projection (STL + AT) and checks that the notes name the transform,
// that --adv-universal picks STL, and that a missing defense is an error
// before any training.
func TestTrainAdversarialThroughDefense(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a defense and a classifier")
	}
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	out := filepath.Join(dir, "model")
	f := trainFlags{arch: nn.ArchResNet20, data: "sample:cifar10", limit: 16, epochs: 1, batch: 8, lr: 0.05,
		schedule: "onecycle", wd: 5e-4, seed: 1, threads: 2, out: out,
		adv: advFlags{method: "fgsm-rs", fraction: 0.5, defense: def}}
	var buf bytes.Buffer
	if err := runTrainClassifier(context.Background(), f, &buf, progress.Nop); err != nil {
		t.Fatal(err)
	}
	m, err := nn.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "through STL (cluster) (BPDA)"; !strings.Contains(m.Meta.Notes, want) || !strings.Contains(m.Meta.Notes, "0.5 of each batch") {
		t.Errorf("notes %q, want %q", m.Meta.Notes, want)
	}
	// --adv-universal: the universal dictionary's STL (set up, not trained).
	f.adv.universal, f.out = true, filepath.Join(dir, "universal")
	if _, err := setupAdv(f, m, io.Discard); err != nil || !strings.Contains(m.Meta.Notes, "through STL (BPDA)") {
		t.Errorf("--adv-universal: notes %q, %v", m.Meta.Notes, err)
	}
	f.adv = advFlags{method: "pgd", fraction: 1, defense: filepath.Join(dir, "missing")}
	f.out = filepath.Join(dir, "none")
	if err := runTrainClassifier(context.Background(), f, io.Discard, progress.Nop); err == nil {
		t.Error("a missing defense directory was accepted")
	}
}
