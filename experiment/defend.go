package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"sync"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// defenseSpec is the spec of the run's STL defense.
func (r *runner) defenseSpec() DefenseSpec {
	return DefenseSpec{STLSettings: r.cfg.STLSettings, Seed: r.cfg.Seed}
}

// buildDefense builds (or reuses) the STL defense and sets up the STL rows.
func (r *runner) buildDefense(ctx context.Context) error {
	r.next("build the STL defense")
	stl, stlc := r.rows[1], r.rows[2]
	if r.b.Defense == nil {
		return nil
	}
	spec := r.defenseSpec()
	key, err := cache.NewKey(stageDefense, spec, r.dataKey)
	if err != nil {
		return err
	}
	spec.CheckpointDir = r.checkpointDir(stageDefense, key)
	dir, _, err := r.store.Do(ctx, stageDefense, key, spec, []cache.Key{r.dataKey}, func(ctx context.Context, out string) error {
		return r.b.Defense.Build(ctx, spec, r.train, out, r.rep)
	})
	if err == nil {
		r.dropCheckpoint(spec.CheckpointDir)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		stl.missing = "building the defense failed: " + err.Error()
		stlc.missing = stl.missing
		return nil
	}
	if d, ok := r.b.Defense.(DirDescriber); ok {
		if v, err := d.DescribeDir(dir); err == nil {
			r.describe("defense", v)
		}
	}
	r.stl = &sharedDefense{b: r.b.Defense, dir: dir}
	stl.newT, stl.key = r.stl.transform(0), key
	stlc.newT, stlc.key = r.stl.transform(1), key
	return nil
}

// sharedDefense is the built STL defense of a run, loaded once, when a
// stage first needs it (a run whose transform stages are all cached never
// reads it), and shared by every stage: the transforms at the learned
// lambda keep the projectors, and the dictionaries' spectra they cache,
// for the whole run.
type sharedDefense struct {
	b   DefenseBuilder
	dir string

	once sync.Once
	d    LoadedDefense
	ts   [2]defense.Transform // STL, STL (cluster)
	err  error
}

// load loads the defense and its transforms at the learned lambda, once.
func (s *sharedDefense) load() error {
	s.once.Do(func() {
		if s.d, s.err = s.b.Load(s.dir); s.err == nil {
			s.ts[0], s.ts[1], s.err = s.d.Transforms(0)
		}
	})
	return s.err
}

// transform returns row.newT of STL (i = 0) or STL (cluster) (i = 1): the
// shared transform, whatever the seed (both are deterministic).
func (s *sharedDefense) transform(i int) func(uint64) (defense.Transform, error) {
	return func(uint64) (defense.Transform, error) {
		if err := s.load(); err != nil {
			return nil, err
		}
		return s.ts[i], nil
	}
}

// atLambda returns STL (cluster) projecting with sparsity weight lambda,
// with the loaded defense's dictionaries and DAE.
func (s *sharedDefense) atLambda(lambda float64) (defense.Transform, error) {
	if err := s.load(); err != nil {
		return nil, err
	}
	_, c, err := s.d.Transforms(lambda)
	return c, err
}

// defendAll computes the transform stages and retrained classifiers of
// every defense (defend).
func (r *runner) defendAll(ctx context.Context) error {
	for _, rw := range r.rows[1:] {
		if err := r.defend(ctx, rw); err != nil {
			return err
		}
	}
	return nil
}

// defend computes one defense's transformed test, adversarial and training
// sets and its retrained classifier. Failures make cells missing.
func (r *runner) defend(ctx context.Context, rw *row) error {
	rw.adv = map[string]*tensor.Tensor{}
	// skip moves the overall position past this row's stages, done of
	// which have been met.
	skip := func(done int) {
		n := 1 + len(r.advs) - done
		if rw.retrain {
			n += 2
		}
		r.advance(n)
	}
	if rw.newT == nil {
		skip(0)
		return nil
	}
	testKey, _ := cache.NewKey("set", "test", r.dataKey)
	r.next(rw.name + " on the test set")
	var err error
	if rw.test, err = r.transformStage(ctx, rw, "test", r.test.Images, testKey); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.missing = "the transform failed: " + err.Error()
		skip(1)
		return nil
	}
	for _, a := range r.advs {
		r.next(rw.name + " on " + a.name)
		if a.x == nil {
			continue
		}
		y, err := r.transformStage(ctx, rw, a.name, a.x, a.key)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.missing = append(r.missing, Missing{rw.name + " on " + a.name, err.Error()})
			continue
		}
		rw.adv[a.name] = y
	}
	if !rw.retrain {
		rw.modelMissing = "not retrained (retrain_baselines is false, to keep the run short)"
		if why := r.cfg.notRetrainable(); why != "" {
			rw.modelMissing = why
		}
		return nil
	}
	r.next(rw.name + " on the training set")
	trainKey, _ := cache.NewKey("set", "train", r.dataKey)
	ytrain, err := r.transformStage(ctx, rw, "train", r.train.Images, trainKey)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.modelMissing = "transforming the training set failed: " + err.Error()
		r.advance(1)
		return nil
	}
	r.next("retrain on " + rw.name)
	set := &dataset.Set{Images: ytrain, Labels: r.train.Labels, Classes: r.train.Classes, Name: r.train.Name + " through " + rw.name}
	tKey, _ := cache.NewKey("transformed-train", nil, rw.key, trainKey)
	m, mKey, err := r.trainClassifier(ctx, stageRetrain+slug(rw.name), r.classifierSpec(r.cfg.retrainEpochs()), set, tKey)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.modelMissing = "retraining failed: " + err.Error()
		return nil
	}
	rw.model, rw.modelKey = m, mKey
	return nil
}

