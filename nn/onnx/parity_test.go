package onnx

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// torchDir holds the fixtures of scripts/fixtures/torch_parity.py.
var torchDir = filepath.Join("testdata", "torch")

// Reference is one fixture's inputs and PyTorch's results.
type reference struct {
	x, logits, grad *tensor.Tensor
	labels          []int
}

func readReference(t *testing.T, dir string) reference {
	t.Helper()
	var r reference
	var err error
	for _, f := range []struct {
		name string
		dst  **tensor.Tensor
	}{{"x.npy", &r.x}, {"logits.npy", &r.logits}, {"grad.npy", &r.grad}} {
		if *f.dst, err = npy.ReadFile(filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	if r.labels, err = npy.ReadIntsFile(filepath.Join(dir, "labels.npy")); err != nil {
		t.Fatal(err)
	}
	return r
}

// crossEntropySeed fills g with the gradient of the summed cross-entropy
// of logits with labels: softmax(logits) - onehot(label).
func crossEntropySeed(labels []int) func(logits, g *tensor.Tensor) {
	return func(logits, g *tensor.Tensor) {
		k := logits.Shape[1]
		for i, y := range labels {
			row, out := logits.Data[i*k:(i+1)*k], g.Data[i*k:(i+1)*k]
			m := row[tensor.Argmax(row)]
			var s float64
			for j, v := range row {
				e := math.Exp(float64(v - m))
				out[j] = float32(e)
				s += e
			}
			for j := range out {
				out[j] = float32(float64(out[j]) / s)
			}
			out[y]--
		}
	}
}

// relErr returns max |got - want| / max |want|.
func relErr(got, want []float32) float64 {
	var d, m float64
	for i, w := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(w)))
		m = math.Max(m, math.Abs(float64(w)))
	}
	return d / m
}

// checkParity compares a model's logits and input gradient with PyTorch's.
func checkParity(t *testing.T, m interface {
	InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error)
}, r reference) {
	t.Helper()
	logits, grad, err := m.InputGrad(context.Background(), r.x, crossEntropySeed(r.labels))
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(logits, r.logits) || !tensor.SameShape(grad, r.grad) {
		t.Fatalf("shapes %v, %v; want %v, %v", logits.Shape, grad.Shape, r.logits.Shape, r.grad.Shape)
	}
	if e := relErr(logits.Data, r.logits.Data); e > 1e-4 {
		t.Errorf("logits differ from PyTorch's by %.3g relative (want <= 1e-4)", e)
	}
	if e := relErr(grad.Data, r.grad.Data); e > 1e-4 {
		t.Errorf("input gradient differs from PyTorch's by %.3g relative (want <= 1e-4)", e)
	}
}

func TestTorchParity(t *testing.T) {
	for _, name := range []string{"small_cnn", "residual", "activations", "resnet18"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(torchDir, name)
			m, err := Load(filepath.Join(dir, "model.onnx"), 1)
			if err != nil {
				t.Fatal(err)
			}
			checkParity(t, m, readReference(t, dir))
		})
	}
}
