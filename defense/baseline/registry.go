package baseline

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stl-defense/stl/defense"
)

// Config holds the options of every baseline, so that a caller (the
// experiment runner, the command line) can build any of them by name. Each
// field's default is the published one (see the Default*Options functions).
type Config struct {
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
	// D3 configures "d3" (its patch side is D3Dict's).
	D3 D3Options
	// D3Dict is the patch dictionary of "d3", which returns
	// ErrNoD3Dictionary without one.
	D3Dict *D3Dictionary
}

// DefaultConfig returns the published parameters of every baseline
// (no database and no auto-encoder: those come from training data).
func DefaultConfig() Config {
	return Config{
		JPEG:      DefaultJPEGOptions(),
		TVM:       DefaultTVMOptions(),
		Quilt:     DefaultQuiltOptions(),
		Crop:      DefaultCropOptions(),
		Deflect:   DefaultDeflectOptions(),
		Squeeze:   DefaultSqueezeOptions(),
		PDEnsSize: 10,
		D3:        DefaultD3Options(),
	}
}

// Seeded returns c with the seeds of the randomized baselines derived from
// seed: TVM seed, quilting seed+1, the crops seed+2, pixel deflection
// seed+3.
func (c Config) Seeded(seed uint64) Config {
	c.TVM.Seed, c.Quilt.Seed, c.Crop.Seed, c.Deflect.Seed = seed, seed+1, seed+2, seed+3
	return c
}

// Backward is how a white-box attack differentiates through a baseline
// (BPDA, Athalye et al. 2018).
type Backward int

const (
	// BackwardIdentity takes the transform's backward pass as the
	// identity.
	BackwardIdentity Backward = iota
	// BackwardExact uses the exact vector-Jacobian product the transform
	// provides (a VJP method, as MagNet's reformer has).
	BackwardExact
)

// Option groups, the keys of Settings: the fields of Config and
// PrepareOptions a baseline is built from.
const (
	OptJPEG        = "jpeg"          // Config.JPEG
	OptTVM         = "tvm"           // Config.TVM
	OptQuilt       = "quilt"         // Config.Quilt
	OptCrop        = "crop"          // Config.Crop
	OptDeflect     = "deflect"       // Config.Deflect
	OptEnsemble    = "ensemble"      // Config.PDEnsSize
	OptSqueeze     = "squeeze"       // Config.Squeeze
	OptPatchDB     = "patch_db"      // PrepareOptions.PatchDB: needs a patch database
	OptAutoEncoder = "auto_encoder"  // PrepareOptions.MagNet: needs a trained auto-encoder
	OptD3          = "d3"            // Config.D3
	OptD3Dict      = "d3_dictionary" // PrepareOptions.D3: needs a D3 patch dictionary
)

// Entry is one registered baseline: what callers need to know about it
// before building it.
type Entry struct {
	// Name is how configuration files and flags name it, e.g. "jpeg".
	Name string
	// Label is its row in result tables, the paper's name where it has
	// one, e.g. "JPEG".
	Label string
	// Doc is a one-line description with the published parameters.
	Doc string
	// Options are the option groups (Opt*) it is built from, in the
	// order Settings lists them.
	Options []string
	// Backward is how white-box attacks differentiate through it.
	Backward Backward
	// Randomized reports whether it draws random numbers with the default
	// options (white-box evaluation then averages gradients, EOT).
	Randomized bool
	// Default marks the baselines a run takes for "all": one of each
	// family of the paper's tables (JPEG, TVM, quilting, pixel
	// deflection, feature squeezing, MagNet). The paper's Crop-Ens
	// ("crop-tvm-quilt") costs more than all the others together (30
	// crops of TVM+quilting per image) and must be named explicitly, as
	// must "d3", added after runs keyed on what "all" stood for had
	// started (adding it would add a row and its dictionary to them).
	Default bool
	build   func(c Config) (defense.Transform, error)
}

