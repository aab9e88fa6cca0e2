package experiment

import (
	"context"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// ClassifierSpec is everything that determines a trained classifier apart
// from its training images. It is part of the classifier stage's cache key.
type ClassifierSpec struct {
	Arch         string  `json:"arch"`
	Epochs       int     `json:"epochs"`
	BatchSize    int     `json:"batch_size"`
	LearningRate float64 `json:"learning_rate"`
	Seed         int64   `json:"seed"`
	// Threads is the number of goroutines per layer; results depend on it
	// (summation order), so it is part of the key.
	Threads int `json:"threads"`
	// Cutout and Dropout are Config.Cutout and Config.Dropout. They are
	// omitted from the key when zero, so that the keys of runs made before
	// they existed stay valid.
	Cutout  int     `json:"cutout,omitempty"`
	Dropout float64 `json:"dropout,omitempty"`
	// CheckpointDir, when not empty, is a directory that survives an
	// interruption, for per-epoch checkpoints. Not part of the key.
	CheckpointDir string `json:"-"`
}

// Trainer trains, saves and loads classifiers. The classifiers of package
// nn provide one (see DefaultBackend).
type Trainer interface {
	// Train returns a classifier of spec.Arch trained on train. It reports
	// progress to rep and returns ctx's error when cancelled.
	Train(ctx context.Context, spec ClassifierSpec, train *dataset.Set, rep progress.Reporter) (attack.Model, error)
	// Save writes m to path (a file or directory name in a stage's
	// directory) atomically; Load reads it back.
	Save(path string, m attack.Model) error
	Load(path string) (attack.Model, error)
}

// AdversarialTrainer is implemented by Trainers that train adversarially
// (Config.AdvTrain; package advtrain). The classifiers of package nn
// provide one.
type AdversarialTrainer interface {
	// TrainAdversarial trains as Train does, with adv.Fraction of every
	// batch replaced by adversarial examples of the classifier under
	// training; with t not nil they attack it behind t through BPDA and
	// the classifier learns on their images under t (and on t(x) for the
	// clean share). With init not nil (a classifier this Trainer trained
	// or loaded) it starts from init's weights and normalization, which
	// it does not modify.
	TrainAdversarial(ctx context.Context, spec ClassifierSpec, adv advtrain.Options, t defense.Transform, init attack.Model, train *dataset.Set, rep progress.Reporter) (attack.Model, error)
}

// PretrainedLoader is implemented by Trainers that can load a classifier
// trained outside the run (Config.VanillaModel), such as a model directory
// written by `stl train classifier`.
type PretrainedLoader interface {
	// LoadPretrained loads the classifier saved in the directory dir and
	// returns what it records about itself. It returns an error when dir
	// or one of its files is missing or does not load.
	LoadPretrained(dir string) (attack.Model, PretrainedInfo, error)
}

// PretrainedInfo is what a saved classifier records about itself. Zero
// values mean not recorded.
type PretrainedInfo struct {
	// Files are the names, inside the model directory, of the files that
	// make up the model; the first is the weights file. The run hashes
	// them (SHA-256) into the vanilla stage's cache key and copies them
	// into the stage, from where it loads the model again.
	Files []string `json:"files"`
	// Arch is the recorded architecture; it must not be empty.
	Arch         string  `json:"arch"`
	Dataset      string  `json:"dataset,omitempty"`
	TrainImages  int     `json:"train_images,omitempty"`
	Epochs       int     `json:"epochs,omitempty"`
	TestAccuracy float64 `json:"test_accuracy,omitempty"`
	Dropout      float64 `json:"dropout,omitempty"`
	Notes        string  `json:"notes,omitempty"`
}

// SpecDescriber is implemented by Trainers that can state every
// hyperparameter they use for a spec (optimizer, schedule, augmentation),
// for the report.
type SpecDescriber interface {
	DescribeSpec(spec ClassifierSpec) any
}

// DirDescriber is implemented by DefenseBuilders that can state every
// hyperparameter of a built defense (its manifest), for the report.
type DirDescriber interface {
	DescribeDir(dir string) (any, error)
}

// DefenseSpec is everything that determines a trained STL defense apart
// from its training images (paper, sections 3.2-3.4 and 5.1): the run's
// STLSettings and seed. It is part of the defense stage's cache key, whose
// JSON encoding lists the settings' fields, then the seed.
type DefenseSpec struct {
	STLSettings
	Seed int64 `json:"seed"`
	// CheckpointDir survives interruptions (see ClassifierSpec).
	CheckpointDir string `json:"-"`
}

// DefenseBuilder builds the STL defense and loads it back.
type DefenseBuilder interface {
	// Build learns the defense from train and saves it into dir, an empty
	// directory.
	Build(ctx context.Context, spec DefenseSpec, train *dataset.Set, dir string, rep progress.Reporter) error
	// Load reads the defense saved in dir. A run loads it once, when a
	// stage first needs it, and shares it among its stages.
	Load(dir string) (LoadedDefense, error)
}

// LoadedDefense is a built STL defense read back from its directory.
type LoadedDefense interface {
	// Transforms returns the universal "STL" and the stratified "STL
	// (cluster)" projecting with sparsity weight lambda, 0 meaning the one
	// the dictionaries were learned with (other values serve the lambda
	// sweep, Figure 5). A run asks once for lambda 0 and applies those
	// transforms in every stage, so they must be deterministic.
	Transforms(lambda float64) (stl, cluster defense.Transform, err error)
}

// Attacker computes adversarial examples for x (true labels) against m and
// returns them in a new tensor.
type Attacker func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error)

