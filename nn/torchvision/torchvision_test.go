package torchvision

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/internal/torchparity"
)

// The fixtures of scripts/fixtures/torch_parity.py, shared with nn/onnx.
var torchDir = filepath.Join("..", "onnx", "testdata", "torch")

// TestTorchParity loads width-reduced torchvision state_dicts (ImageNet
// normalization, 32 px) and compares the logits and the input gradient of
// the summed cross-entropy with PyTorch's.
func TestTorchParity(t *testing.T) {
	for _, tc := range []struct{ arch, dir string }{
		{"resnet18", filepath.Join("resnet18", "tv")},
		{"resnet50", "resnet50"},
		{"vgg16_bn", "vgg16_bn"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			m, err := Load(filepath.Join(torchDir, tc.arch, "weights.safetensors"), Options{Arch: tc.arch, Size: 32})
			if err != nil {
				t.Fatal(err)
			}
			torchparity.Check(t, m, torchparity.Read(t, filepath.Join(torchDir, tc.dir)), 1e-4)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	rn18 := filepath.Join(torchDir, "resnet18", "weights.safetensors")
	for _, tc := range []struct {
		name, path string
		o          Options
	}{
		{"wrong architecture", rn18, Options{Arch: "resnet50", Size: 32}},
		{"vgg of resnet weights", rn18, Options{Arch: "vgg16_bn", Size: 32}},
		{"unknown architecture", rn18, Options{Arch: "alexnet"}},
		{"bad std", rn18, Options{Arch: "resnet18", Std: []float32{1, 0, 1}}},
		{"not safetensors", filepath.Join(torchDir, "resnet18", "model.onnx"), Options{Arch: "resnet18", Size: 32}},
		{"too small", filepath.Join(torchDir, "vgg16_bn", "weights.safetensors"), Options{Arch: "vgg16_bn", Size: 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Load(tc.path, tc.o); err == nil {
				t.Fatal("no error")
			} else {
				t.Log(err)
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		spec, path, arch string
		size             int
		ok, err          bool
	}{
		{spec: "resnet50:w.safetensors", path: "w.safetensors", arch: "resnet50", ok: true},
		{spec: "resnet18@32:dir/w.safetensors", path: "dir/w.safetensors", arch: "resnet18", size: 32, ok: true},
		{spec: "resnet18@x:w", path: "w", arch: "resnet18", ok: true, err: true},
		{spec: "model.onnx", path: "model.onnx"},
		{spec: "C:model.onnx", path: "C:model.onnx"},
	} {
		path, o, ok, err := ParseSpec(tc.spec)
		if path != tc.path || ok != tc.ok || (err != nil) != tc.err || (ok && !tc.err && (o.Arch != tc.arch || o.Size != tc.size)) {
			t.Errorf("ParseSpec(%q) = %q, %+v, %v, %v", tc.spec, path, o, ok, err)
		}
	}
}

func TestSidecar(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := os.WriteFile(path+".json", []byte(`{"arch": "resnet18", "size": 32, "mean": [0.5, 0.5, 0.5]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := Sidecar(path, Options{Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	if o.Arch != "resnet18" || o.Size != 64 || len(o.Mean) != 3 || o.Mean[0] != 0.5 || o.Std != nil {
		t.Errorf("options %+v: want arch from the sidecar, size from the command line, the sidecar's mean", o)
	}
	if err := os.WriteFile(path+".json", []byte(`{"arch": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Sidecar(path, Options{}); err == nil {
		t.Error("a malformed sidecar was accepted")
	}
	if o, err := Sidecar(filepath.Join(t.TempDir(), "none"), Options{Arch: "vgg16_bn"}); err != nil || o.Arch != "vgg16_bn" {
		t.Errorf("no sidecar: %+v, %v", o, err)
	}
}
