package experiment

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
)

// AdvTrainSettings are the adversarial training of a run (package
// advtrain): with a Method, the white-box table (the paper's Table 4,
// whose STL figures 0.38* and 0.42* "combine adversarial training") gets
// the rows "AT alone" (the vanilla classifier's recipe, trained
// adversarially), "STL + AT" and "STL (cluster) + AT" (the classifier
// behind each projection T trained on T(x_adv), x_adv attacking it through
// T by BPDA, as such a defender would train), each classifier its own
// cached stage, attacked exactly as the other rows. Zero values take the
// defaults.
type AdvTrainSettings struct {
	// Method is "pgd" (Madry et al. 2018) or "fgsm-rs" (Wong et al.
	// 2020); "" (default) trains nothing.
	Method string `json:"method,omitempty" yaml:"method"`
	// Eps, Step and Steps are the L-infinity radius, step size and number
	// of steps of the training attack; 0 takes advtrain.DefaultOptions's
	// (8/255; 2/255 and 7 steps for PGD, 1.25 eps and 1 step for FGSM-RS).
	Eps   float64 `json:"eps,omitempty" yaml:"eps"`
	Step  float64 `json:"step,omitempty" yaml:"step"`
	Steps int     `json:"steps,omitempty" yaml:"steps"`
	// Fraction is the share of each batch made adversarial; 0 means 1.
	Fraction float64 `json:"fraction,omitempty" yaml:"fraction"`
	// Epochs is the number of adversarial epochs; 0 takes those of the
	// classifier each row replaces (Epochs for AT alone, RetrainEpochs for
	// the STL rows).
	Epochs int `json:"epochs,omitempty" yaml:"epochs"`
	// FineTune starts each classifier from the one its row replaces (the
	// vanilla classifier for AT alone, the classifier retrained on the
	// projections for the STL rows) instead of from scratch, so that a
	// few adversarial epochs suffice. Default false.
	FineTune bool `json:"fine_tune,omitempty" yaml:"fine_tune"`
	// LearningRate is the peak learning rate of adversarial training; 0
	// takes the run's LearningRate.
	LearningRate float64 `json:"learning_rate,omitempty" yaml:"learning_rate"`
}

// options returns package advtrain's options for the settings, seeded
// with seed.
func (a AdvTrainSettings) options(seed int64) (advtrain.Options, error) {
	o := advtrain.DefaultOptions(advtrain.Method(a.Method))
	if a.Eps > 0 {
		o.Eps = a.Eps
		if o.Method == advtrain.FGSMRS {
			o.Step = 1.25 * a.Eps
		}
	}
	if a.Step > 0 {
		o.Step = a.Step
	}
	if a.Steps > 0 {
		o.Steps = a.Steps
	}
	if a.Fraction > 0 {
		o.Fraction = a.Fraction
	}
	o.Seed = uint64(seed)
	return o, o.Validate()
}

// validate checks the settings of c (a *ConfigError for field adv_train).
func (a AdvTrainSettings) validate(c Config) error {
	if a == (AdvTrainSettings{}) {
		return nil
	}
	bad := func(format string, v ...any) error { return &ConfigError{"adv_train", fmt.Sprintf(format, v...)} }
	switch {
	case a.Method == "":
		return bad("settings without a method: want method pgd or fgsm-rs")
	case !c.WhiteBox:
		return bad("without whitebox: the adversarially trained rows are part of the white-box table")
	case a.Eps < 0 || a.Step < 0 || a.Steps < 0 || a.Fraction < 0 || a.Epochs < 0 || a.LearningRate < 0:
		return bad("negative value in %+v", a)
	case !(a.LearningRate < 10):
		return bad("learning_rate %v, want in (0, 10)", a.LearningRate)
	}
	if _, err := a.options(c.Seed); err != nil {
		return bad("%v", err)
	}
	return nil
}

// Row names of the adversarially trained defenders (Config.AdvTrain), in
// the white-box table.
const (
	RowATAlone      = "AT alone"
	RowSTLAT        = "STL + AT"
	RowSTLClusterAT = "STL (cluster) + AT"
)

// planAdvRows lists the adversarially trained rows when the run has them:
// AT alone, then one per STL row (base), whose transform it shares.
func (r *runner) planAdvRows() {
	if r.cfg.AdvTrain.Method == "" {
		return
	}
	r.atRows = []*row{
		{name: RowATAlone, adversarial: true},
		{name: RowSTLAT, adversarial: true, atBase: r.rows[1]},
		{name: RowSTLClusterAT, adversarial: true, atBase: r.rows[2]},
	}
}

// whiteBoxRows are the rows of the white-box table: every defense, then
// the adversarially trained ones.
func (r *runner) whiteBoxRows() []*row {
	return append(r.rows[:len(r.rows):len(r.rows)], r.atRows...)
}

// advTrainAll trains (or reuses) the classifiers of the adversarially
// trained rows, each a cached stage "classifier-<row>" whose key holds the
// training recipe, the adversarial options and whether it fine-tunes, with
// the data (and the defense, and the classifier fine-tuned) as
// dependencies. Failures make the row's white-box cells missing.
func (r *runner) advTrainAll(ctx context.Context) error {
	if len(r.atRows) == 0 {
		return nil
	}
	a := r.cfg.AdvTrain
	opts, err := a.options(r.cfg.Seed)
	if err != nil {
		return err
	}
	r.describe("adversarial training", map[string]any{"options": opts, "epochs": a.Epochs, "fine_tune": a.FineTune, "learning_rate": a.LearningRate})
	for _, rw := range r.atRows {
		r.next("adversarial training of " + rw.name)
		if err := r.advTrain(ctx, rw, opts); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rw.modelMissing = err.Error()
		}
	}
	return nil
}

