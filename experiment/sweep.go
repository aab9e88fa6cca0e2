package experiment

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// sweepSet is the lambda sweep's projections at one lambda.
type sweepSet struct {
	lambda     float64
	clean, adv *tensor.Tensor
}

// sweepAttack returns the adversarial set of the lambda sweep: FGSM-0.08 as
// in the paper's Figure 5, else the first available one.
func (r *runner) sweepAttack() *advSet {
	var a *advSet
	for _, s := range r.advs {
		if s.x != nil && (a == nil || s.name == AttackFGSM008) {
			a = s
		}
	}
	return a
}

// sweep projects the attacked test images and their adversarial versions
// with STL (cluster) at each lambda of cfg.LambdaSweep (Figure 5).
func (r *runner) sweep(ctx context.Context) error {
	if len(r.cfg.LambdaSweep) == 0 {
		return nil
	}
	a := r.sweepAttack()
	why := ""
	switch {
	case r.stl == nil:
		why = "STL (cluster) is not available"
	case a == nil:
		why = "no adversarial set"
	}
	if why != "" {
		r.advance(len(r.cfg.LambdaSweep))
		r.missing = append(r.missing, Missing{"lambda sweep", why})
		return nil
	}
	defKey := r.rows[2].key
	subsetKey := r.subsetKey
	for _, lambda := range r.cfg.LambdaSweep {
		r.next(fmt.Sprintf("lambda sweep %g", lambda))
		stage := "sweep-" + slug(fmt.Sprintf("lambda %g", lambda))
		cfg := map[string]any{"lambda": lambda, "defense": RowSTLCluster, "attack": a.name}
		key, err := cache.NewKey(stage, cfg, defKey, subsetKey, a.key)
		if err != nil {
			return err
		}
		out, _, err := r.store.Do(ctx, stage, key, cfg, []cache.Key{defKey, subsetKey, a.key}, func(ctx context.Context, out string) error {
			t, err := r.stl.atLambda(lambda)
			if err != nil {
				return err
			}
			for _, set := range []struct {
				name string
				x    *tensor.Tensor
			}{{"clean", r.x0}, {"adv", a.x}} {
				y, err := applyBatched(ctx, t, set.x, fmt.Sprintf("%s (lambda %g) on %s", RowSTLCluster, lambda, set.name), r.rep, nil)
				if err != nil {
					return err
				}
				if err := npy.WriteFile(filepath.Join(out, set.name+".npy"), y); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.missing = append(r.missing, Missing{fmt.Sprintf("lambda sweep at %g", lambda), err.Error()})
			continue
		}
		s := sweepSet{lambda: lambda}
		if s.clean, err = readImages(filepath.Join(out, "clean.npy"), r.x0.Shape); err == nil {
			s.adv, err = readImages(filepath.Join(out, "adv.npy"), r.x0.Shape)
		}
		if err != nil {
			return fmt.Errorf("stage %s: %w", stage, err)
		}
		r.sweeps = append(r.sweeps, s)
	}
	return nil
}
