package onnx

import (
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/internal/torchparity"
)

// torchDir holds the fixtures of scripts/fixtures/torch_parity.py.
var torchDir = filepath.Join("testdata", "torch")

// TestTorchParity imports models exported by PyTorch and compares their
// logits and input gradients with PyTorch's.
func TestTorchParity(t *testing.T) {
	for _, name := range []string{"small_cnn", "residual", "activations", "resnet18"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(torchDir, name)
			m, err := Load(filepath.Join(dir, "model.onnx"), 1)
			if err != nil {
				t.Fatal(err)
			}
			torchparity.Check(t, m, torchparity.Read(t, dir), 1e-4)
		})
	}
}
