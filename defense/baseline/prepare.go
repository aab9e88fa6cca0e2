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
	// options ("quilt-p5-n100000-s1.qdb", "magnet-f3-l3-e10-s1.dae"): a file
	// that exists is loaded instead of rebuilt. The directory belongs to one
	// training set. "" disables the cache.
	Dir     string
	PatchDB PatchDBOptions
	MagNet  MagNetDAEOptions
}

// DefaultPrepareOptions returns the default database and auto-encoder
// options and no cache.
func DefaultPrepareOptions() PrepareOptions {
	return PrepareOptions{PatchDB: DefaultPatchDBOptions(), MagNet: DefaultMagNetDAEOptions()}
}

// Prepare returns cfg completed with what the named baselines need
// (see Needs) and cfg lacks: a patch database built from the clean
// training images train (N, C, H, W) and a MagNet auto-encoder trained on
// them (its Channels taken from train). Artifacts are loaded from, or
// atomically saved to, opts.Dir. It reports training progress to rep (nil
// for none) and checks ctx. Unknown names return an *UnknownError.
func Prepare(ctx context.Context, cfg Config, names []string, train *tensor.Tensor, opts PrepareOptions, rep progress.Reporter) (Config, error) {
	var needDB, needDAE bool
	for _, n := range names {
		e, err := Lookup(n)
		if err != nil {
			return cfg, err
		}
		db, dae := e.Needs()
		needDB = needDB || (db && cfg.QuiltDB == nil)
		needDAE = needDAE || (dae && cfg.Reformer == nil)
	}
	if !needDB && !needDAE {
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
