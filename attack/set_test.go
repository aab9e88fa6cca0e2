package attack

import (
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
	if got.Meta.Attack != "BIM-0.04" || got.Meta.Budget != (Budget{L2Rel, 0.04}) || got.Meta.Model != "mlp" {
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
