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
		p := path(fmt.Sprintf("quilt-p%d-st%d-n%d-s%d.qdb", o.Patch, o.Stride, o.MaxPatches, o.Seed))
		db, err := loadCached(p, LoadPatchDB)
		if err != nil {
			return cfg, err
		}
		if db == nil {
			rep := progress.Or(rep)
			rep.Report("quilting patches", 0, 1, "")
			if db, err = BuildPatchDB(ctx, train, o); err != nil {
				return cfg, err
			}
			rep.Report("quilting patches", 1, 1, fmt.Sprintf("%d patches", db.Len()))
			if p != "" {
				if err := db.Save(p); err != nil {
					return cfg, err
				}
			}
		}
		cfg.QuiltDB = db
	}
	if needDAE {
		o := opts.MagNet
		if len(train.Shape) == 4 {
			o.Channels = train.Shape[1]
		}
		p := path(fmt.Sprintf("magnet-c%d-f%d-l%d-e%d-b%d-s%d.dae", o.Channels, o.Filters, o.Layers, o.Epochs, o.BatchSize, o.Seed))
		dae, err := loadCached(p, LoadMagNetDAE)
		if err != nil {
			return cfg, err
		}
		if dae == nil {
			if dae, err = NewMagNetDAE(o); err != nil {
				return cfg, err
			}
			if _, err := dae.Train(ctx, train, rep); err != nil {
				return cfg, err
			}
			if p != "" {
				if err := dae.Save(p); err != nil {
					return cfg, err
				}
			}
		}
		cfg.Reformer = dae
	}
	if needD3 {
		o := opts.D3
		p := path(D3DictionaryFile(o))
		dict, err := loadCached(p, LoadD3Dictionary)
		if err != nil {
			return cfg, err
		}
		if dict == nil {
			rep := progress.Or(rep)
			rep.Report("D3 dictionary", 0, 1, "")
			if dict, err = BuildD3Dictionary(ctx, train, o); err != nil {
				return cfg, err
			}
			rep.Report("D3 dictionary", 1, 1, fmt.Sprintf("%d atoms", dict.Len()))
			if p != "" {
				if err := dict.Save(p); err != nil {
					return cfg, err
				}
			}
		}
		cfg.D3Dict = dict
	}
	return cfg, nil
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