var registry = []Entry{
	{Name: "jpeg", Label: "JPEG", Doc: "JPEG compression, quality 75 (Das et al. 2017)",
		Options: []string{OptJPEG}, Default: true,
		build: func(c Config) (defense.Transform, error) { return NewJPEG(c.JPEG) }},
	{Name: "tvm", Label: "TVM", Doc: "total variation minimization, 50% pixel dropout, lambda 0.03 (Guo et al. 2018)",
		Options: []string{OptTVM}, Randomized: true, Default: true,
		build: func(c Config) (defense.Transform, error) { return NewTVM(c.TVM) }},
	{Name: "quilt", Label: "Quilting", Doc: "image quilting, 5x5 patches, overlap 2, one of the 10 nearest (Guo et al. 2018)",
		Options: []string{OptQuilt, OptPatchDB}, Randomized: true, Default: true,
		build: func(c Config) (defense.Transform, error) { return NewQuilting(c.QuiltDB, c.Quilt) }},
	{Name: "tvm-quilt", Label: "TVM+Quilting", Doc: "TVM then quilting (Guo et al. 2018)",
		Options: []string{OptTVM, OptQuilt, OptPatchDB}, Randomized: true,
		build: func(c Config) (defense.Transform, error) {
			return chainOf("TVM+Quilting", func() (defense.Transform, error) { return NewTVM(c.TVM) },
				func() (defense.Transform, error) { return NewQuilting(c.QuiltDB, c.Quilt) })
		}},
	{Name: "crop-ens", Label: "Crop ensemble", Doc: "average of 30 random 90/299 crops rescaled (Guo et al. 2018)",
		Options: []string{OptCrop}, Randomized: true,
		build: func(c Config) (defense.Transform, error) { return NewCropEnsemble(c.Crop) }},
	{Name: "crop-tvm-quilt", Label: "Crop-Ens", Doc: "TVM, quilting, then the crop ensemble: the paper's Crop-Ens (Guo et al. 2018)",
		Options: []string{OptTVM, OptQuilt, OptCrop, OptPatchDB}, Randomized: true,
		build: func(c Config) (defense.Transform, error) {
			return chainOf("Crop+TVM+Quilting", func() (defense.Transform, error) { return NewTVM(c.TVM) },
				func() (defense.Transform, error) { return NewQuilting(c.QuiltDB, c.Quilt) },
				func() (defense.Transform, error) { return NewCropEnsemble(c.Crop) })
		}},
	{Name: "deflect", Label: "Pixel deflection", Doc: "pixel deflection, 200 in a window of 10, BayesShrink Haar denoising in YCbCr (Prakash et al. 2018)",
		Options: []string{OptDeflect}, Randomized: true, Default: true,
		build: func(c Config) (defense.Transform, error) { return NewPixelDeflection(c.Deflect) }},
	{Name: "pd-ens", Label: "PD-Ens", Doc: "average of PDEnsSize pixel deflection runs",
		Options: []string{OptDeflect, OptEnsemble}, Randomized: true,
		build: func(c Config) (defense.Transform, error) {
			pd, err := NewPixelDeflection(c.Deflect)
			if err != nil {
				return nil, err
			}
			return NewEnsemble("PD-Ens", pd, c.PDEnsSize)
		}},
	{Name: "squeeze", Label: "Feature squeezing", Doc: "feature squeezing: 5-bit depth then 2x2 median (Xu et al. 2018)",
		Options: []string{OptSqueeze}, Default: true,
		build: func(c Config) (defense.Transform, error) { return NewSqueeze(c.Squeeze) }},
	{Name: "bitdepth", Label: "Bit depth", Doc: "bit-depth reduction alone (Xu et al. 2018)",
		Options: []string{OptSqueeze},
		build: func(c Config) (defense.Transform, error) {
			return NewSqueeze(SqueezeOptions{Bits: c.Squeeze.Bits})
		}},
	{Name: "median", Label: "Median", Doc: "median smoothing alone (Xu et al. 2018)",
		Options: []string{OptSqueeze},
		build: func(c Config) (defense.Transform, error) {
			return NewSqueeze(SqueezeOptions{Bits: 8, MedianSize: c.Squeeze.MedianSize})
		}},
	{Name: "magnet", Label: "MagNet", Doc: "MagNet's reformer: a denoising auto-encoder (Meng and Chen 2017)",
		Options: []string{OptAutoEncoder}, Backward: BackwardExact, Default: true,
		build: func(c Config) (defense.Transform, error) {
			if c.Reformer == nil {
				return nil, ErrNoReformer
			}
			return NewMagNet(c.Reformer)
		}},
	{Name: "d3", Label: "D3 (patch OMP)", Doc: "closest documented form of D3 (Moosavi-Dezfooli et al. 2018): 8x8 patches at stride 4, each the OMP fit of 5 of 10,000 clean training patches, overlaps averaged",
		Options: []string{OptD3, OptD3Dict},
		build:   func(c Config) (defense.Transform, error) { return NewD3(c.D3Dict, c.D3) }},
}

