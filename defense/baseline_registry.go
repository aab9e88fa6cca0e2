package defense

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// BaselineConfig holds the options of every baseline, so that a caller (the
// experiment runner, the command line) can build any of them by name. Each
// field's default is the published one (see the Default*Options functions).
type BaselineConfig struct {
	JPEG    JPEGOptions
	TVM     TVMOptions
	Quilt   QuiltOptions
	Crop    CropOptions
	Deflect DeflectOptions
	Squeeze SqueezeOptions
	// PDEnsSize is the number of pixel deflection runs PD-Ens averages.
	// Default 10 (our choice: Prakash et al.'s "PD-Ens" row also uses R-CAM,
	// which needs the classifier; see DeflectOptions).
	PDEnsSize int
	// QuiltDB is the clean patch database of the quilting baselines
	// ("quilt", "tvm-quilt", "crop-tvm-quilt"); they return ErrNoPatchDB
	// without one.
	QuiltDB *PatchDB
	// Reformer is the trained auto-encoder of "magnet", which returns
	// ErrNoReformer without one.
	Reformer Reformer
}

// DefaultBaselineConfig returns the published parameters of every baseline
// (no database and no auto-encoder: those come from training data).
func DefaultBaselineConfig() BaselineConfig {
	return BaselineConfig{
		JPEG:      DefaultJPEGOptions(),
		TVM:       DefaultTVMOptions(),
		Quilt:     DefaultQuiltOptions(),
		Crop:      DefaultCropOptions(),
		Deflect:   DefaultDeflectOptions(),
		Squeeze:   DefaultSqueezeOptions(),
		PDEnsSize: 10,
	}
}

// baselineEntry is one registered baseline.
type baselineEntry struct {
	name, doc string
	build     func(cfg BaselineConfig) (Transform, error)
}

var baselineRegistry = []baselineEntry{
	{"jpeg", "JPEG compression, quality 75 (Das et al. 2017)", func(c BaselineConfig) (Transform, error) {
		return NewJPEG(c.JPEG)
	}},
	{"tvm", "total variation minimization, 50% pixel dropout, lambda 0.03 (Guo et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewTVM(c.TVM)
	}},
	{"quilt", "image quilting, 5x5 patches, overlap 2, one of the 10 nearest (Guo et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewQuilting(c.QuiltDB, c.Quilt)
	}},
	{"tvm-quilt", "TVM then quilting (Guo et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return chainOf("TVM+Quilting", func() (Transform, error) { return NewTVM(c.TVM) },
			func() (Transform, error) { return NewQuilting(c.QuiltDB, c.Quilt) })
	}},
	{"crop-ens", "average of 30 random 90/299 crops rescaled (Guo et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewCropEnsemble(c.Crop)
	}},
	{"crop-tvm-quilt", "TVM, quilting, then the crop ensemble: the paper's Crop-Ens (Guo et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return chainOf("Crop+TVM+Quilting", func() (Transform, error) { return NewTVM(c.TVM) },
			func() (Transform, error) { return NewQuilting(c.QuiltDB, c.Quilt) },
			func() (Transform, error) { return NewCropEnsemble(c.Crop) })
	}},
	{"deflect", "pixel deflection, 200 in a window of 10, BayesShrink Haar denoising in YCbCr (Prakash et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewPixelDeflection(c.Deflect)
	}},
	{"pd-ens", "average of PDEnsSize pixel deflection runs", func(c BaselineConfig) (Transform, error) {
		pd, err := NewPixelDeflection(c.Deflect)
		if err != nil {
			return nil, err
		}
		return NewEnsemble("PD-Ens", pd, c.PDEnsSize)
	}},
	{"squeeze", "feature squeezing: 5-bit depth then 2x2 median (Xu et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewSqueeze(c.Squeeze)
	}},
	{"bitdepth", "bit-depth reduction alone (Xu et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewSqueeze(SqueezeOptions{Bits: c.Squeeze.Bits})
	}},
	{"median", "median smoothing alone (Xu et al. 2018)", func(c BaselineConfig) (Transform, error) {
		return NewSqueeze(SqueezeOptions{Bits: 8, MedianSize: c.Squeeze.MedianSize})
	}},
	{"magnet", "MagNet's reformer: a denoising auto-encoder (Meng and Chen 2017)", func(c BaselineConfig) (Transform, error) {
		if c.Reformer == nil {
			return nil, ErrNoReformer
		}
		return NewMagNet(c.Reformer)
	}},
}

