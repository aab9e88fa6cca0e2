package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/progress"
)

// TestExportONNX: stl export onnx writes a file that --model loads back as
// an ONNX classifier of the same shape.
func TestExportONNX(t *testing.T) {
	model := savedClassifier(t)
	out := filepath.Join(t.TempDir(), "clf.onnx")
	var stdout bytes.Buffer
	if err := runExportONNX(context.Background(), &stdout, model, out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "-> "+out) {
		t.Errorf("output %q does not name the file", stdout.String())
	}
	m, err := experiment.LoadModel(out, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c, h, w := m.InputShape(); m.Format != "onnx" || c != 3 || h != 32 || w != 32 || m.NumClasses() != 10 {
		t.Errorf("loaded %s %dx%dx%d, %d classes", m.Format, c, h, w, m.NumClasses())
	}
	if err := runExportONNX(context.Background(), &stdout, "", out); err == nil {
		t.Error("no error without --model")
	}
}

// TestAttackONNXModel: stl attack takes the exported ONNX file as --model
// and computes the same adversarial set as on the model directory.
func TestAttackONNXModel(t *testing.T) {
	model := savedClassifier(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "clf.onnx")
	if err := runExportONNX(context.Background(), &bytes.Buffer{}, model, file); err != nil {
		t.Fatal(err)
	}
	run := func(m, out string) *attack.Set {
		t.Helper()
		f := attackFlags{Opts: experiment.AttackOptions{Model: m, Data: dataset.DefaultSpec, Split: "test", N: 8, SubsetSeed: 1,
			Batch: 8, EOT: 1, Threads: 1, Out: out}, Method: "fgsm", Budget: 0.04}
		if err := runAttack(context.Background(), f, &bytes.Buffer{}, progress.Nop); err != nil {
			t.Fatalf("attack with --model %s: %v", m, err)
		}
		s, err := attack.LoadSet(out)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := run(model, filepath.Join(dir, "dir")), run(file, filepath.Join(dir, "onnx"))
	if !slices.Equal(a.Meta.AdvPred, b.Meta.AdvPred) || !slices.Equal(a.Meta.CleanPred, b.Meta.CleanPred) {
		t.Errorf("predictions differ: directory %v/%v, ONNX %v/%v", a.Meta.CleanPred, a.Meta.AdvPred, b.Meta.CleanPred, b.Meta.AdvPred)
	}
	for i, v := range a.Adv.Data {
		if d := v - b.Adv.Data[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("adversarial pixel %d: %g on the directory, %g on the ONNX file", i, v, b.Adv.Data[i])
		}
	}
}
