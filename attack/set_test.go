package attack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stl-defense/stl/npy"
)

func TestSetRoundTrip(t *testing.T) {
	f := getFixture(t)
	a, err := NewBIM(DefaultBIMOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Run(context.Background(), f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(a, f.labels, r)
	if err != nil {
		t.Fatal(err)
	}
	s.Meta.Model, s.Meta.Data = "mlp", "synthetic"
	dir := filepath.Join(t.TempDir(), "bim")
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	// Saving again over the same directory works.
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !equalBits(got.Adv, r.Adv) {
		t.Error("adversarial images not bit-identical after reload")
	}
	if !reflect.DeepEqual(got.Labels, f.labels) {
		t.Error("labels differ after reload")
	}
	if !reflect.DeepEqual(got.Meta.Dissim, r.Dissim) || !reflect.DeepEqual(got.Meta.LInf, r.LInf) ||
		!reflect.DeepEqual(got.Meta.Success, r.Success) || !reflect.DeepEqual(got.Meta.AdvPred, r.AdvPred) {
		t.Error("per-image figures differ after reload")
	}
	if got.Meta.Attack != "BIM-0.04" || got.Meta.Budget != (Budget{Norm: L2Rel, Eps: 0.04}) || got.Meta.Model != "mlp" {
		t.Errorf("metadata %+v", got.Meta)
	}
	var o BIMOptions
	if err := json.Unmarshal(got.Meta.Options, &o); err != nil || o != DefaultBIMOptions() {
		t.Errorf("options %s decode to %+v (%v)", got.Meta.Options, o, err)
	}

	// Inconsistent files are reported.
	if err := npy.WriteIntsFile(filepath.Join(dir, LabelsFile), f.labels[:3]); err != nil {
		t.Fatal(err)
	}
	var se *SetError
	if _, err := LoadSet(dir); !errors.As(err, &se) {
		t.Errorf("short labels: %v, want *SetError", err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetaFile), []byte(`{"format":"other","version":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSet(dir); !errors.As(err, &se) {
		t.Errorf("foreign meta.json: %v, want *SetError", err)
	}
	if _, err := LoadSet(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty directory: %v, want os.ErrNotExist", err)
	}
}

// cancelAfter cancels its context once done reaches n images.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Report(_ string, done, _ int, _ string) {
	if done >= c.n {
		c.cancel()
	}
}

func TestRunBatchesResume(t *testing.T) {
	f := getFixture(t)
	a, err := NewBIM(DefaultBIMOptions())
	if err != nil {
		t.Fatal(err)
	}
	want, err := a.Run(context.Background(), f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	o := BatchOptions{Size: 25, CheckpointDir: dir, Key: "k1"}

	// Interrupted after the first batch.
	ctx, cancel := context.WithCancel(context.Background())
	o.Progress = &cancelAfter{n: 25, cancel: cancel}
	if _, err := RunBatches(ctx, a, f.m, f.x, f.labels, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	// Resumed: only the two remaining batches are computed.
	o.Progress = nil
	before := f.m.passes.Load()
	got, err := RunBatches(context.Background(), a, f.m, f.x, f.labels, o)
	if err != nil {
		t.Fatal(err)
	}
	if p := f.m.passes.Load() - before; p != 2*11 {
		t.Errorf("resumed run made %d passes, want 22 (2 batches of 10 steps + final forward)", p)
	}
	if !equalBits(got.Adv, want.Adv) || !reflect.DeepEqual(got.Dissim, want.Dissim) || !reflect.DeepEqual(got.Success, want.Success) {
		t.Error("resumed result differs from an uninterrupted run")
	}
	// Everything checkpointed: no pass at all; another key recomputes.
	before = f.m.passes.Load()
	if _, err := RunBatches(context.Background(), a, f.m, f.x, f.labels, o); err != nil {
		t.Fatal(err)
	}
	if p := f.m.passes.Load() - before; p != 0 {
		t.Errorf("fully checkpointed run made %d passes", p)
	}
	o.Key = "k2"
	before = f.m.passes.Load()
	if _, err := RunBatches(context.Background(), a, f.m, f.x, f.labels, o); err != nil {
		t.Fatal(err)
	}
	if p := f.m.passes.Load() - before; p != 3*11 {
		t.Errorf("run under a new key made %d passes, want 33", p)
	}
}

// TestSetFixture reads a set written by version 1 of the format.
func TestSetFixture(t *testing.T) {
	s, err := LoadSet("testdata/set-v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0.45, 0.55, 0.3, 0.7}; !reflect.DeepEqual(s.Adv.Data, want) || !reflect.DeepEqual(s.Adv.Shape, []int{2, 1, 1, 2}) {
		t.Errorf("images %v %v, want %v", s.Adv.Shape, s.Adv.Data, want)
	}
	m := s.Meta
	if m.Attack != "FGSM-linf0.15" || m.Budget != (Budget{Norm: LInf, Eps: 0.15}) || !reflect.DeepEqual(s.Labels, []int{0, 1}) ||
		!reflect.DeepEqual(m.Indices, []int{4, 9}) || !reflect.DeepEqual(m.Success, []bool{true, false}) ||
		m.Dissim[0] != 0.2357022603955158 || m.Passes != 1 {
		t.Errorf("metadata %+v", m)
	}
	var o FGSMOptions
	if err := json.Unmarshal(m.Options, &o); err != nil || o.Budget != m.Budget {
		t.Errorf("options %s: %+v, %v", m.Options, o, err)
	}
}

// FuzzLoadSet feeds arbitrary meta.json content next to valid arrays:
// LoadSet must return an error or a consistent set, never panic.
func FuzzLoadSet(f *testing.F) {
	seed, err := os.ReadFile("testdata/set-v1/meta.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"format":"stl-adversarial-set","version":1,"shape":[2,1,1,2]}`))
	f.Add([]byte(`{"format":"stl-adversarial-set","version":1,"shape":[-2,1,1,2],"dissim":[1,2]}`))
	adv, err := os.ReadFile("testdata/set-v1/adv.npy")
	if err != nil {
		f.Fatal(err)
	}
	labels, err := os.ReadFile("testdata/set-v1/labels.npy")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, meta []byte) {
		s, err := DecodeSet("fuzz", meta, bytes.NewReader(adv), bytes.NewReader(labels))
		if err != nil {
			return
		}
		n := s.Adv.Shape[0]
		if len(s.Labels) != n || len(s.Meta.Dissim) != n || len(s.Meta.Success) != n {
			t.Fatalf("inconsistent set accepted: %d images, %d labels", n, len(s.Labels))
		}
	})
}
