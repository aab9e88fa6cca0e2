package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Stage names. Per-defense and per-attack stages append a slug of the name.
const (
	stageVanilla   = "classifier-vanilla"
	stageDefense   = "defense"
	stageAttack    = "attack-"    // + attack slug
	stageTransform = "transform-" // + defense slug + "-" + set slug
	stageRetrain   = "classifier-"
	stageReport    = "report"
)

// StagesDir is the subdirectory of a run directory holding the cached
// stages; CheckpointsDir holds the checkpoints of unfinished ones.
const (
	StagesDir      = "stages"
	CheckpointsDir = "checkpoints"
	// BaselinesDir holds what baselines learn from the training images
	// (patch database, MagNet's auto-encoder), per training-set key.
	BaselinesDir = "baselines"
)

// runner holds the state of one run.
type runner struct {
	cfg   Config
	b     Backend
	store *cache.Store
	dir   string // the run directory
	rep   progress.Reporter
	start time.Time

	train, test *dataset.Set
	dataKey     cache.Key
	subset      []int          // indices of the attacked test images
	x0          *tensor.Tensor // test images at subset
	y0          []int
	subsetKey   cache.Key // identifies subset

	// The white-box evaluation's images (Config.WhiteBoxSubset): indices
	// into subset, the images and labels there, and the key that
	// identifies them, which is subsetKey when they are all the attacked
	// images.
	wbIdx       []int
	wbX         *tensor.Tensor
	wbY         []int
	wbSubsetKey cache.Key

	vanilla    attack.Model
	vanillaKey cache.Key
	vanillaSrc *report.VanillaModel // set when loaded (Config.VanillaModel)
	// vanillaFrom says how another process loads the vanilla classifier
	// (StageTask).
	vanillaFrom *VanillaSource
	stl         *sharedDefense // the built STL defense, once built
	advs        []*advSet
	rows        []*row
	atRows      []*row // the adversarially trained rows (advtrain.go)
	atNote      string // their clean accuracies, for the report's notes
	missing     []Missing

	mu          sync.Mutex // guards the fields below, read by reports from other goroutines
	step, steps int
	weights     []float64 // planned cost of each stage (planWeights)
	stepStart   time.Time
	doneSec     float64 // time taken by the computed stages so far
	doneWeight  float64 // their planned cost

	// extra holds the complete hyperparameters of the pieces (training
	// recipe, defense manifest, attack and baseline options) for the
	// report, as JSON.
	extra []report.Setting

	sweeps []sweepSet // the lambda sweep's projections

	sanityNotes []string // whether the white-box sanity checks held
}

// describe records v as JSON under key for the report's settings.
func (r *runner) describe(key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf("%q", fmt.Sprint(v)))
	}
	r.extra = append(r.extra, report.Setting{Key: key, Value: string(b)})
}

// Run runs the experiment described by cfg with the project's packages
// (DefaultBackend) in the run directory dir, writes the report there and
// returns the results. See RunWith.
func Run(ctx context.Context, cfg Config, dir string, rep progress.Reporter) (*report.Results, error) {
	return RunWith(ctx, cfg, DefaultBackend(), dir, rep)
}

// RunWith runs the experiment with the pieces of b. Every stage is cached
// in dir (package cache): running again with the same configuration reuses
// every finished stage, and a changed setting recomputes only the stages
// that depend on it. On cancellation it returns ctx's error; the finished
// stages stay saved. Missing pieces (a defense, an attack, a baseline that
// fails) do not stop the run: the report lists them with the reason.
func RunWith(ctx context.Context, cfg Config, b Backend, dir string, rep progress.Reporter) (*report.Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b.Data == nil || b.Classifier == nil {
		return nil, errors.New("experiment: backend without data loader or classifier trainer")
	}
	store, err := cache.Open(filepath.Join(dir, StagesDir))
	if err != nil {
		return nil, err
	}
	defer store.Close()
	r := &runner{cfg: cfg, b: b, store: store, dir: dir, start: time.Now()}
	r.rep = &runReporter{inner: progress.Or(rep), r: r}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	res, grid, err := r.results(ctx)
	if err != nil {
		return nil, err
	}
	if err := report.Write(dir, res, grid); err != nil {
		return nil, err
	}
	return res, nil
}

// run computes every stage in the order the run meets them, one file per
// step: data.go loads and fingerprints the data and picks the attacked
// images, rows.go lists the table rows, progress.go plans the overall
// progress, classifier.go trains (vanilla.go loads) the vanilla
// classifier, attacks.go computes the adversarial sets, defend.go builds the
// STL defense and computes each defense's transform stages and retrained
// classifier, whitebox.go and sanity.go the white-box evaluation and its
// sanity checks, suite.go the white-box suite, sweep.go the lambda sweep.
// results.go then evaluates.
func (r *runner) run(ctx context.Context) error {
	if err := r.cfg.checkOutsideVanilla(); err != nil {
		return err
	}
	if err := r.loadData(ctx); err != nil {
		return err
	}
	r.planRows(ctx)
	r.planAdvRows()
	r.planWeights()
	for _, step := range []func(context.Context) error{
		r.trainVanilla, r.attacks, r.buildDefense, r.defendAll, r.advTrainAll, r.whiteBox, r.sanity, r.whiteBoxSuite, r.sweep,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	r.mu.Lock()
	step := r.step
	r.mu.Unlock()
	r.rep.Report("stl run", step, r.steps, "evaluate and report")
	return nil
}
