package experiment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/tensor"
)

// UAPSettings configure the run's "UAP" column: a universal adversarial
// perturbation (Moosavi-Dezfooli et al. 2017, attack.FitUAP) fitted on a
// class-balanced subset of the training images (seeded by Config.Seed)
// against the vanilla classifier and added to every attacked image, the
// UAP column of the paper's Table 3. Zero fields take the defaults stated
// here; the settings enter only the UAP stage's key.
type UAPSettings struct {
	// FitImages is the number of training images the perturbation is
	// fitted on (0: 500, or all when fewer).
	FitImages int `json:"fit_images,omitempty" yaml:"fit_images"`
	// Eps is its budget: the average normalized L2 dissimilarity over the
	// fitting images (on the classifier's normalized tensors under the guo
	// protocol, on [0,1] pixels otherwise; attack.UAPOptions.Budget).
	// 0: 0.06, the paper's Table 3.
	Eps float64 `json:"eps,omitempty" yaml:"eps"`
	// FoolingRate and MaxPasses end the fit (attack.UAPOptions). 0: 0.8
	// and 10.
	FoolingRate float64 `json:"fooling_rate,omitempty" yaml:"fooling_rate"`
	MaxPasses   int     `json:"max_passes,omitempty" yaml:"max_passes"`
}

// validate checks the fields (zero is the default).
func (u UAPSettings) validate() error {
	switch {
	case u.FitImages < 0:
		return &ConfigError{"uap.fit_images", fmt.Sprintf("%d < 0", u.FitImages)}
	case !(u.Eps >= 0 && u.Eps <= 1):
		return &ConfigError{"uap.eps", fmt.Sprintf("%v, want in (0, 1] (0: 0.06)", u.Eps)}
	case !(u.FoolingRate >= 0 && u.FoolingRate <= 1):
		return &ConfigError{"uap.fooling_rate", fmt.Sprintf("%v, want in (0, 1] (0: 0.8)", u.FoolingRate)}
	case u.MaxPasses < 0:
		return &ConfigError{"uap.max_passes", fmt.Sprintf("%d < 0", u.MaxPasses)}
	}
	return nil
}

// uapFitImages is FitImages with its default.
func (u UAPSettings) uapFitImages() int {
	if u.FitImages == 0 {
		return 500
	}
	return u.FitImages
}

// options returns the fit's options: package attack's defaults, the
// settings over them, the budget in norm (with the classifier's
// normalization n for L2Z), seeded by seed.
func (u UAPSettings) options(norm attack.Norm, n *attack.Normalization, seed int64) attack.UAPOptions {
	o := attack.DefaultUAPOptions()
	o.Budget = attack.Budget{Norm: norm, Eps: o.Budget.Eps, Normalization: n}
	if u.Eps > 0 {
		o.Budget.Eps = u.Eps
	}
	if u.FoolingRate > 0 {
		o.FoolingRate = u.FoolingRate
	}
	if u.MaxPasses > 0 {
		o.MaxPasses = u.MaxPasses
	}
	o.Seed = uint64(seed)
	return o
}

// searchOptions are the strength search's options of the run.
func (c Config) searchOptions() attack.SearchOptions {
	o := attack.DefaultSearchOptions()
	o.Target, o.Tolerance = c.TargetDissimilarity, c.TargetTolerance
	return o
}

