package experiment

import (
	"context"
	"path/filepath"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Executor computes the images of a run's per-image heavy stages: the
// attack columns (the paper's attacks on the vanilla classifier, section
// 5.1) and the defenses' transforms of the test, adversarial and training
// sets (section 3.5). The run does everything else itself (training,
// caching, evaluation, the report), and an executor changes neither the
// stages' keys nor their outputs: LocalExecutor, the default
// (Backend.Executor nil), computes a stage in the run's process; package
// stlbeam's executor cuts it into parts (StageTask) spread over the
// workers of an Apache Beam runner.
type Executor interface {
	// Images returns the stage's output, one image per input image in
	// order, equal to what s.Local returns. It returns ctx's error when
	// cancelled.
	Images(ctx context.Context, s *Stage) (*tensor.Tensor, error)
}

// Stage is one stage an Executor computes.
type Stage struct {
	// Task describes the stage to another process (StageTask.Open); nil
	// when the stage cannot be cut into parts, which an executor then
	// computes with Local: a transform bound to the whole set that is
	// not a defense of the run's STL (defense.SetTransform), or a
	// randomized transform that cannot skip to an image
	// (defense.Skipper).
	Task *StageTask
	// Input holds the stage's input images (N, C, H, W).
	Input *tensor.Tensor
	// Dir is a directory private to the stage that survives an
	// interruption of the run (the stage's checkpoints) and is removed
	// once the stage is published: where an executor keeps its parts, so
	// that a resumed run skips the finished ones.
	Dir string
	// Rep receives the stage's progress, in images.
	Rep progress.Reporter

	local func(ctx context.Context) (*tensor.Tensor, error)
}

// Local computes the stage in this process with the run's loaded
// classifier and transforms, saving each finished batch in the stage's
// checkpoints, as a run without an executor does.
func (s *Stage) Local(ctx context.Context) (*tensor.Tensor, error) { return s.local(ctx) }

// LocalExecutor computes every stage in the run's process (Stage.Local).
type LocalExecutor struct{}

// Images implements Executor.
func (LocalExecutor) Images(ctx context.Context, s *Stage) (*tensor.Tensor, error) {
	return s.Local(ctx)
}

// executor returns the backend's executor, LocalExecutor when it has none.
func (r *runner) executor() Executor {
	if r.b.Executor == nil {
		return LocalExecutor{}
	}
	return r.b.Executor
}

// absPath returns p made absolute, so that a worker in another directory
// finds it (p itself when that fails).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// attackTask describes the attack column name, of stage key, to a worker.
func (r *runner) attackTask(name string, key cache.Key) *StageTask {
	if r.vanillaFrom == nil {
		return nil
	}
	v := *r.vanillaFrom
	if v.Kind != vanillaOutside {
		v.Path = absPath(v.Path)
	}
	return &StageTask{Stage: stageAttack + slug(name), Key: key, Config: r.cfg, N: r.x0.Shape[0], Batch: attackBatch,
		Attack: name, Labels: r.y0, Vanilla: &v}
}

// transformTask describes the transform stage of row rw, of stage key,
// applying t (drawn from seed) to n images, to a worker; nil when it
// cannot be cut into parts (Stage.Task).
func (r *runner) transformTask(rw *row, stage string, key cache.Key, t defense.Transform, seed uint64, n int) *StageTask {
	if !defense.CanResume(t) {
		return nil // randomized, and cannot skip to an image
	}
	task := &StageTask{Stage: stage, Key: key, Config: r.cfg, N: n, Batch: transformBatch, Row: rw.name, Seed: seed}
	if _, ok := t.(defense.SetTransform); ok {
		s, isSTL := t.(*defense.StratifiedSTL)
		if !isSTL {
			return nil
		}
		task.WholeSet = s.Stratifier().IsTransductive()
	}
	switch {
	case rw.baseline:
		task.Baselines = absPath(filepath.Join(r.dir, BaselinesDir, r.dataKey.Short()))
	case r.stl != nil && (rw.name == RowSTL || rw.name == RowSTLCluster):
		task.Defense = absPath(r.stl.dir)
	default:
		return nil
	}
	return task
}
