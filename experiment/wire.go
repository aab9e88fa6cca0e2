package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// attackBatch is the batch size attacks run in; it does not change results
// of the deterministic attacks.
const attackBatch = 20

// DefaultBackend wires the project's packages: dataset for the data, nn for
// the classifiers, package defense for STL and the baselines, package
// attack for the attacks.
func DefaultBackend() Backend {
	b := Backend{
		Data:      loadData,
		Attack:    paperAttack,
		Baselines: registryBaselines,
		WhiteBox:  whiteBoxPGD,
		PGD:       pgdAt,
		// BPDA takes the exact gradient of transforms that provide one
		// (MagNet's reformer), the identity otherwise.
		Adaptive: func(t defense.Transform, m attack.Model, draws int) (attack.Model, error) {
			approx, _ := t.(attack.Approx)
			return attack.Adaptive(t, m, approx, draws)
		},
	}
	b.Classifier = defaultTrainer()
	db := defense.DefaultBackend()
	if db.TrainEncoder == nil || db.LearnDictionary == nil || db.NewProjector == nil {
		b.DefenseMissing = "the STL defense's backend is not wired yet (defense.DefaultBackend lacks the DAE, dictionary learning or projector)"
	} else {
		b.Defense = stlBuilder{db}
	}
	return b
}

// loadData loads cfg.Data with package dataset and checks the resolution.
func loadData(ctx context.Context, cfg Config) (train, test *dataset.Set, err error) {
	opts := dataset.DefaultLoadOptions()
	if cfg.Resolution > 0 {
		opts.Size = cfg.Resolution
	}
	train, test, err = dataset.LoadContext(ctx, cfg.Data, opts)
	if err != nil {
		return nil, nil, err
	}
	if s := train.Shape(); cfg.Resolution > 0 && (s.H != cfg.Resolution || s.W != cfg.Resolution) {
		return nil, nil, fmt.Errorf("%s holds %v images; resolution %d is not available for it", cfg.Data, s, cfg.Resolution)
	}
	return train, test, nil
}

// paperAttack returns the named attack with the paper's budgets (section
// 5.1: normalized L2 dissimilarity 0.08 or 0.04) and package attack's
// defaults otherwise, CW's iterations bounded by cfg.
func paperAttack(name string, cfg Config) (Attacker, any, string, error) {
	l2 := func(eps float64) attack.Budget { return attack.Budget{Norm: attack.L2Rel, Eps: eps} }
	var (
		a   attack.Attack
		err error
		set any
	)
	switch name {
	case AttackFGSM008, AttackFGSM004:
		o := attack.DefaultFGSMOptions()
		if name == AttackFGSM008 {
			o.Budget = l2(0.08)
		} else {
			o.Budget = l2(0.04)
		}
		a, err = attack.NewFGSM(o)
		set = o
	case AttackBIM:
		o := attack.DefaultBIMOptions()
		o.Budget = l2(0.04)
		a, err = attack.NewBIM(o)
		set = o
	case AttackDeepFool:
		o := attack.DefaultDeepFoolOptions()
		o.Budget = l2(0.04)
		a, err = attack.NewDeepFool(o)
		set = o
	case AttackCW:
		o := attack.DefaultCWOptions()
		o.Budget = l2(0.04)
		o.MaxIter, o.BinarySteps = cfg.CWIterations, cfg.CWBinarySteps
		a, err = attack.NewCW(o)
		set = o
	default:
		return nil, nil, "", fmt.Errorf("unknown attack %q", name)
	}
	if err != nil {
		return nil, nil, "", err
	}
	budget := "normalized L2 " + strings.TrimPrefix(name, "FGSM-")
	if !strings.HasPrefix(name, "FGSM") {
		budget = "normalized L2 0.04"
	}
	run := func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
		res, err := attack.RunBatched(ctx, a, m, x, labels, attackBatch, rep)
		if err != nil {
			return nil, err
		}
		return res.Adv, nil
	}
	return run, set, budget, nil
}

// whiteBoxPGD returns PGD at the paper's Table 4 budget, L-infinity 0.031,
// with cfg.WhiteBoxSteps steps, ascending loss (LossCE or LossCW), and
// package attack's other defaults (step 0.1 budget, random start seeded
// by the run seed), with kappa cfg.WhiteBoxCWKappa for the CW loss. For LossCE the options leave
// attack.PGDOptions.Loss empty, so that they encode, and the white-box
// stages' keys read, as before the loss existed.
func whiteBoxPGD(cfg Config, loss string) (Attacker, any, error) {
	o := pgdOptions(cfg, whiteBoxEps, cfg.WhiteBoxSteps)
	switch loss {
	case LossCE:
	case LossCW:
		o.Loss, o.Kappa = attack.LossCW, cfg.WhiteBoxCWKappa
	default:
		return nil, nil, fmt.Errorf("unknown white-box loss %q (want one of %s)", loss, strings.Join(AllWhiteBoxLosses, ", "))
	}
	return pgdAttacker(o)
}

