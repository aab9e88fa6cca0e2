// Package torchparity compares classifiers with PyTorch's results on the
// fixtures of scripts/fixtures/torch_parity.py (nn/onnx/testdata/torch):
// for the tests of the ONNX and torchvision importers.
package torchparity

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Reference is one fixture's images, labels and PyTorch's logits and input
// gradient of the summed cross-entropy.
type Reference struct {
	X, Logits, Grad *tensor.Tensor
	Labels          []int
}

// Read reads the reference in dir (x.npy, labels.npy, logits.npy,
// grad.npy), failing t on error.
func Read(t testing.TB, dir string) Reference {
	t.Helper()
	var r Reference
	var err error
	for _, f := range []struct {
		name string
		dst  **tensor.Tensor
	}{{"x.npy", &r.X}, {"logits.npy", &r.Logits}, {"grad.npy", &r.Grad}} {
		if *f.dst, err = npy.ReadFile(filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	if r.Labels, err = npy.ReadIntsFile(filepath.Join(dir, "labels.npy")); err != nil {
		t.Fatal(err)
	}
	return r
}

// CrossEntropySeed returns the seed of the summed cross-entropy with
// labels: g = softmax(logits) - onehot(label), row by row.
func CrossEntropySeed(labels []int) func(logits, g *tensor.Tensor) {
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

// RelErr returns max |got - want| / max |want|.
func RelErr(got, want []float32) float64 {
	var d, m float64
	for i, w := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(w)))
		m = math.Max(m, math.Abs(float64(w)))
	}
	return d / m
}

// Model is what Check needs of a classifier.
type Model interface {
	InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (logits, grad *tensor.Tensor, err error)
}

// Check compares m's logits and input gradient of the summed
// cross-entropy on want.X with want's, failing t when either differs by
// more than tol relative (RelErr).
func Check(t testing.TB, m Model, want Reference, tol float64) {
	t.Helper()
	logits, grad, err := m.InputGrad(context.Background(), want.X, CrossEntropySeed(want.Labels))
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(logits, want.Logits) || !tensor.SameShape(grad, want.Grad) {
		t.Fatalf("shapes %v, %v; want %v, %v", logits.Shape, grad.Shape, want.Logits.Shape, want.Grad.Shape)
	}
	if e := RelErr(logits.Data, want.Logits.Data); e > tol {
		t.Errorf("logits differ by %.3g relative (want <= %g)", e, tol)
	}
	if e := RelErr(grad.Data, want.Grad.Data); e > tol {
		t.Errorf("input gradients differ by %.3g relative (want <= %g)", e, tol)
	}
}
