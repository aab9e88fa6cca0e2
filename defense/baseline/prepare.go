package baseline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// PrepareOptions configures Prepare.
type PrepareOptions struct {
	// Dir caches what is built, one file per artifact named after its
	// options ("quilt-p5-n100000-s1.qdb", "magnet-f3-l3-e10-s1.dae",
	// "d3-p8-k10000-st1-s1.d3d"): a file that exists is loaded instead of
	// rebuilt. The directory belongs to one training set. "" disables the
	// cache.
	Dir     string
	PatchDB PatchDBOptions
	MagNet  MagNetDAEOptions
	// D3 builds the dictionary of "d3".
	D3 D3DictionaryOptions
}

// DefaultPrepareOptions returns the default database and auto-encoder
// options and no cache.
func DefaultPrepareOptions() PrepareOptions {
	return PrepareOptions{PatchDB: DefaultPatchDBOptions(), MagNet: DefaultMagNetDAEOptions(), D3: DefaultD3DictionaryOptions()}
}

// D3DictionaryFile is the name Prepare caches the D3 dictionary of
// options o under in PrepareOptions.Dir.
func D3DictionaryFile(o D3DictionaryOptions) string {
	return fmt.Sprintf("d3-p%d-k%d-st%d-s%d.d3d", o.Patch, o.Atoms, o.Stride, o.Seed)
}

// Prepare returns cfg completed with what the named baselines need
// (see Needs and Learns) and cfg lacks: a patch database built from the
// clean training images train (N, C, H, W), a MagNet auto-encoder trained
// on them (its Channels taken from train) and a D3 dictionary drawn from
// them. Artifacts are loaded from, or
// atomically saved to, opts.Dir. It reports training progress to rep (nil
// for none) and checks ctx. Unknown names return an *UnknownError.
func Prepare(ctx context.Context, cfg Config, names []string, train *tensor.Tensor, opts PrepareOptions, rep progress.Reporter) (Config, error) {
	var needDB, needDAE, needD3 bool
	for _, n := range names {
		e, err := Lookup(n)
		if err != nil {
			return cfg, err
		}
		db, dae := e.Needs()
		needDB = needDB || (db && cfg.QuiltDB == nil)
		needDAE = needDAE || (dae && cfg.Reformer == nil)
		needD3 = needD3 || (e.uses(OptD3Dict) && cfg.D3Dict == nil)
	}
	if !needDB && !needDAE && !needD3 {
		return cfg, nil
	}
	if train == nil {
		return cfg, fmt.Errorf("defense: baselines %v need clean training images: %w", names, defense.ErrNilInput)
	}
	path := func(name string) string {
		if opts.Dir == "" {
			return ""
		}
		return filepath.Join(opts.Dir, name)
	}
	if needDB {
		o := opts.PatchDB
		db, err := loadOrBuild(path(fmt.Sprintf("quilt-p%d-st%d-n%d-s%d.qdb", o.Patch, o.Stride, o.MaxPatches, o.Seed)), LoadPatchDB, func() (*PatchDB, error) {
			return reportBuild(rep, "quilting patches", func() (*PatchDB, error) { return BuildPatchDB(ctx, train, o) },
				func(db *PatchDB) string { return fmt.Sprintf("%d patches", db.Len()) })
		})
		if err != nil {
			return cfg, err
		}
		cfg.QuiltDB = db
	}
	if needDAE {
		o := opts.MagNet
		if len(train.Shape) == 4 {
			o.Channels = train.Shape[1]
		}
		p := path(fmt.Sprintf("magnet-c%d-f%d-l%d-e%d-b%d-s%d.dae", o.Channels, o.Filters, o.Layers, o.Epochs, o.BatchSize, o.Seed))
		dae, err := loadOrBuild(p, LoadMagNetDAE, func() (*MagNetDAE, error) {
			dae, err := NewMagNetDAE(o)
			if err != nil {
				return nil, err
			}
			_, err = dae.Train(ctx, train, rep)
			return dae, err
		})
		if err != nil {
			return cfg, err
		}
		cfg.Reformer = dae
	}
	if needD3 {
		o := opts.D3
		dict, err := loadOrBuild(path(D3DictionaryFile(o)), LoadD3Dictionary, func() (*D3Dictionary, error) {
			return reportBuild(rep, "D3 dictionary", func() (*D3Dictionary, error) { return BuildD3Dictionary(ctx, train, o) },
				func(d *D3Dictionary) string { return fmt.Sprintf("%d atoms", d.Len()) })
		})
		if err != nil {
			return cfg, err
		}
		cfg.D3Dict = dict
	}
	return cfg, nil
}

// loadOrBuild loads the artifact at path (see loadCached) or, when there
// is none, builds it and saves it there (nothing is saved for path "").
func loadOrBuild[T any, PT interface {
	*T
	Save(string) error
}](path string, load func(string) (*T, error), build func() (*T, error)) (*T, error) {
	v, err := loadCached(path, load)
	if err != nil || v != nil {
		return v, err
	}
	if v, err = build(); err != nil {
		return nil, err
	}
	if path != "" {
		if err := PT(v).Save(path); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// reportBuild runs build as one step of progress stage, described by
// describe once done.
func reportBuild[T any](rep progress.Reporter, stage string, build func() (*T, error), describe func(*T) string) (*T, error) {
	rep = progress.Or(rep)
	rep.Report(stage, 0, 1, "")
	v, err := build()
	if err != nil {
		return nil, err
	}
	rep.Report(stage, 1, 1, describe(v))
	return v, nil
}

// loadCached loads path with load, returning nil and no error when path is
// "" or does not exist.
func loadCached[T any](path string, load func(string) (*T, error)) (*T, error) {
	if path == "" {
		return nil, nil
	}
	v, err := load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return v, err
}