// advTrain trains the classifier of one adversarially trained row.
func (r *runner) advTrain(ctx context.Context, rw *row, opts advtrain.Options) error {
	trainer, ok := r.b.Classifier.(AdversarialTrainer)
	if !ok {
		return errors.New("the classifier backend cannot train adversarially")
	}
	a := r.cfg.AdvTrain
	epochs, init, initKey := r.cfg.Epochs, r.vanilla, r.vanillaKey
	deps := []cache.Key{r.dataKey}
	if b := rw.atBase; b != nil {
		if b.newT == nil {
			return fmt.Errorf("the defense is not available: %s", b.missing)
		}
		rw.newT, rw.key = b.newT, b.key
		deps = append(deps, b.key)
		epochs, init, initKey = r.cfg.retrainEpochs(), b.model, b.modelKey
		if a.FineTune && init == nil {
			return fmt.Errorf("fine-tuning needs the classifier retrained on %s, which is missing: %s", b.name, b.modelMissing)
		}
	}
	if a.Epochs > 0 {
		epochs = a.Epochs
	}
	spec := r.classifierSpec(epochs)
	if a.LearningRate > 0 {
		spec.LearningRate = a.LearningRate
	}
	if !a.FineTune {
		init = nil
	} else {
		deps = append(deps, initKey)
	}
	stage := stageRetrain + slug(rw.name)
	cfg := map[string]any{"spec": spec, "adversarial": opts, "fine_tune": a.FineTune}
	key, err := cache.NewKey(stage, cfg, deps...)
	if err != nil {
		return err
	}
	spec.CheckpointDir = r.checkpointDir(stage, key)
	dir, _, err := r.store.Do(ctx, stage, key, cfg, deps, func(ctx context.Context, out string) error {
		// The defense is loaded only when a stage needs it.
		var t defense.Transform
		if rw.newT != nil {
			var err error
			if t, err = rw.newT(stageSeed(r.cfg.Seed, stage)); err != nil {
				return err
			}
		}
		m, err := trainer.TrainAdversarial(ctx, spec, opts, t, init, r.train, r.rep)
		if err != nil {
			return err
		}
		return r.b.Classifier.Save(filepath.Join(out, "model"), m)
	})
	if err != nil {
		return err
	}
	r.dropCheckpoint(spec.CheckpointDir)
	if rw.model, err = r.b.Classifier.Load(filepath.Join(dir, "model")); err != nil {
		return fmt.Errorf("stage %s: %w", stage, err)
	}
	rw.modelKey = key
	return nil
}

// advTrainText describes the adversarially trained rows for the white-box
// caption, "" when the run has none.
func (r *runner) advTrainText() string {
	if len(r.atRows) == 0 {
		return ""
	}
	a := r.cfg.AdvTrain
	o, _ := a.options(r.cfg.Seed)
	how := "from scratch"
	if a.FineTune {
		how = "fine-tuned from the classifier each replaces"
	}
	return fmt.Sprintf("%s, %s and %s are classifiers trained adversarially (%s, %s): AT alone on clean images, the STL rows behind their projection T on T(x_adv), "+
		"x_adv attacking them through T by BPDA during training; they are attacked here exactly as the other rows. ", RowATAlone, RowSTLAT, RowSTLClusterAT, o, how)
}

// advTrainWeights are the planned costs of the adversarial-training
// stages (planWeights): train(epochs) is a standard training's, project
// the cost of projecting one image with STL. An adversarial epoch costs
// 1 + Steps*Fraction standard ones, plus for the STL rows one projection
// per image and one per attack step.
func (r *runner) advTrainWeights(train func(epochs int) float64, project float64) []float64 {
	var w []float64
	a := r.cfg.AdvTrain
	o, err := a.options(r.cfg.Seed)
	if err != nil {
		return nil
	}
	grads := 1 + float64(o.Steps)*o.Fraction
	for _, rw := range r.atRows {
		epochs := r.cfg.Epochs
		if rw.atBase != nil {
			epochs = r.cfg.retrainEpochs()
		}
		if a.Epochs > 0 {
			epochs = a.Epochs
		}
		cost := grads * train(epochs)
		if rw.atBase != nil {
			cost += float64(epochs) * float64(r.train.Len()) * project * grads
		}
		w = append(w, cost)
	}
	return w
}

// advCleanNote measures the clean accuracy of the adversarially trained
// classifiers on every test image (through their row's transform for the
// STL rows, as Table 1's Clean column) and returns the report's note on
// it, "" without such rows.
func (r *runner) advCleanNote(e *evaluator) (string, error) {
	var parts []string
	for _, rw := range r.atRows {
		x := r.test.Images
		if b := rw.atBase; b != nil {
			x = b.test
		}
		if rw.model == nil || x == nil {
			continue
		}
		a, err := e.acc(rw.model, x, r.test.Labels)
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s %s", rw.name, a))
	}
	if len(parts) == 0 {
		return "", nil
	}
	return "Clean accuracy of the adversarially trained classifiers on the " + fmt.Sprint(r.test.Len()) +
		" test images (through their projection for the STL rows), with Wilson 95% intervals: " + strings.Join(parts, "; ") +
		". Compare with the Clean column of the Table 1 form.", nil
}
