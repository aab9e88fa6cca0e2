package stlbeam

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
)

// predictReference writes what `stl predict --json` prints for o: the
// library calls of the command (experiment.LoadModel, LoadTransform,
// LoadPredictInput, Predict), each prediction and then the summary encoded
// as the command encodes them.
func predictReference(t *testing.T, o PredictOptions, out string) {
	t.Helper()
	ctx := context.Background()
	m, err := experiment.LoadModel(o.Model, o.Threads)
	if err != nil {
		t.Fatal(err)
	}
	c, h, w := m.InputShape()
	var tr experiment.LoadedTransform
	if o.Defense != "" {
		lt, err := experiment.LoadTransform(o.Defense, o.Universal)
		if err != nil {
			t.Fatal(err)
		}
		tr = *lt
	}
	set, labeled, err := experiment.LoadPredictInput(ctx, o.Input, dataset.Shape{C: c, H: h, W: w}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var labels []int
	if labeled {
		labels = set.Labels
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	sum, err := experiment.Predict(ctx, m, tr.Transform, set.Images, labels, o.Batch, func(p experiment.Prediction) error { return enc.Encode(p) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(sum); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPredictPipeline classifies sharded sets on prism and checks the
// merged lines against `stl predict --json`'s, byte for byte: the sample's
// test images (labeled, the first 23), and an .npy without labels through
// an STL (cluster) defense.
func TestPredictPipeline(t *testing.T) {
	dir := t.TempDir()
	model := tinyClassifier(t, dir)
	def := tinyDefense(t, dir)
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare.npy")
	if err := experiment.WriteImages(bare, test.Head(10), true, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    PredictOptions
	}{
		{"sample", PredictOptions{Input: experiment.PredictInput{Data: dataset.DefaultSpec, Limit: 23}, Batch: 4, Sharding: Sharding{Shards: 4, Workers: 2}}},
		{"defended-unlabeled", PredictOptions{Input: experiment.PredictInput{In: bare}, Defense: def, Batch: 3, Sharding: Sharding{Shards: 3}}},
	} {
		o := c.o
		o.Model, o.Out = model, filepath.Join(dir, c.name+".jsonl")
		ref := filepath.Join(dir, c.name+"-ref.jsonl")
		predictReference(t, o.withDefaults(), ref)
		if _, _, err := runPipeline(t, func(s beam.Scope) error { _, err := Predict(s, o); return err }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		same(t, ref, o.Out)
	}
	if sum, err := ReadPredictSummary(filepath.Join(dir, "sample.jsonl")); err != nil || sum.Images != 23 || sum.Accuracy == nil {
		t.Errorf("sample summary %+v, %v: want 23 labeled images", sum, err)
	}
}
