package experiment

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
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
		r.advance(len(r.whiteBoxRows()) * len(losses))
		for _, rw := range r.whiteBoxRows() {
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
	if r.cfg.round8() {
		cfg["round8"] = round8Scheme
	}
	deps := []cache.Key{mKey, r.wbSubsetKey}
	if !rw.plain() {
		deps = append(deps, rw.key)
	}
	key, err := cache.NewKey(whiteBoxStage(rw.name, loss), cfg, deps...)
	return cfg, deps, key, err
}

// whiteBoxLoss runs the white-box attack with one loss on every row.
func (r *runner) whiteBoxLoss(ctx context.Context, loss string) error {
	pgd, settings, err := r.b.WhiteBox(r.cfg, loss)
	if err != nil {
		r.advance(len(r.whiteBoxRows()))
		for _, rw := range r.whiteBoxRows() {
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
	for _, rw := range r.whiteBoxRows() {
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
	if why := rw.whiteBoxMissing(); why != "" {
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
	ckpt := r.checkpointDir(stage, key)
	dir, _, err := r.store.Do(ctx, stage, key, cfg, deps, func(ctx context.Context, out string) error {
		part, err := cache.OpenPartial(ckpt, key)
		if err != nil {
			return err
		}
		y, err := r.whiteBoxImages(ctx, rw, m, pgd, stage, rw.name+" on its "+strings.TrimSuffix(what, " attack")+" examples", part)
		if err != nil {
			return err
		}
		return npy.WriteFile(filepath.Join(out, "images.npy"), y)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.dropCheckpoint(ckpt)
	if err != nil {
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

// whiteBoxMissing returns why the row cannot be attacked in the white-box
// table, "" when it can: a defense without its transform or transformed
// test set, an adversarially trained row without its classifier.
func (rw *row) whiteBoxMissing() string {
	switch {
	case rw.adversarial && rw.model == nil:
		if rw.modelMissing == "" {
			return "adversarial training did not run"
		}
		return "adversarial training failed: " + rw.modelMissing
	case rw.plain() || rw.adversarial:
		return ""
	case rw.newT == nil || rw.test == nil:
		if rw.missing == "" {
			return "the defense is not available"
		}
		return rw.missing
	}
	return ""
}

// whiteBoxImages attacks m with pgd behind the row's transform T, drawn
// for stage (through Backend.Adaptive: BPDA, EOT), and returns T(x_adv),
// reporting its application as what; for No Defense and AT alone it
// returns x_adv.
//
// The attack runs in chunks of attackBatch images (the batches PGD runs in
// anyway, each from its own seeded random start, so the images are those of
// one call on the whole set), each saved in part the moment it is done, so
// that an interrupted stage reloads them. A randomized T draws its numbers
// from one stream across the chunks: each saved chunk records how many
// images T transformed while attacking it, and a resumed stage skips that
// many (defense.Skipper) before the next chunk, so it draws what an
// uninterrupted run draws. A randomized T that cannot skip recomputes the
// whole stage. With Config.Round8 (or a rounding protocol) x_adv is
// rounded to 8 bits inside the budget (whiteBoxRound8) before T sees it.
func (r *runner) whiteBoxImages(ctx context.Context, rw *row, m attack.Model, pgd Attacker, stage, what string, part *cache.Partial) (*tensor.Tensor, error) {
	if rw.plain() {
		adv, err := attackInChunks(ctx, pgd, m, r.wbX, r.wbY, stage, r.rep, part)
		if err == nil {
			err = r.whiteBoxRound8(adv)
		}
		return adv, err
	}
	t, err := rw.newT(stageSeed(r.cfg.Seed, stage))
	if err != nil {
		return nil, err
	}
	if !defense.CanResume(t) {
		part = nil
	}
	ct, target := counter(deterministic{t}), t
	if t.Randomized() {
		ct = countingTransform(t)
		target = ct
	}
	am, err := r.b.Adaptive(target, m, r.cfg.EOTDraws)
	if err != nil {
		return nil, err
	}
	n := r.wbX.Shape[0]
	adv := tensor.New(r.wbX.Shape...)
	name := "attack " + stage
	r.rep.Report(name, 0, n, "")
	for lo := 0; lo < n; lo += attackBatch {
		hi := min(lo+attackBatch, n)
		dst := adv.Batch(lo, hi).Data
		count := []int32{0}
		reloaded, err := part.Fill(lo/attackBatch, dst, count, func() error {
			before := ct.images()
			y, err := pgd(ctx, am, r.wbX.Batch(lo, hi), r.wbY[lo:hi], progress.Nop)
			if err != nil {
				return err
			}
			if len(y.Data) != len(dst) {
				return &tensor.ShapeError{Op: name, Want: r.wbX.Batch(lo, hi).Shape, Got: y.Shape}
			}
			copy(dst, y.Data)
			count[0] = int32(ct.images() - before)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if reloaded && t.Randomized() {
			if !ct.skip(int(count[0])) {
				return nil, fmt.Errorf("%s: cannot skip the random numbers of a reloaded chunk", name)
			}
		}
		r.rep.Report(name, hi, n, "")
	}
	if err := r.whiteBoxRound8(adv); err != nil {
		return nil, err
	}
	return applyBatched(ctx, t, adv, what, r.rep, nil)
}

// whiteBoxRound8 rounds the white-box examples adv to 8 bits inside the
// Table 4 budget (L-infinity whiteBoxEps, attack.Round8Within: at most
// 7/255 from the clean images on 8-bit data) when the run rounds.
func (r *runner) whiteBoxRound8(adv *tensor.Tensor) error {
	if !r.cfg.round8() {
		return nil
	}
	return attack.Round8Within(adv, r.wbX, attack.Budget{Norm: attack.LInf, Eps: whiteBoxEps})
}

// counter is a transform that counts the images it transforms.
type counter interface {
	defense.Transform
	images() int
	skip(n int) bool
}

// countingTransform wraps t so that it counts the images it transforms,
// keeping t's exact gradient (attack.Approx) when it has one.
func countingTransform(t defense.Transform) counter {
	c := &counting{Transform: t}
	if a, ok := t.(attack.Approx); ok {
		return &countingApprox{counting: c, Approx: a}
	}
	return c
}

// deterministic is a deterministic transform as a counter: it draws no
// random numbers, so there is nothing to count or skip; Backend.Adaptive
// sees t itself.
type deterministic struct{ defense.Transform }

func (deterministic) images() int   { return 0 }
func (deterministic) skip(int) bool { return true }

// counting counts the images a transform is applied to; it is used by one
// goroutine at a time, as the white-box attack applies T.
type counting struct {
	defense.Transform
	n atomic.Int64
}

func (c *counting) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if x != nil && len(x.Shape) > 0 {
		c.n.Add(int64(x.Shape[0]))
	}
	return c.Transform.Apply(ctx, x)
}

func (c *counting) images() int { return int(c.n.Load()) }

// skip advances the wrapped transform's random numbers by n images.
func (c *counting) skip(n int) bool {
	if !c.Randomized() {
		return true
	}
	s, ok := c.Transform.(defense.Skipper)
	return ok && s.Skip(n)
}

// countingApprox is counting for a transform with an exact gradient.
type countingApprox struct {
	*counting
	attack.Approx
}
