package experiment

import (
	"context"
	"path/filepath"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/tensor"
)

// NoDefense is the row name of the undefended classifier.
const NoDefense = "No Defense"

// Names of the STL rows.
const (
	RowSTL        = "STL"
	RowSTLCluster = "STL (cluster)"
)

// row is one defense of the tables while the run computes it.
type row struct {
	name string
	key  cache.Key // identifies the transform (its parameters and training)
	// newT returns the transform a stage applies, given the stage's seed:
	// a fresh one drawn from it for a baseline (Baseline.New), the run's
	// shared one for STL (sharedDefense). nil when the defense is missing.
	newT     func(seed uint64) (defense.Transform, error)
	missing  string // why newT is nil, or why the row failed
	retrain  bool   // whether Table 1 retrains a classifier on it
	baseline bool   // whether it is a baseline (not No Defense nor STL)
	backward string // Baseline.Backward
	// adversarial marks the adversarially trained rows (Config.AdvTrain),
	// of the white-box table only; atBase is the STL row whose transform
	// they share, nil for AT alone.
	adversarial bool
	atBase      *row

	test         *tensor.Tensor            // T(test)
	adv          map[string]*tensor.Tensor // T(adv) by attack
	model        attack.Model              // classifier retrained on T(train)
	modelKey     cache.Key
	modelMissing string

	// White-box evaluation: T(x_adv) for the PGD-through-BPDA examples on
	// the cross-entropy (the Table 4 attack the sanity checks build on),
	// and whether they were computed against the vanilla classifier.
	wbAdv     *tensor.Tensor
	wbVanilla bool
	wbMissing string
	wbKey     cache.Key  // the white-box stage's key
	sanity    *sanitySet // the white-box sanity checks (sanity.go)
	// The same for the other losses of Config.WhiteBoxLosses, by loss.
	wbLossAdv     map[string]*tensor.Tensor
	wbLossMissing map[string]string
	// The white-box suite's report (Config.WhiteBoxSuite), or why it is
	// missing.
	suite        *evaluate.Report
	suiteMissing string
}

// plain reports whether the row's classifier sees its input untransformed:
// No Defense and AT alone.
func (rw *row) plain() bool { return rw.name == NoDefense || (rw.adversarial && rw.atBase == nil) }

// whiteBoxAdv returns the row's white-box examples under loss, or nil and
// why they are missing.
func (rw *row) whiteBoxAdv(loss string) (*tensor.Tensor, string) {
	if loss == LossCE {
		return rw.wbAdv, rw.wbMissing
	}
	return rw.wbLossAdv[loss], rw.wbLossMissing[loss]
}

// setWhiteBox records the row's white-box examples under loss (adv and the
// stage's key), or why they are missing.
func (rw *row) setWhiteBox(loss string, adv *tensor.Tensor, key cache.Key, missing string) {
	if loss == LossCE {
		rw.wbAdv, rw.wbKey, rw.wbMissing = adv, key, missing
		return
	}
	if rw.wbLossAdv == nil {
		rw.wbLossAdv, rw.wbLossMissing = map[string]*tensor.Tensor{}, map[string]string{}
	}
	rw.wbLossAdv[loss], rw.wbLossMissing[loss] = adv, missing
}

// planRows lists the table rows: No Defense, STL, STL (cluster), then the
// baselines.
func (r *runner) planRows(ctx context.Context) {
	r.rows = []*row{{name: NoDefense}}
	// In front of an outside vanilla classifier the run cannot retrain its
	// architecture: the defenses' Table 1 cells say why (defend).
	retrain := r.cfg.notRetrainable() == ""
	stl := &row{name: RowSTL, retrain: retrain}
	stlc := &row{name: RowSTLCluster, retrain: retrain}
	r.rows = append(r.rows, stl, stlc)
	if r.b.Defense == nil {
		why := r.b.DefenseMissing
		if why == "" {
			why = "the STL defense is not available in this build"
		}
		stl.missing, stlc.missing = why, why
	}
	if r.b.Baselines == nil {
		if len(r.cfg.Baselines) > 0 {
			r.missing = append(r.missing, Missing{"baselines", "no baseline defenses are available in this build"})
		}
		return
	}
	bases, miss, err := r.b.Baselines(ctx, r.cfg, r.train, filepath.Join(r.dir, BaselinesDir, r.dataKey.Short()), r.rep)
	if err != nil {
		r.missing = append(r.missing, Missing{"baselines", err.Error()})
		return
	}
	r.missing = append(r.missing, miss...)
	for _, bl := range bases {
		bl := bl
		// The data key is a dependency: quilting learns from the training
		// images.
		key, err := cache.NewKey("baseline", map[string]any{"name": bl.Name, "settings": bl.Settings}, r.dataKey)
		rw := &row{name: bl.Name, key: key, retrain: r.cfg.RetrainBaselines, newT: bl.New, baseline: true, backward: bl.Backward}
		r.describe("baseline "+bl.Name, bl.Settings)
		if err != nil {
			rw.newT, rw.missing = nil, err.Error()
		}
		r.rows = append(r.rows, rw)
	}
}