// transformStage applies rw's transform to x, the set named what whose
// key is setKey, in a cached stage. Each stage seeds its own transform from
// the run seed and the stage name, so a randomized baseline gives the same
// images whether or not the run was interrupted.
func (r *runner) transformStage(ctx context.Context, rw *row, what string, x *tensor.Tensor, setKey cache.Key) (*tensor.Tensor, error) {
	stage := stageTransform + slug(rw.name) + "-" + slug(what)
	key, err := cache.NewKey(stage, map[string]any{"seed": r.cfg.Seed}, rw.key, setKey)
	if err != nil {
		return nil, err
	}
	ckpt := r.checkpointDir(stage, key)
	dir, _, err := r.store.Do(ctx, stage, key, nil, []cache.Key{rw.key, setKey}, func(ctx context.Context, out string) error {
		seed := stageSeed(r.cfg.Seed, stage)
		t, err := rw.newT(seed)
		if err != nil {
			return err
		}
		st := &Stage{Task: r.transformTask(rw, stage, key, t, seed, x.Shape[0]), Input: x, Dir: ckpt, Rep: r.rep, local: func(ctx context.Context) (*tensor.Tensor, error) {
			// Each finished batch is saved, so an interrupted stage
			// resumes mid-way: a randomized transform skips the random
			// numbers of the batches it reloads (defense.Skipper); one
			// that cannot skip is recomputed whole.
			var part *cache.Partial
			if defense.CanResume(t) {
				if part, err = cache.OpenPartial(ckpt, key); err != nil {
					return nil, err
				}
			}
			return applyBatched(ctx, t, x, rw.name+" on "+what, r.rep, part)
		}}
		y, err := r.executor().Images(ctx, st)
		if err != nil {
			return err
		}
		if !tensor.SameShape(x, y) {
			return &tensor.ShapeError{Op: "transform " + rw.name, Want: x.Shape, Got: y.Shape}
		}
		return npy.WriteFile(filepath.Join(out, "images.npy"), y)
	})
	if err != nil {
		return nil, err
	}
	r.dropCheckpoint(ckpt)
	return readImages(filepath.Join(dir, "images.npy"), x.Shape)
}

// stageSeed derives a transform's seed from the run seed and the stage.
func stageSeed(seed int64, stage string) uint64 {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", seed, stage)))
	return binary.LittleEndian.Uint64(h[:8])
}

// applyBatched applies t to x in batches, reporting progress in images.
// With part, each finished batch is saved there and batches saved by an
// interrupted call are reloaded instead of recomputed; t must then satisfy
// defense.CanResume (a randomized t skips the reloaded images' numbers).
// A defense.SetTransform (STL (cluster) with transductive clusters) is
// bound to the whole of x, so that the batching does not change the result.
func applyBatched(ctx context.Context, t defense.Transform, x *tensor.Tensor, what string, rep progress.Reporter, part *cache.Partial) (*tensor.Tensor, error) {
	return applyRange(ctx, t, x, 0, x.Shape[0], what, rep, part)
}

// applyRange is applyBatched's output for images from..to-1 of x, in
// batches starting at from (those of applyBatched when from is a multiple
// of transformBatch); the chunks of part are numbered from 0 at from.
func applyRange(ctx context.Context, t defense.Transform, x *tensor.Tensor, from, to int, what string, rep progress.Reporter, part *cache.Partial) (*tensor.Tensor, error) {
	n := to - from
	apply := func(ctx context.Context, lo, hi int) (*tensor.Tensor, error) { return t.Apply(ctx, x.Batch(lo, hi)) }
	if st, ok := t.(defense.SetTransform); ok {
		var err error
		if apply, err = st.ForSet(ctx, x); err != nil {
			return nil, err
		}
	}
	out := tensor.New(append([]int{n}, x.Shape[1:]...)...)
	rep.Report(what, 0, n, "")
	for lo := from; lo < to; lo += transformBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+transformBatch, to)
		dst := out.Batch(lo-from, hi-from).Data
		reloaded, err := part.Fill((lo-from)/transformBatch, dst, nil, func() error {
			yb, err := apply(ctx, lo, hi)
			if err != nil {
				return err
			}
			if want := x.Batch(lo, hi).Shape; !slices.Equal(want, yb.Shape) {
				return &tensor.ShapeError{Op: "transform " + t.Name(), Want: want, Got: yb.Shape}
			}
			copy(dst, yb.Data)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if sk, isSkipper := t.(defense.Skipper); reloaded && isSkipper && t.Randomized() {
			sk.Skip(hi - lo)
		}
		rep.Report(what, hi-from, n, "")
	}
	return out, nil
}
