package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
)

func TestTrainCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on the embedded sample")
	}
	out := t.TempDir()
	f := trainFlags{arch: nn.ArchResNet20, data: "sample:cifar10", limit: 64, epochs: 1, batch: 32, lr: 0.05,
		schedule: "onecycle", wd: 5e-4, seed: 1, threads: 2, out: out}
	if err := f.check(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := runTrainClassifier(context.Background(), f, &buf, progress.Nop); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "epoch   1") || !strings.Contains(buf.String(), "saved ") {
		t.Errorf("output:\n%s", buf.String())
	}
	m, err := nn.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Meta.Dataset != "sample:cifar10" || m.Meta.TrainImages != 64 || m.Meta.Epochs != 1 {
		t.Errorf("metadata %+v", m.Meta)
	}
	// A second run into the same directory needs --resume.
	var ue usageError
	if err := runTrainClassifier(context.Background(), f, &buf, progress.Nop); !errors.As(err, &ue) {
		t.Errorf("rerun without --resume: %v", err)
	}
	f.resume = true
	if err := runTrainClassifier(context.Background(), f, &buf, progress.Nop); err != nil {
		t.Errorf("resume of a finished run: %v", err)
	}
	// Resuming it adversarially is refused.
	adv := f
	adv.adv = advFlags{method: "fgsm-rs", fraction: 1}
	if err := runTrainClassifier(context.Background(), adv, &buf, progress.Nop); !errors.As(err, &ue) || !strings.Contains(err.Error(), "without --adv") {
		t.Errorf("--resume --adv of a standard run: %v, want a usage error", err)
	}
	// --resume where nothing was trained is an error, not a fresh start.
	empty := f
	empty.out = t.TempDir()
	if err := runTrainClassifier(context.Background(), empty, &buf, progress.Nop); !errors.As(err, &ue) || !strings.Contains(err.Error(), "no training checkpoint") {
		t.Errorf("--resume into an empty directory: %v, want a usage error naming the missing checkpoint", err)
	}
	if _, err := os.Stat(filepath.Join(out, nn.MetadataFile)); err != nil {
		t.Error(err)
	}
}

func TestTrainFlagErrors(t *testing.T) {
	good := trainFlags{arch: nn.ArchVGGSmall, data: "sample:cifar10", epochs: 1, batch: 8, lr: 0.1, schedule: "cosine", threads: 1, out: "x"}
	bad := []func(*trainFlags){
		func(f *trainFlags) { f.out = "" },
		func(f *trainFlags) { f.epochs = 0 },
		func(f *trainFlags) { f.lr = -1 },
		func(f *trainFlags) { f.schedule = "exp" },
		func(f *trainFlags) { f.smoothing = 1 },
	}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	for i, mod := range bad {
		f := good
		mod(&f)
		var ue usageError
		if err := f.check(); !errors.As(err, &ue) {
			t.Errorf("case %d: %v, want a usage error", i, err)
		}
	}
}
