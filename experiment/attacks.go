package experiment

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// advSet is one adversarial test set.
type advSet struct {
	name    string
	budget  string
	key     cache.Key
	x       *tensor.Tensor
	info    attackInfo
	missing string
}

type attackInfo struct {
	Seconds float64 `json:"seconds"`
	MeanL2  float64 `json:"mean_l2"`
	N       int     `json:"n"`
	// Search is the strength search's outcome (Config.TargetDissimilarity).
	Search *attack.SearchResult `json:"search,omitempty"`
	// UAP is the universal perturbation's fit (the UAP column); the stage
	// saves the perturbation uapV as UAPFile.
	UAP  *UAPInfo       `json:"uap,omitempty"`
	uapV *tensor.Tensor `json:"-"`
}

// attacks computes the adversarial test sets on the vanilla classifier.
// An attack that is unavailable or fails leaves its column missing.
func (r *runner) attacks(ctx context.Context) error {
	for _, name := range orderedAttacks(r.cfg.Attacks) {
		r.next("attack " + name)
		a := &advSet{name: name}
		r.advs = append(r.advs, a)
		var err error
		if name == AttackUAP {
			err = r.uapColumn(ctx, a)
		} else {
			err = r.paperColumn(ctx, a)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// paperColumn computes the adversarial set of one of AllAttacks, at the
// strength that reaches Config.TargetDissimilarity when it is set.
func (r *runner) paperColumn(ctx context.Context, a *advSet) error {
	name := a.name
	if r.b.Attack == nil {
		a.missing = "no attack implementation in this build"
		return nil
	}
	atk, settings, budget, err := r.b.Attack(name, r.cfg, r.vanilla)
	if err != nil {
		a.missing = err.Error()
		return nil
	}
	a.budget = budget
	r.describe("attack "+name, settings)
	compute := func(ctx context.Context, ckpt string) (*tensor.Tensor, attackInfo, error) {
		st := &Stage{Task: r.attackTask(name, a.key), Input: r.x0, Dir: ckpt, Rep: r.rep, local: func(ctx context.Context) (*tensor.Tensor, error) {
			part, err := cache.OpenPartial(ckpt, a.key)
			if err != nil {
				return nil, err
			}
			return attackInChunks(ctx, atk, r.vanilla, r.x0, r.y0, name, r.rep, part)
		}}
		adv, err := r.executor().Images(ctx, st)
		if err == nil && !tensor.SameShape(adv, r.x0) {
			err = &tensor.ShapeError{Op: "attack " + name, Want: r.x0.Shape, Got: adv.Shape}
		}
		return adv, attackInfo{}, err
	}
	if r.cfg.TargetDissimilarity > 0 {
		if r.b.Strength == nil {
			a.missing = "no strength search for this attack in this build"
			return nil
		}
		knob, at, err := r.b.Strength(name, r.cfg, r.vanilla)
		if err != nil {
			a.missing = err.Error()
			return nil
		}
		compute = func(ctx context.Context, ckpt string) (*tensor.Tensor, attackInfo, error) {
			return r.searchColumn(ctx, a, knob, ckpt, func(ctx context.Context, s float64, part *cache.Partial) (*tensor.Tensor, error) {
				atk, _, err := at(s)
				if err != nil {
					return nil, err
				}
				return attackInChunks(ctx, atk, r.vanilla, r.x0, r.y0, name, r.rep, part)
			})
		}
	}
	return r.attackStage(ctx, a, r.attackKeyConfig(name, settings), []cache.Key{r.vanillaKey, r.subsetKey}, compute)
}

// attackStage computes, or reloads, the cached stage of the adversarial
// set a under the key of cfg and deps: compute makes the images (rounded
// to 8 bits inside the budget when the run rounds: the backend's attacks
// round them, attack.Rounded), with checkpoints in ckpt; the stage
// saves them with their figures (attack.json). A failing computation
// leaves the column missing.
func (r *runner) attackStage(ctx context.Context, a *advSet, cfg any, deps []cache.Key, compute func(ctx context.Context, ckpt string) (*tensor.Tensor, attackInfo, error)) error {
	stage := stageAttack + slug(a.name)
	var err error
	if a.key, err = cache.NewKey(stage, cfg, deps...); err != nil {
		return err
	}
	ckpt := r.checkpointDir(stage, a.key)
	dir, _, err := r.store.Do(ctx, stage, a.key, cfg, deps, func(ctx context.Context, out string) error {
		t0 := time.Now()
		adv, info, err := compute(ctx, ckpt)
		if err != nil {
			return err
		}
		per := len(adv.Data) / max(1, adv.Shape[0])
		if info.MeanL2, err = metrics.MeanNormalizedL2(adv.Data, r.x0.Data, per); err != nil {
			return err
		}
		info.Seconds, info.N = time.Since(t0).Seconds(), adv.Shape[0]
		if info.UAP != nil {
			if err := npy.WriteFile(filepath.Join(out, UAPFile), info.uapV); err != nil {
				return err
			}
		}
		if err := npy.WriteFile(filepath.Join(out, "adv.npy"), adv); err != nil {
			return err
		}
		return writeJSON(filepath.Join(out, "attack.json"), info)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.dropCheckpoint(ckpt)
	if err != nil {
		a.missing = "the attack failed: " + err.Error()
		return nil
	}
	if a.x, err = readImages(filepath.Join(dir, "adv.npy"), r.x0.Shape); err == nil {
		err = readJSON(filepath.Join(dir, "attack.json"), &a.info)
	}
	if err != nil {
		return fmt.Errorf("stage %s: %w", stage, err)
	}
	if s := a.info.Search; s != nil {
		a.budget = fmt.Sprintf("average normalized L2 %g on normalized tensors (searched: %s %.4g, reached %.4f)", s.Target, s.Param, s.Strength, s.Mean)
	}
	return nil
}

// attackKeyConfig returns the configuration an attack stage's key hashes:
// the column's name and its attack's settings, as before protocols
// existed under the default protocol without rounding (key_test.go pins
// it), plus the protocol's name when it is not the default, "round8":
// round8Scheme when the images are rounded, and the target dissimilarity
// and its tolerance when set.
func (r *runner) attackKeyConfig(name string, settings any) map[string]any {
	cfg := map[string]any{"attack": name, "settings": settings}
	if p := r.cfg.protocol(); !p.IsDefault() {
		cfg["protocol"] = p.String()
	}
	if r.cfg.round8() {
		cfg["round8"] = round8Scheme
	}
	if r.cfg.TargetDissimilarity > 0 {
		cfg["target_dissimilarity"] = r.cfg.TargetDissimilarity
		if r.cfg.TargetTolerance > 0 {
			cfg["target_tolerance"] = r.cfg.TargetTolerance
		}
	}
	return cfg
}

// round8Scheme is the value of "round8" in the keys of the stages whose
// images are rounded to 8 bits: rounded inside the budget
// (attack.Round8Within). Stages rounded to the nearest k/255 regardless of
// the budget, as before, had true there, and are not reused.
const round8Scheme = "within-budget"

// orderedAttacks returns names in the paper's column order.
func orderedAttacks(names []string) []string { return inOrder(KnownAttacks, names) }

// orderedLosses returns the white-box losses of names in the order of
// AllWhiteBoxLosses (the cross-entropy first).
func orderedLosses(names []string) []string { return inOrder(AllWhiteBoxLosses, names) }

// inOrder returns the elements of all that names lists, in all's order.
func inOrder(all, names []string) []string {
	var out []string
	for _, a := range all {
		if contains(names, a) {
			out = append(out, a)
		}
	}
	return out
}

// attackInChunks runs atk on x in chunks of attackBatch images (the batches
// the attacks run in anyway, so the images are those of one call on all of
// x), saving each finished chunk in part and reloading the chunks an
// interrupted stage saved. The paper's attacks are deterministic, so a
// resumed stage gives the same images.
func attackInChunks(ctx context.Context, atk Attacker, m attack.Model, x *tensor.Tensor, labels []int, name string, rep progress.Reporter, part *cache.Partial) (*tensor.Tensor, error) {
	n := x.Shape[0]
	out := tensor.New(x.Shape...)
	stage := "attack " + name
	rep.Report(stage, 0, n, "")
	for lo := 0; lo < n; lo += attackBatch {
		hi := min(lo+attackBatch, n)
		dst := out.Batch(lo, hi).Data
		_, err := part.Fill(lo/attackBatch, dst, nil, func() error {
			adv, err := atk(ctx, m, x.Batch(lo, hi), labels[lo:hi], progress.Nop)
			if err != nil {
				return err
			}
			if len(adv.Data) != len(dst) {
				return &tensor.ShapeError{Op: "attack " + name, Want: x.Batch(lo, hi).Shape, Got: adv.Shape}
			}
			copy(dst, adv.Data)
			return nil
		})
		if err != nil {
			return nil, err
		}
		rep.Report(stage, hi, n, "")
	}
	return out, nil
}
