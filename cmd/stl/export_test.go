package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/experiment"
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