// pgdAt returns PGD at L-infinity budget eps with steps iterations and
// the other settings of whiteBoxPGD with the cross-entropy, for the
// white-box sanity checks.
func pgdAt(cfg Config, eps float64, steps int) (Attacker, any, error) {
	return pgdAttacker(pgdOptions(cfg, eps, steps))
}

// pgdOptions returns package attack's PGD defaults at L-infinity eps with
// steps iterations, seeded by the run seed.
func pgdOptions(cfg Config, eps float64, steps int) attack.PGDOptions {
	o := attack.DefaultPGDOptions()
	o.Budget = attack.Budget{Norm: attack.LInf, Eps: eps}
	o.Steps, o.Seed = steps, uint64(cfg.Seed)
	return o
}

// pgdAttacker returns PGD with options o, run in batches, and o as its
// settings.
func pgdAttacker(o attack.PGDOptions) (Attacker, any, error) {
	a, err := attack.NewPGD(o)
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
		res, err := attack.RunBatched(ctx, a, m, x, labels, attackBatch, rep)
		if err != nil {
			return nil, err
		}
		return res.Adv, nil
	}, o, nil
}

// DefaultBaselines are the baselines "all" stands for in a run: one of each
// family of the paper's tables (JPEG, TVM, quilting, pixel deflection,
// feature squeezing, MagNet). The paper's Crop-Ens ("crop-tvm-quilt") costs
// more than all the others together (30 crops of TVM+quilting per image);
// name it explicitly to include it.
var DefaultBaselines = []string{"jpeg", "tvm", "quilt", "deflect", "squeeze", "magnet"}

// registryBaselines builds the baselines cfg names from package defense's
// registry, with the published parameters. What they learn from the clean
// training images (quilting's patch database, MagNet's auto-encoder, both
// seeded with the run seed) is prepared once, when a baseline is first
// built, and kept in dir.
func registryBaselines(ctx context.Context, cfg Config, train *dataset.Set, dir string, rep progress.Reporter) ([]Baseline, []Missing, error) {
	names := cfg.Baselines
	if len(names) == 1 && names[0] == "all" {
		names = DefaultBaselines
	}
	known := defense.BaselineNames()
	for _, name := range names {
		if !contains(known, name) {
			return nil, nil, &ConfigError{"baselines", fmt.Sprintf("unknown baseline %q (known: all, %s)", name, strings.Join(known, ", "))}
		}
	}
	popts := prepareOptions(cfg, dir)
	var (
		once     sync.Once
		prepared defense.BaselineConfig
		prepErr  error
	)
	prepare := func() (defense.BaselineConfig, error) {
		once.Do(func() {
			prepared, prepErr = defense.PrepareBaselines(ctx, defense.DefaultBaselineConfig(), names, train.Images, popts, rep)
		})
		return prepared, prepErr
	}
	var out []Baseline
	for _, name := range names {
		name := name
		out = append(out, Baseline{
			Name:     baselineRowName(name),
			Settings: baselineOptions(name, defense.DefaultBaselineConfig(), popts),
			New: func(seed uint64) (defense.Transform, error) {
				c, err := prepare()
				if err != nil {
					return nil, err
				}
				c.TVM.Seed, c.Quilt.Seed, c.Crop.Seed, c.Deflect.Seed = seed, seed+1, seed+2, seed+3
				return defense.NewBaseline(name, c)
			},
			Backward: baselineBackward(name),
		})
	}
	return out, nil, nil
}

// prepareOptions are the options of what baselines learn from the training
// images, seeded with the run seed.
func prepareOptions(cfg Config, dir string) defense.PrepareOptions {
	o := defense.DefaultPrepareOptions()
	o.Dir = dir
	o.PatchDB.Seed, o.MagNet.Seed = uint64(cfg.Seed), uint64(cfg.Seed)
	return o
}

