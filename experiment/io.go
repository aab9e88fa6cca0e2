package experiment

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Batch sizes for inference and transforms; they do not change results.
// predictBatch is the inference batch up to 64x64 images; larger images
// get predictPixels / (H*W) of them (predictBatchFor).
const (
	predictBatch   = 100
	predictPixels  = predictBatch * 64 * 64
	transformBatch = 25
)

// predictBatchFor returns the inference batch for images of shape
// [N, C, H, W]: predictBatch up to 64x64, then as many as fit
// predictPixels (25 at 128 px, 8 at 224 px), at least 1. A classifier's
// activations grow with the image area (ResNet-50 at 224 px: a batch of 100
// held 24 GB, more than the machines of docs/scale.md have).
func predictBatchFor(shape []int) int {
	if len(shape) < 4 || shape[2]*shape[3] <= 0 {
		return predictBatch
	}
	return max(1, min(predictBatch, predictPixels/(shape[2]*shape[3])))
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slug turns a row or attack name into a stage-name fragment:
// "STL (cluster)" -> "stl-cluster", "FGSM-0.08" -> "fgsm-0-08".
func slug(name string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
}

// predict returns the classes m predicts for x, in batches.
func predict(ctx context.Context, m attack.Model, x *tensor.Tensor) ([]int, error) {
	n, batch := x.Shape[0], predictBatchFor(x.Shape)
	pred := make([]int, 0, n)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		xb := x.Batch(lo, hi)
		logits, err := m.Logits(ctx, xb)
		if err != nil {
			return nil, err
		}
		pred = append(pred, logits.ArgmaxRows(nil)...)
	}
	return pred, nil
}

func jsonRaw(v any) (json.RawMessage, error) { return json.Marshal(v) }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return safefile.WriteBytes(path, append(b, '\n'))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// readImages reads a stage's .npy images and checks their shape, so that a
// tampered or truncated stage is an error rather than wrong numbers.
func readImages(path string, shape []int) (*tensor.Tensor, error) {
	t, err := npy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	want := &tensor.Tensor{Shape: shape}
	if !tensor.SameShape(t, want) {
		return nil, &tensor.ShapeError{Op: "read " + path, Want: shape, Got: t.Shape}
	}
	return t, nil
}