func chainOf(name string, makers ...func() (defense.Transform, error)) (defense.Transform, error) {
	steps := make([]defense.Transform, len(makers))
	for i, mk := range makers {
		t, err := mk()
		if err != nil {
			return nil, err
		}
		steps[i] = t
	}
	return NewChain(name, steps...)
}

// Entries returns every registered baseline, in a fixed order (the order
// of Names). The caller may modify the returned slice.
func Entries() []Entry { return append([]Entry(nil), registry...) }

// Names returns the names New accepts, in a fixed order.
func Names() []string { return namesWhere(func(Entry) bool { return true }) }

// DefaultNames returns the names of the baselines marked Default, in the
// order of Names.
func DefaultNames() []string { return namesWhere(func(e Entry) bool { return e.Default }) }

func namesWhere(keep func(Entry) bool) []string {
	var names []string
	for _, e := range registry {
		if keep(e) {
			names = append(names, e.Name)
		}
	}
	return names
}

// Lookup returns the entry of the named baseline, or an *UnknownError.
func Lookup(name string) (Entry, error) {
	if i := slices.IndexFunc(registry, func(e Entry) bool { return e.Name == name }); i >= 0 {
		return registry[i], nil
	}
	return Entry{}, &UnknownError{Name: name, Known: Names()}
}

// Doc returns a one-line description of the named baseline, or ""
// for an unknown name.
func Doc(name string) string {
	e, _ := Lookup(name)
	return e.Doc
}

// UnknownError reports a name the registry does not know.
type UnknownError struct {
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("defense: unknown baseline %q (known: %s)", e.Name, strings.Join(e.Known, ", "))
}

// New builds the named baseline (see Names) with the options of cfg. It
// returns an *UnknownError for an unknown name, the option errors of the
// constructors, ErrNoPatchDB, ErrNoReformer or ErrNoD3Dictionary when a
// baseline needs what cfg does not hold.
func New(name string, cfg Config) (defense.Transform, error) {
	e, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	return e.New(cfg)
}

// New builds the baseline with the options of cfg (see the package
// function New for the errors).
func (e Entry) New(cfg Config) (defense.Transform, error) {
	t, err := e.build(cfg)
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", e.Name, err)
	}
	return t, nil
}

// Needs reports what the baseline needs besides its options: a clean
// patch database (the quilting ones) and a trained auto-encoder
// ("magnet"). Learns tells whether it needs anything learned at all.
func (e Entry) Needs() (patchDB, reformer bool) {
	return e.uses(OptPatchDB), e.uses(OptAutoEncoder)
}

// Learns reports whether the baseline needs something learned from clean
// training images (a patch database, an auto-encoder, a D3 dictionary),
// which Prepare builds.
func (e Entry) Learns() bool {
	return e.uses(OptPatchDB) || e.uses(OptAutoEncoder) || e.uses(OptD3Dict)
}

func (e Entry) uses(opt string) bool { return slices.Contains(e.Options, opt) }

// Needs reports what the named baseline needs besides its options (see
// Entry.Needs). Unknown names need nothing.
func Needs(name string) (patchDB, reformer bool) {
	e, _ := Lookup(name)
	return e.Needs()
}

// Learns reports whether the named baseline learns from clean training
// images (see Entry.Learns). Unknown names learn nothing.
func Learns(name string) bool {
	e, _ := Lookup(name)
	return e.Learns()
}

// Settings returns the options the baseline is built from, for cache keys
// and reports: "name" and, for each of its option groups, the group's
// value in c or p (keys Opt*). It is a map so that its JSON encoding holds
// only what matters for this baseline, keys sorted.
func (e Entry) Settings(c Config, p PrepareOptions) map[string]any {
	groups := map[string]any{
		OptJPEG: c.JPEG, OptTVM: c.TVM, OptQuilt: c.Quilt, OptCrop: c.Crop, OptDeflect: c.Deflect,
		OptEnsemble: c.PDEnsSize, OptSqueeze: c.Squeeze, OptPatchDB: p.PatchDB, OptAutoEncoder: p.MagNet,
		OptD3: c.D3, OptD3Dict: p.D3,
	}
	s := map[string]any{"name": e.Name}
	for _, o := range e.Options {
		s[o] = groups[o]
	}
	return s
}
