package baseline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/tensor"
)

func TestBaselineRegistry(t *testing.T) {
	cfg := DefaultConfig()
	if _, err := New("no-such-defense", cfg); err == nil {
		t.Fatal("unknown name accepted")
	} else {
		var ue *UnknownError
		if !errors.As(err, &ue) {
			t.Fatalf("error %v is not an *UnknownError", err)
		}
	}
	for _, name := range []string{"quilt", "crop-tvm-quilt"} {
		if _, err := New(name, cfg); !errors.Is(err, ErrNoPatchDB) {
			t.Errorf("%s without a database: %v, want ErrNoPatchDB", name, err)
		}
	}
	if _, err := New("magnet", cfg); !errors.Is(err, ErrNoReformer) {
		t.Errorf("magnet without a DAE: %v, want ErrNoReformer", err)
	}
	if _, err := New("d3", cfg); !errors.Is(err, ErrNoD3Dictionary) {
		t.Errorf("d3 without a dictionary: %v, want ErrNoD3Dictionary", err)
	}
	bad := cfg
	bad.JPEG.Quality = 0
	if _, err := New("jpeg", bad); err == nil {
		t.Error("bad JPEG quality accepted through the registry")
	}
	seen := map[string]bool{}
	for _, n := range Names() {
		if seen[n] {
			t.Errorf("duplicate name %q", n)
		}
		seen[n] = true
	}
}

func TestPrepareBaselines(t *testing.T) {
	ctx := context.Background()
	train := loadBaselineStrip(t, "cifar-train16.png")
	dir := t.TempDir()
	opts := DefaultPrepareOptions()
	opts.Dir = dir
	opts.PatchDB.MaxPatches = 500
	opts.MagNet.Epochs = 1
	opts.D3.Atoms = 300
	cfg := DefaultConfig()
	// Nothing needed: nothing built, no training data required.
	got, err := Prepare(ctx, cfg, []string{"jpeg", "tvm"}, nil, opts, nil)
	if err != nil || got.QuiltDB != nil || got.Reformer != nil {
		t.Fatalf("jpeg, tvm: %v", err)
	}
	if _, err := Prepare(ctx, cfg, []string{"quilt"}, nil, opts, nil); !errors.Is(err, defense.ErrNilInput) {
		t.Errorf("quilt without training data: %v", err)
	}
	var ue *UnknownError
	if _, err := Prepare(ctx, cfg, []string{"nope"}, train, opts, nil); !errors.As(err, &ue) {
		t.Errorf("unknown name: %v", err)
	}
	got, err = Prepare(ctx, cfg, []string{"crop-tvm-quilt", "magnet", "d3"}, train, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.QuiltDB == nil || got.QuiltDB.Len() != 500 || got.Reformer == nil || got.D3Dict == nil || got.D3Dict.Len() != 300 {
		t.Fatal("database, auto-encoder or D3 dictionary missing")
	}
	for _, name := range []string{"crop-tvm-quilt", "magnet", "d3"} {
		if _, err := New(name, got); err != nil {
			t.Errorf("%s after Prepare: %v", name, err)
		}
	}
	// The second call loads the cached artifacts: identical values.
	again, err := Prepare(ctx, cfg, []string{"quilt", "magnet", "d3"}, train, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equalF32(again.QuiltDB.Data, got.QuiltDB.Data) {
		t.Error("cached database differs")
	}
	if _, err := os.Stat(filepath.Join(dir, D3DictionaryFile(opts.D3))); err != nil || !equalF32(again.D3Dict.Data, got.D3Dict.Data) {
		t.Errorf("cached D3 dictionary differs or is missing (%v)", err)
	}
	x := baselineRandBatch(1, 1, 3, 8, 8)
	a, _ := got.Reformer.Reconstruct(ctx, x)
	b, _ := again.Reformer.Reconstruct(ctx, x)
	if !equalF32(a.Data, b.Data) {
		t.Error("cached auto-encoder differs")
	}
}

// TestRegistryEntries checks what the registry states about each baseline
// against the transform it builds with the default options: randomized or
// not, an exact backward pass exactly when the transform has a VJP, and
// distinct names and labels.
func TestRegistryEntries(t *testing.T) {
	db, err := LoadPatchDB(filepath.Join("testdata", "tiny.qdb"))
	if err != nil {
		t.Fatal(err)
	}
	dae, err := LoadMagNetDAE(filepath.Join("testdata", "tiny.dae"))
	if err != nil {
		t.Fatal(err)
	}
	dict, err := LoadD3Dictionary(filepath.Join("testdata", "tiny.d3d"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.QuiltDB, cfg.Reformer, cfg.D3Dict = db, dae, dict
	labels := map[string]bool{}
	for _, e := range Entries() {
		if e.Label == "" || labels[e.Label] || e.Doc == "" || len(e.Options) == 0 {
			t.Errorf("%s: label %q (seen: %v), doc %q, options %v", e.Name, e.Label, labels[e.Label], e.Doc, e.Options)
		}
		labels[e.Label] = true
		tr, err := New(e.Name, cfg)
		if err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		if tr.Randomized() != e.Randomized {
			t.Errorf("%s: registry says randomized %v, the transform %v", e.Name, e.Randomized, tr.Randomized())
		}
		_, vjp := tr.(interface {
			VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error)
		})
		if vjp != (e.Backward == BackwardExact) {
			t.Errorf("%s: backward %v, transform has a VJP: %v", e.Name, e.Backward, vjp)
		}
		db, dae := e.Needs()
		if db != slices.Contains(e.Options, OptPatchDB) || dae != slices.Contains(e.Options, OptAutoEncoder) {
			t.Errorf("%s: needs %v %v for options %v", e.Name, db, dae, e.Options)
		}
		if e.Learns() != (db || dae || slices.Contains(e.Options, OptD3Dict)) {
			t.Errorf("%s: learns %v for options %v", e.Name, e.Learns(), e.Options)
		}
		if s := e.Settings(cfg, DefaultPrepareOptions()); len(s) != len(e.Options)+1 || s["name"] != e.Name {
			t.Errorf("%s: settings %v", e.Name, s)
		}
	}
	if got := DefaultNames(); !slices.Equal(got, []string{"jpeg", "tvm", "quilt", "deflect", "squeeze", "magnet"}) {
		t.Errorf("DefaultNames() = %v", got)
	}
	if _, err := Lookup("nope"); err == nil {
		t.Error("Lookup of an unknown name succeeded")
	}
}
