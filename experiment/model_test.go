package experiment

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadModelFormats(t *testing.T) {
	torch := filepath.Join("..", "nn", "onnx", "testdata", "torch")
	bad := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, format string
		c, h, k            int
		err                string
	}{
		{name: "onnx", path: filepath.Join(torch, "small_cnn", "model.onnx"), format: "onnx", c: 3, h: 16, k: 10},
		{name: "torchvision", path: "resnet18@32:" + filepath.Join(torch, "resnet18", "weights.safetensors"), format: "torchvision", c: 3, h: 32, k: 10},
		{name: "torchvision default size", path: "vgg16_bn:" + filepath.Join(torch, "vgg16_bn", "weights.safetensors"), format: "torchvision", c: 3, h: 224, k: 10},
		{name: "unnamed architecture", path: filepath.Join(torch, "resnet18", "weights.safetensors"), err: "name the architecture"},
		{name: "unknown file", path: bad, err: "not a model directory"},
		{name: "missing", path: filepath.Join(torch, "nope.onnx"), err: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadModel(tc.path, 1)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, h, _ := m.InputShape()
			if m.Format != tc.format || c != tc.c || h != tc.h || m.NumClasses() != tc.k {
				t.Errorf("format %q, input %d x %d, %d classes; want %q, %d x %d, %d", m.Format, c, h, m.NumClasses(), tc.format, tc.c, tc.h, tc.k)
			}
		})
	}
}