func chainOf(name string, makers ...func() (Transform, error)) (Transform, error) {
	steps := make([]Transform, len(makers))
	for i, mk := range makers {
		t, err := mk()
		if err != nil {
			return nil, err
		}
		steps[i] = t
	}
	return NewChain(name, steps...)
}

// BaselineNames returns the names NewBaseline accepts, in a fixed order.
func BaselineNames() []string {
	names := make([]string, len(baselineRegistry))
	for i, e := range baselineRegistry {
		names[i] = e.name
	}
	return names
}

// BaselineDoc returns a one-line description of the named baseline, or ""
// for an unknown name.
func BaselineDoc(name string) string {
	for _, e := range baselineRegistry {
		if e.name == name {
			return e.doc
		}
	}
	return ""
}

// UnknownBaselineError reports a name NewBaseline does not know.
type UnknownBaselineError struct {
	Name  string
	Known []string
}

func (e *UnknownBaselineError) Error() string {
	return fmt.Sprintf("defense: unknown baseline %q (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

// NewBaseline builds the named baseline (see BaselineNames) with the options
// of cfg. It returns an *UnknownBaselineError for an unknown name, the
// option errors of the constructors, ErrNoPatchDB or ErrNoReformer when a
// baseline needs what cfg does not hold.
func NewBaseline(name string, cfg BaselineConfig) (Transform, error) {
	for _, e := range baselineRegistry {
		if e.name == name {
			t, err := e.build(cfg)
			if err != nil {
				return nil, fmt.Errorf("baseline %s: %w", name, err)
			}
			return t, nil
		}
	}
	return nil, &UnknownBaselineError{Name: name, Known: BaselineNames()}
}

// BaselineNeeds reports what the named baseline needs besides its options:
// a clean patch database (the quilting ones) and a trained auto-encoder
// ("magnet"). Unknown names need nothing.
func BaselineNeeds(name string) (patchDB, reformer bool) {
	switch name {
	case "quilt", "tvm-quilt", "crop-tvm-quilt":
		return true, false
	case "magnet":
		return false, true
	}
	return false, false
}

// PrepareOptions configures PrepareBaselines.
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

// PrepareBaselines returns cfg completed with what the named baselines need
// (see BaselineNeeds) and cfg lacks: a patch database built from the clean
// training images train (N, C, H, W) and a MagNet auto-encoder trained on
// them (its Channels taken from train). Artifacts are loaded from, or
// atomically saved to, opts.Dir. It reports training progress to rep (nil
// for none) and checks ctx. Unknown names return an *UnknownBaselineError.
func PrepareBaselines(ctx context.Context, cfg BaselineConfig, names []string, train *tensor.Tensor, opts PrepareOptions, rep progress.Reporter) (BaselineConfig, error) {
	var needDB, needDAE bool
	for _, n := range names {
		if BaselineDoc(n) == "" {
			return cfg, &UnknownBaselineError{Name: n, Known: BaselineNames()}
		}
		db, dae := BaselineNeeds(n)
		needDB = needDB || (db && cfg.QuiltDB == nil)
		needDAE = needDAE || (dae && cfg.Reformer == nil)
	}
	if !needDB && !needDAE {
		return cfg, nil
	}
	if train == nil {
		return cfg, fmt.Errorf("defense: baselines %v need clean training images: %w", names, ErrNilInput)
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