// Baseline is a baseline defense the run evaluates next to STL.
type Baseline struct {
	// Name is the row name in the tables, e.g. "JPEG (q75)".
	Name string
	// Settings are the baseline's parameters, recorded in the report and
	// part of the cache key of everything it transforms.
	Settings any
	// New returns a fresh transform; randomized ones draw from seed, so a
	// stage computed again (after an interruption) gives the same images.
	New func(seed uint64) (defense.Transform, error)
	// Backward says how the white-box attacks differentiate through the
	// baseline (BPDA, Athalye et al. 2018): "" when its backward pass is
	// taken as the identity, BackwardExact when its transform provides its
	// exact vector-Jacobian product (attack.Approx, as MagNet's reformer
	// does) and Backend.Adaptive uses it. When not empty it enters the keys
	// of the baseline's white-box stages, whose images depend on it.
	Backward string
}

// BackwardExact is Baseline.Backward for a baseline the white-box attacks
// differentiate through exactly.
const BackwardExact = "exact VJP"

// Backend supplies the pieces the pipeline composes. Data and Classifier are
// required; a nil Defense, Attack or Baselines makes the corresponding rows
// or columns missing, with the reason in the report. DefaultBackend wires
// the project's packages.
type Backend struct {
	// Data returns the training and test sets named by cfg.Data at
	// cfg.Resolution.
	Data func(ctx context.Context, cfg Config) (train, test *dataset.Set, err error)
	// Classifier trains the vanilla and the retrained classifiers.
	Classifier Trainer
	// Defense builds STL and STL (cluster); nil when unavailable, with the
	// reason in DefenseMissing.
	Defense        DefenseBuilder
	DefenseMissing string
	// Attack returns the named attack (one of AllAttacks) configured as in
	// the paper under cfg's protocol, to be run against m (the vanilla
	// classifier, whose input normalization the guo protocol measures
	// in), and its settings for the cache key and the report. When cfg
	// rounds (Config.Round8 or a rounding protocol) the attack returns its
	// images rounded to 8 bits inside its budget (attack.Rounded); the
	// pipeline does not round them again.
	Attack func(name string, cfg Config, m attack.Model) (a Attacker, settings any, budget string, err error)
	// Strength returns, for Config.TargetDissimilarity, the knob that sets
	// the strength of the named attack (one of AllAttacks, configured as
	// Attack does) and the attack at strength s with its settings (the
	// stage's key holds Attack's settings and the target); nil makes the
	// searched columns missing.
	Strength func(name string, cfg Config, m attack.Model) (attack.Knob, func(s float64) (Attacker, any, error), error)
	// Baselines returns the baselines cfg asks for and, for each one it
	// cannot provide, the reason. train is the run's training set, for
	// baselines that learn from clean images (quilting's patch database,
	// MagNet's auto-encoder); dir is a directory, private to that training
	// set, where they may keep what they learn; ctx and rep serve that
	// learning, which Baseline.New may do lazily.
	Baselines func(ctx context.Context, cfg Config, train *dataset.Set, dir string, rep progress.Reporter) ([]Baseline, []Missing, error)
	// WhiteBox returns the white-box attack of the paper's Table 4 (PGD at
	// L-infinity 0.031, cfg.WhiteBoxSteps steps) ascending loss (one of
	// AllWhiteBoxLosses) and its settings, which must encode for LossCE as
	// they did before losses existed, since they enter the cache keys of
	// the white-box stages; Adaptive
	// wraps a defense and its classifier into the model that attack runs
	// on (BPDA, with EOT over draws for randomized defenses); a transform
	// that implements attack.Approx should be differentiated through with
	// it (and its Baseline.Backward set to BackwardExact). Either nil makes
	// the white-box table missing.
	WhiteBox func(cfg Config, loss string) (Attacker, any, error)
	// PGD returns PGD at L-infinity budget eps with steps iterations (the
	// other settings as WhiteBox's with LossCE) and its settings, for the
	// white-box sanity checks (sanity.go); nil makes them missing.
	PGD      func(cfg Config, eps float64, steps int) (Attacker, any, error)
	Adaptive func(t defense.Transform, m attack.Model, draws int) (attack.Model, error)
	// Versions are recorded in the report (module, Go, build tags...).
	Versions map[string]string
	// Executor computes the per-image heavy stages (the attack columns,
	// the transforms of image sets); nil is LocalExecutor, the run's own
	// process. It changes no stage's key or output.
	Executor Executor
}

// Missing is something a run could not compute and why.
type Missing struct{ What, Why string }