// uapColumn computes the UAP column: the perturbation fitted on the
// training images (checkpointed every 10 images and resumed bit for bit),
// added to the attacked images, and scaled to the run's target
// dissimilarity when it has one. The stage keeps the perturbation
// (UAPFile) and its fit (attack.json) beside the images.
func (r *runner) uapColumn(ctx context.Context, a *advSet) error {
	norm := attack.L2Rel
	var n *attack.Normalization
	if r.cfg.protocol() == attack.ProtocolGuo {
		norm = attack.L2Z
	}
	if norm == attack.L2Z || r.cfg.TargetDissimilarity > 0 {
		var err error
		if n, err = inputNormalization(r.vanilla); err != nil {
			a.missing = err.Error()
			return nil
		}
	}
	var bn *attack.Normalization
	if norm == attack.L2Z {
		bn = n
	}
	o := r.cfg.UAP.options(norm, bn, r.cfg.Seed)
	if r.cfg.TargetDissimilarity > 0 {
		o.Budget.Eps = r.cfg.TargetDissimilarity // fitted at the target, then scaled
	}
	if err := o.Validate(); err != nil {
		a.missing = err.Error()
		return nil
	}
	fitN := min(r.cfg.UAP.uapFitImages(), r.train.Len())
	a.budget = fmt.Sprintf("universal, %s (average over %d fitting images)", budgetText(o.Budget), fitN)
	settings := map[string]any{"uap": o, "fit_images": fitN}
	r.describe("attack "+AttackUAP, settings)
	deps := []cache.Key{r.vanillaKey, r.subsetKey, r.dataKey}
	return r.attackStage(ctx, a, r.attackKeyConfig(AttackUAP, settings), deps, func(ctx context.Context, ckpt string) (*tensor.Tensor, attackInfo, error) {
		train := r.train
		if fitN < train.Len() {
			var err error
			if train, err = train.BalancedSubset(fitN, r.cfg.Seed); err != nil {
				return nil, attackInfo{}, err
			}
		}
		path := filepath.Join(ckpt, "uap-fit.json")
		ck := attack.UAPCheckpoint{Every: 10, Save: func(s *attack.UAPState) error {
			if err := os.MkdirAll(ckpt, 0o755); err != nil {
				return err
			}
			return writeJSON(path, uapState{Key: string(a.key), State: s})
		}}
		var saved uapState
		if readJSON(path, &saved) == nil && saved.Key == string(a.key) {
			ck.Resume = saved.State
		}
		fit, err := attack.FitUAPFrom(ctx, r.vanilla, train.Images, o, ck, r.rep)
		if err != nil {
			return nil, attackInfo{}, err
		}
		info := attackInfo{uapV: fit.V, UAP: &UAPInfo{Budget: o.Budget, Radius: fit.Radius, FoolingRate: fit.FoolingRate, Passes: fit.Passes,
			Updates: fit.Updates, FitImages: train.Len(), FitSeed: r.cfg.Seed, Data: train.Name, Options: o}}
		apply := func(ctx context.Context, eps float64, _ *cache.Partial) (*tensor.Tensor, error) {
			u, err := ScaledUniversal(fit, o.Budget, eps)
			if err != nil {
				return nil, err
			}
			res, err := attack.RunBatched(ctx, roundedFor(r.cfg, u), r.vanilla, r.x0, r.y0, attackBatch, r.rep)
			if err != nil {
				return nil, err
			}
			return res.Adv, nil
		}
		if r.cfg.TargetDissimilarity > 0 {
			adv, si, err := r.searchColumn(ctx, a, attack.BudgetKnob(), ckpt, apply)
			si.UAP, si.uapV = info.UAP, info.uapV
			return adv, si, err
		}
		adv, err := apply(ctx, o.Budget.Eps, nil)
		return adv, info, err
	})
}

// searchColumn searches the strength of knob at which the average
// normalized L2 dissimilarity of the attacked images on the vanilla
// classifier's normalized tensors reaches the run's target
// (attack.SearchStrength), run(s) making the images at strength s with
// their chunks checkpointed in the Partial it is given. The probes made
// are recorded in ckpt, so that an interrupted stage resumes from its last
// probe, and the images of the strength found are those returned.
func (r *runner) searchColumn(ctx context.Context, a *advSet, knob attack.Knob, ckpt string,
	run func(ctx context.Context, s float64, part *cache.Partial) (*tensor.Tensor, error)) (*tensor.Tensor, attackInfo, error) {
	n, err := inputNormalization(r.vanilla)
	if err != nil {
		return nil, attackInfo{}, err
	}
	if err := os.MkdirAll(ckpt, 0o755); err != nil {
		return nil, attackInfo{}, err
	}
	record := filepath.Join(ckpt, SearchFile)
	var old searchRecord
	var replay []attack.Probe
	if readJSON(record, &old) == nil && old.Key == string(a.key) {
		replay = old.Probes
	}
	images := map[float64]*tensor.Tensor{}
	measure := func(ctx context.Context, s float64) (float64, error) {
		key, err := cache.NewKey("probe", s, a.key)
		if err != nil {
			return 0, err
		}
		part, err := cache.OpenPartial(filepath.Join(ckpt, "probe"), key)
		if err != nil {
			return 0, err
		}
		adv, err := run(ctx, s, part) // rounded when the run rounds
		if err != nil {
			return 0, err
		}
		clear(images)
		images[s] = adv
		return attack.MeanDissimilarityZ(adv, r.x0, *n)
	}
	o := r.cfg.searchOptions()
	res, err := attack.SearchStrength(ctx, knob, o, measure, replay, func(probes []attack.Probe) error {
		p := probes[len(probes)-1]
		r.rep.Report("search "+a.name, len(probes), o.MaxProbes, fmt.Sprintf("%s %.4g: average %.4f", knob.Param, p.Strength, p.Mean))
		return writeJSON(record, searchRecord{Key: string(a.key), SearchResult: attack.SearchResult{Param: knob.Param, Target: o.Target, Probes: probes}})
	})
	if err != nil {
		return nil, attackInfo{}, err
	}
	adv := images[res.Strength]
	if adv == nil { // a replayed probe: its chunks are checkpointed
		if _, err := measure(ctx, res.Strength); err != nil {
			return nil, attackInfo{}, err
		}
		adv = images[res.Strength]
	}
	return adv, attackInfo{Search: res}, nil
}
