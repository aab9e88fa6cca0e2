package experiment

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// whiteBox runs the paper's Table 4 evaluation: PGD through BPDA (EOT for
// randomized defenses) against each defense in front of its retrained
// classifier, or the vanilla one when it has none, and against the
// undefended vanilla classifier, once per loss of Config.WhiteBoxLosses
// (the cross-entropy first, then the CW margin loss), each (row, loss) a
// cached stage.
func (r *runner) whiteBox(ctx context.Context) error {
	if !r.cfg.WhiteBox {
		return nil
	}
	losses := orderedLosses(r.cfg.WhiteBoxLosses)
	if r.b.WhiteBox == nil || r.b.Adaptive == nil {
		r.advance(len(r.rows) * len(losses))
		for _, rw := range r.rows {
			for _, loss := range losses {
				rw.setWhiteBox(loss, nil, "", "no white-box attack in this build")
			}
		}
		return nil
	}
	for _, loss := range losses {
		if err := r.whiteBoxLoss(ctx, loss); err != nil {
			return err
		}
	}
	return nil
}

// whiteBoxStage returns the name of the white-box stage of a row under
// loss: "whitebox-<row>" for the cross-entropy, as before losses existed,
// "whitebox-<loss>-<row>" for the others.
func whiteBoxStage(rowName, loss string) string {
	if loss == LossCE {
		return "whitebox-" + slug(rowName)
	}
	return "whitebox-" + loss + "-" + slug(rowName)
}

// whiteBoxKey returns the configuration, dependencies and key of a row's
// white-box stage under loss, with the attack's settings and the model's
// key. For the cross-entropy they are those of runs made before losses
// existed (key_test.go pins them); other losses add "loss".
func (r *runner) whiteBoxKey(rw *row, loss string, settings any, mKey cache.Key) (map[string]any, []cache.Key, cache.Key, error) {
	cfg := map[string]any{"attack": settings, "eot_draws": r.cfg.EOTDraws, "seed": r.cfg.Seed}
	if loss != LossCE {
		cfg["loss"] = loss
	}
	if rw.backward != "" {
		cfg["backward"] = rw.backward
	}
	deps := []cache.Key{mKey, r.wbSubsetKey}
	if rw.name != NoDefense {
		deps = append(deps, rw.key)
	}
	key, err := cache.NewKey(whiteBoxStage(rw.name, loss), cfg, deps...)
	return cfg, deps, key, err
}

// whiteBoxLoss runs the white-box attack with one loss on every row.
func (r *runner) whiteBoxLoss(ctx context.Context, loss string) error {
	pgd, settings, err := r.b.WhiteBox(r.cfg, loss)
	if err != nil {
		r.advance(len(r.rows))
		for _, rw := range r.rows {
			rw.setWhiteBox(loss, nil, "", err.Error())
		}
		return nil
	}
	what := "white-box attack" // "on its white-box examples" as before losses existed
	if loss == LossCE {
		r.describe("white-box attack (PGD through BPDA)", map[string]any{"pgd": settings, "eot_draws": r.cfg.EOTDraws})
	} else {
		what = "white-box (" + loss + " loss) attack"
		r.describe("white-box attack (PGD with the "+loss+" loss through BPDA)", map[string]any{"pgd": settings, "eot_draws": r.cfg.EOTDraws})
	}
	for _, rw := range r.rows {
		r.next(what + " on " + rw.name)
		if err := r.whiteBoxRow(ctx, rw, loss, what, pgd, settings); err != nil {
			return err
		}
	}
	return nil
}

// whiteBoxRow computes (or reuses) the white-box examples of one row under
// loss, the attack pgd with its settings (what names it in progress
// reports), against the row's retrained classifier or the vanilla one.
func (r *runner) whiteBoxRow(ctx context.Context, rw *row, loss, what string, pgd Attacker, settings any) error {
	if rw.name != NoDefense && (rw.newT == nil || rw.test == nil) {
		why := rw.missing
		if why == "" {
			why = "the defense is not available"
		}
		rw.setWhiteBox(loss, nil, "", why)
		return nil
	}
	m, mKey := rw.model, rw.modelKey
	if m == nil {
		m, mKey, rw.wbVanilla = r.vanilla, r.vanillaKey, true
	}
	stage := whiteBoxStage(rw.name, loss)
	cfg, deps, key, err := r.whiteBoxKey(rw, loss, settings, mKey)
	if err != nil {
		return err
	}
	dir, _, err := r.store.Do(ctx, stage, key, cfg, deps, func(ctx context.Context, out string) error {
		y, err := r.whiteBoxImages(ctx, rw, m, pgd, stage, rw.name+" on its "+strings.TrimSuffix(what, " attack")+" examples")
		if err != nil {
			return err
		}
		return npy.WriteFile(filepath.Join(out, "images.npy"), y)
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.setWhiteBox(loss, nil, "", "the white-box attack failed: "+err.Error())
		return nil
	}
	adv, err := readImages(filepath.Join(dir, "images.npy"), r.wbX.Shape)
	if err != nil {
		return fmt.Errorf("stage %s: %w", stage, err)
	}
	rw.setWhiteBox(loss, adv, key, "")
	return nil
}

// whiteBoxImages attacks m with pgd behind the row's transform T, drawn
// for stage (through Backend.Adaptive: BPDA, EOT), and returns T(x_adv),
// reporting its application as what; for No Defense it returns x_adv.
func (r *runner) whiteBoxImages(ctx context.Context, rw *row, m attack.Model, pgd Attacker, stage, what string) (*tensor.Tensor, error) {
	if rw.name == NoDefense {
		return pgd(ctx, m, r.wbX, r.wbY, r.rep)
	}
	t, err := rw.newT(stageSeed(r.cfg.Seed, stage))
	if err != nil {
		return nil, err
	}
	am, err := r.b.Adaptive(t, m, r.cfg.EOTDraws)
	if err != nil {
		return nil, err
	}
	adv, err := pgd(ctx, am, r.wbX, r.wbY, r.rep)
	if err != nil {
		return nil, err
	}
	return applyBatched(ctx, t, adv, what, r.rep, nil)
}