// baselineOptions returns the options that matter for the named registry
// baseline, for the cache key and the report. Randomized baselines' seeds
// are derived per stage from the run seed (see RunWith), not these.
func baselineOptions(name string, c defense.BaselineConfig, p defense.PrepareOptions) map[string]any {
	o := map[string]any{"name": name}
	switch name {
	case "jpeg":
		o["jpeg"] = c.JPEG
	case "tvm":
		o["tvm"] = c.TVM
	case "quilt":
		o["quilt"], o["patch_db"] = c.Quilt, p.PatchDB
	case "tvm-quilt":
		o["tvm"], o["quilt"], o["patch_db"] = c.TVM, c.Quilt, p.PatchDB
	case "crop-ens":
		o["crop"] = c.Crop
	case "crop-tvm-quilt":
		o["tvm"], o["quilt"], o["crop"], o["patch_db"] = c.TVM, c.Quilt, c.Crop, p.PatchDB
	case "deflect":
		o["deflect"] = c.Deflect
	case "pd-ens":
		o["deflect"], o["ensemble"] = c.Deflect, c.PDEnsSize
	case "squeeze", "bitdepth", "median":
		o["squeeze"] = c.Squeeze
	case "magnet":
		o["auto_encoder"] = p.MagNet
	default:
		o["options"] = c
	}
	return o
}

// baselineBackward is Baseline.Backward of a registry baseline: exact for
// MagNet, whose reformer (*defense.MagNet) implements attack.Approx.
func baselineBackward(name string) string {
	if name == "magnet" {
		return BackwardExact
	}
	return ""
}

// baselineRowName is the table row of a registry baseline, with the
// paper's names where it has them.
func baselineRowName(name string) string {
	switch name {
	case "jpeg":
		return "JPEG"
	case "tvm":
		return "TVM"
	case "quilt":
		return "Quilting"
	case "tvm-quilt":
		return "TVM+Quilting"
	case "crop-ens":
		return "Crop ensemble"
	case "crop-tvm-quilt":
		return "Crop-Ens"
	case "deflect":
		return "Pixel deflection"
	case "pd-ens":
		return "PD-Ens"
	case "squeeze":
		return "Feature squeezing"
	case "bitdepth":
		return "Bit depth"
	case "median":
		return "Median"
	case "magnet":
		return "MagNet"
	}
	return name
}

// stlBuilder builds the STL defense with defense.Train.
type stlBuilder struct{ b defense.Backend }

func (s stlBuilder) Build(ctx context.Context, spec DefenseSpec, train *dataset.Set, dir string, rep progress.Reporter) error {
	o := defense.DefaultTrainOptions()
	o.Lambda, o.Filters, o.FilterSize, o.Clusters = spec.Lambda, spec.Filters, spec.FilterSize, spec.Clusters
	o.DictImages, o.DictIterations, o.DAEEpochs, o.Seed = spec.DictImages, spec.DictIterations, spec.DAEEpochs, spec.Seed
	o.Backend = s.b
	o.CheckpointDir = spec.CheckpointDir
	d, err := defense.Train(ctx, train.Images, o, rep)
	if err != nil {
		return err
	}
	return defense.Save(dir, d)
}

// DescribeDir implements DirDescriber: the saved defense's manifest, every
// hyperparameter it was built with, without the file checksums and the
// creation time (so identical runs describe it identically).
func (s stlBuilder) DescribeDir(dir string) (any, error) {
	m, err := defense.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	delete(v, "files")
	delete(v, "created")
	return v, nil
}

// Load implements DefenseBuilder: it reads the saved defense (dictionaries,
// DAE, PCA and codes) once; its transforms share them.
func (s stlBuilder) Load(dir string) (LoadedDefense, error) {
	d, err := defense.Load(dir)
	if err != nil {
		return nil, err
	}
	return loadedSTL{d: d, newProj: s.b.NewProjector}, nil
}

// loadedSTL is a saved STL defense read back, whose transforms project with
// newProj.
type loadedSTL struct {
	d       *defense.Defense
	newProj defense.ProjectorFactory
}

// Transforms implements LoadedDefense. The projectors of each call are new
// (they cache the dictionaries' spectra, so the run keeps those of lambda
// 0); the dictionaries and the DAE are shared. Both transforms are safe for
// concurrent use.
func (l loadedSTL) Transforms(lambda float64) (defense.Transform, defense.Transform, error) {
	d := l.d
	if lambda > 0 {
		at := *l.d
		at.Manifest.Lambda = lambda
		d = &at
	}
	u, c, err := d.Transforms(l.newProj)
	if err != nil {
		return nil, nil, err
	}
	return u, c, nil
}
