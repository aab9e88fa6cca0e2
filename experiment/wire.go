package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// attackBatch is the batch size attacks run in; it does not change results
// of the deterministic attacks.
const attackBatch = 20

// DefaultBackend wires the project's packages: dataset for the data, nn for
// the classifiers, package defense for STL, package baseline for the
// baselines, package attack for the attacks.
func DefaultBackend() Backend {
	b := Backend{
		Data:      loadData,
		Attack:    paperAttack,
		Strength:  paperStrength,
		Baselines: registryBaselines,
		WhiteBox:  whiteBoxPGD,
		PGD:       pgdAt,
		// BPDA takes the exact gradient of transforms that provide one
		// (MagNet's reformer), the identity otherwise: the suite's bpda
		// route in a run (suiteBPDA).
		Adaptive: func(t defense.Transform, m attack.Model, draws int) (attack.Model, error) {
			approx, err := suiteBPDA.Backward(t)
			if err != nil {
				return nil, err
			}
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

// hasDropout reports whether the classifier arch has dropout layers.
func hasDropout(arch string) bool {
	a, _ := nn.LookupClassifierArch(arch)
	return a.Dropout
}

// dropoutArchs names the classifier architectures with dropout layers.
func dropoutArchs() []string {
	var names []string
	for _, a := range nn.ClassifierArchs() {
		if a.Dropout {
			names = append(names, a.Name)
		}
	}
	return names
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

// paperAttack returns the named attack (one of AllAttacks) with the
// budgets of the run's protocol (attack.Protocol; the text's: normalized
// L2 dissimilarity 0.08 or 0.04, section 5.1) and package attack's
// defaults otherwise, CW's iterations bounded by cfg, its images rounded
// to 8 bits inside the budget when the run rounds (roundedFor). Under the
// guo protocol the budgets are measured in m's input normalization.
func paperAttack(name string, cfg Config, m attack.Model) (Attacker, any, string, error) {
	s, c, err := paperSetting(name, cfg, m)
	if err != nil {
		return nil, nil, "", err
	}
	a, set, err := s.New(c)
	if err != nil {
		return nil, nil, "", err
	}
	return batched(roundedFor(cfg, a)), set, budgetText(s.Budget), nil
}

// roundedFor returns a with its images rounded to 8 bits inside its budget
// (attack.Rounded) when the run rounds (Config.Round8 or a rounding
// protocol), a otherwise.
func roundedFor(cfg Config, a attack.Attack) attack.Attack {
	if cfg.round8() {
		return attack.Rounded(a)
	}
	return a
}

// paperSetting returns the setting and options paperAttack builds from.
func paperSetting(name string, cfg Config, m attack.Model) (attack.Setting, attack.Config, error) {
	s, err := cfg.protocol().Setting(name)
	if err != nil || s.Route != attack.GrayBox {
		return s, attack.Config{}, fmt.Errorf("unknown attack %q", name)
	}
	if s.Budget.Norm == attack.L2Z {
		if s.Budget.Normalization, err = inputNormalization(m); err != nil {
			return s, attack.Config{}, err
		}
	}
	c := attack.DefaultConfig()
	c.CW.MaxIter, c.CW.BinarySteps = cfg.CWIterations, cfg.CWBinarySteps
	return s, c, nil
}

// paperStrength is paperAttack's attack with its strength knob
// (attack.Setting.Knob): the budget of FGSM and BIM, DeepFool's
// and CW's overshoot with their cap lifted, rounded as paperAttack's.
func paperStrength(name string, cfg Config, m attack.Model) (attack.Knob, func(float64) (Attacker, any, error), error) {
	s, c, err := paperSetting(name, cfg, m)
	if err != nil {
		return attack.Knob{}, nil, err
	}
	return s.Knob(), func(v float64) (Attacker, any, error) {
		a, set, err := s.WithStrength(c, v)
		if err != nil {
			return nil, nil, err
		}
		return batched(roundedFor(cfg, a)), set, nil
	}, nil
}

// Normalizer is a classifier that normalizes its input per channel,
// z = (x - mean)/std, before its first layer (package nn's classifiers).
type Normalizer interface {
	Config() nn.ClassifierConfig
}

// inputNormalization returns the per-channel input normalization of m,
// for budgets measured on normalized tensors (attack.L2Z).
func inputNormalization(m attack.Model) (*attack.Normalization, error) {
	c, ok := m.(Normalizer)
	if !ok {
		return nil, fmt.Errorf("the guo protocol measures budgets in the classifier's input normalization, and a %T does not state one", m)
	}
	cfg := c.Config()
	n := &attack.Normalization{}
	for i := range cfg.Mean {
		n.Mean = append(n.Mean, float64(cfg.Mean[i]))
	}
	for i := range cfg.Std {
		n.Std = append(n.Std, float64(cfg.Std[i]))
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("the classifier's input normalization: %w", err)
	}
	return n, nil
}

// budgetText describes a budget for the report, e.g. "normalized L2 0.04"
// or "L-infinity 8/255" (a whole number of 255ths is written as such).
func budgetText(b attack.Budget) string {
	switch b.Norm {
	case attack.L2Rel:
		return fmt.Sprintf("normalized L2 %g", b.Eps)
	case attack.L2Z:
		return fmt.Sprintf("normalized L2 %g on normalized tensors", b.Eps)
	}
	if k := math.Round(b.Eps * 255); k >= 1 && math.Abs(b.Eps*255-k) < 1e-9 {
		return fmt.Sprintf("L-infinity %g/255", k)
	}
	return fmt.Sprintf("L-infinity %g", b.Eps)
}

// batched runs a in batches of attackBatch images.
func batched(a attack.Attack) Attacker {
	return func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
		res, err := attack.RunBatched(ctx, a, m, x, labels, attackBatch, rep)
		if err != nil {
			return nil, err
		}
		return res.Adv, nil
	}
}

// whiteBoxPGD returns the attack of the paper's Table 4: the PGD of the
// evaluation suite (evaluate.PGDOptions: PGD-CE for LossCE, PGD-CW for
// LossCW) at the Table 4 budget, L-infinity 0.031, with cfg.WhiteBoxSteps
// steps, seeded by the run seed, with kappa cfg.WhiteBoxCWKappa for the CW
// loss, run to its last iterate (the suite stops each image at its first
// success instead). For LossCE the options leave attack.PGDOptions.Loss
// empty, so that they encode, and the white-box stages' keys read, as
// before the loss existed.
func whiteBoxPGD(cfg Config, loss string) (Attacker, any, error) {
	var o attack.PGDOptions
	var err error
	switch loss {
	case LossCE:
		o, err = pgdOptions(cfg, evaluate.PGDCE, whiteBoxEps, cfg.WhiteBoxSteps)
	case LossCW:
		o, err = pgdOptions(cfg, evaluate.PGDCW, whiteBoxEps, cfg.WhiteBoxSteps)
		o.Kappa = cfg.WhiteBoxCWKappa
	default:
		return nil, nil, fmt.Errorf("unknown white-box loss %q (want one of %s)", loss, strings.Join(AllWhiteBoxLosses, ", "))
	}
	if err != nil {
		return nil, nil, err
	}
	return pgdAttacker(o)
}

// pgdAt returns PGD at L-infinity budget eps with steps iterations and
// the other settings of whiteBoxPGD with the cross-entropy, for the
// white-box sanity checks.
func pgdAt(cfg Config, eps float64, steps int) (Attacker, any, error) {
	o, err := pgdOptions(cfg, evaluate.PGDCE, eps, steps)
	if err != nil {
		return nil, nil, err
	}
	return pgdAttacker(o)
}

// pgdOptions returns the options of the suite's PGD attack name
// (evaluate.PGDOptions) at L-infinity eps with steps iterations, seeded by
// the run seed.
func pgdOptions(cfg Config, name string, eps float64, steps int) (attack.PGDOptions, error) {
	return evaluate.PGDOptions(name, attack.Budget{Norm: attack.LInf, Eps: eps}, evaluate.Options{PGDSteps: steps}, uint64(cfg.Seed))
}

// pgdAttacker returns PGD with options o, run in batches, and o as its
// settings.
func pgdAttacker(o attack.PGDOptions) (Attacker, any, error) {
	a, err := attack.NewPGD(o)
	if err != nil {
		return nil, nil, err
	}
	return batched(a), o, nil
}

// DefaultBaselines are the baselines "all" stands for in a run: those
// package baseline marks Default, one of each family of the paper's tables.
var DefaultBaselines = baseline.DefaultNames()

// registryBaselines builds the baselines cfg names from package baseline's
// registry, with the published parameters. What they learn from the clean
// training images (quilting's patch database, MagNet's auto-encoder, both
// seeded with the run seed) is prepared once, when a baseline is first
// built, and kept in dir.
func registryBaselines(ctx context.Context, cfg Config, train *dataset.Set, dir string, rep progress.Reporter) ([]Baseline, []Missing, error) {
	names := cfg.Baselines
	if len(names) == 1 && names[0] == "all" {
		names = DefaultBaselines
	}
	entries := make([]baseline.Entry, len(names))
	for i, name := range names {
		e, err := baseline.Lookup(name)
		if err != nil {
			return nil, nil, &ConfigError{"baselines", fmt.Sprintf("unknown baseline %q (known: all, %s)", name, strings.Join(baseline.Names(), ", "))}
		}
		entries[i] = e
	}
	popts := prepareOptions(cfg, dir)
	var (
		once     sync.Once
		prepared baseline.Config
		prepErr  error
	)
	prepare := func() (baseline.Config, error) {
		once.Do(func() {
			prepared, prepErr = baseline.Prepare(ctx, baseline.DefaultConfig(), names, train.Images, popts, rep)
		})
		return prepared, prepErr
	}
	var out []Baseline
	for _, e := range entries {
		b := Baseline{
			Name: e.Label,
			// Randomized baselines' seeds are derived per stage from the
			// run seed (see RunWith), not these.
			Settings: e.Settings(baseline.DefaultConfig(), popts),
			New: func(seed uint64) (defense.Transform, error) {
				c, err := prepare()
				if err != nil {
					return nil, err
				}
				return e.New(c.Seeded(seed))
			},
		}
		if e.Backward == baseline.BackwardExact {
			// MagNet's reformer (*baseline.MagNet) implements attack.Approx.
			b.Backward = BackwardExact
		}
		out = append(out, b)
	}
	return out, nil, nil
}

// prepareOptions are the options of what baselines learn from the training
// images, seeded with the run seed.
func prepareOptions(cfg Config, dir string) baseline.PrepareOptions {
	o := baseline.DefaultPrepareOptions()
	o.Dir = dir
	o.PatchDB.Seed, o.MagNet.Seed, o.D3.Seed = uint64(cfg.Seed), uint64(cfg.Seed), uint64(cfg.Seed)
	return o
}

// stlBuilder builds the STL defense with defense.Train.
type stlBuilder struct{ b defense.Backend }

func (s stlBuilder) Build(ctx context.Context, spec DefenseSpec, train *dataset.Set, dir string, rep progress.Reporter) error {
	o := defense.DefaultTrainOptions()
	o.Lambda, o.Filters, o.FilterSize, o.Clusters = spec.Lambda, spec.Filters, spec.FilterSize, spec.Clusters
	o.DictImages, o.DictIterations, o.DAEEpochs, o.Seed = spec.DictImages, spec.DictIterations, spec.DAEEpochs, spec.Seed
	o.ApplyOptions = spec.ApplyOptions
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
