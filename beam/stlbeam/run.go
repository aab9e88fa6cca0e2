package stlbeam

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Executor is the experiment.Executor of `stl-beam run`: it runs each of
// a run's heavy stages (an attack column, a defense's transform of a set)
// as a Beam pipeline over Shards parts of its images, cut at the stage's
// batch boundaries, spread over the runner's workers (Workers per
// process, each loading the stage once: experiment.StageTask.Open). The
// stage's input is written to its checkpoint directory (STAGE/beam/
// input.npy, of which each worker reads only its part, npy.ReadRows), and
// each part to STAGE/beam/parts with a .done marker holding the stage's
// key and the part's range, so that a run interrupted and started again
// skips the finished parts; the parts, read back in order, are the
// stage's output, equal to the run's in-process one
// (experiment.StageWorker.Compute). A stage that cannot be cut (no
// StageTask) runs in the launching process.
type Executor struct {
	// Sharding: Shards (at most one per batch of a stage) and Workers;
	// PartsDir is not used (each stage keeps its parts in its own
	// directory).
	Sharding
	// Run runs a pipeline on the runner Beam's flags choose; default
	// beamx.RunWithMetrics.
	Run func(ctx context.Context, p *beam.Pipeline) (beam.PipelineResult, error)

	computed, skipped atomic.Int64
	stages            atomic.Int64
}

// Counts returns the stages the executor ran as pipelines and their
// shards computed and found finished (skipped) so far, the latter counted
// from the parts' markers before each pipeline ran.
func (e *Executor) Counts() (stages, computed, skipped int64) {
	return e.stages.Load(), e.computed.Load(), e.skipped.Load()
}

// Images implements experiment.Executor.
func (e *Executor) Images(ctx context.Context, s *experiment.Stage) (*tensor.Tensor, error) {
	if s.Task == nil {
		return s.Local(ctx)
	}
	task := *s.Task
	dir := filepath.Join(s.Dir, "beam")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	task.Images = filepath.Join(dir, "input.npy")
	if err := npy.WriteFile(task.Images, s.Input); err != nil {
		return nil, err
	}
	sh := e.Sharding.withDefaults(filepath.Join(dir, "out"))
	sh.PartsDir = filepath.Join(dir, "parts")
	if err := sh.validate(); err != nil {
		return nil, err
	}
	sh.Shards = min(sh.Shards, (task.N+task.Batch-1)/task.Batch)
	p, root := beam.NewPipelineWithRoot()
	if _, err := shardPipeline(root.Scope("stl.Stage"), nil, sh, &stageShardFn{Task: task, Sh: sh}, &mergeFn{Out: sh.PartsDir, Kind: mergeNone}); err != nil {
		return nil, err
	}
	// Parts finished by an earlier run (their markers hold this stage's
	// key and range): counted here rather than by the runner's metrics,
	// which not every runner reports.
	before := 0
	for i := range sh.Shards {
		if finished(PartPath(sh.PartsDir, i, sh.Shards), partKey(task, i, sh.Shards)) {
			before++
		}
	}
	stop := e.watch(s, task, sh)
	run := e.Run
	if run == nil {
		run = beamx.RunWithMetrics
	}
	_, err := run(ctx, p)
	stop()
	dropPool(task)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("stage %s on the Beam runner: %w", task.Stage, err)
	}
	e.stages.Add(1)
	e.computed.Add(int64(sh.Shards - before))
	e.skipped.Add(int64(before))
	out := tensor.New(s.Input.Shape...)
	for i := range sh.Shards {
		lo, hi := stageRange(task, i, sh.Shards)
		y, err := npy.ReadFile(PartPath(sh.PartsDir, i, sh.Shards))
		if err != nil {
			return nil, err
		}
		if dst := out.Batch(lo, hi); !tensor.SameShape(dst, y) {
			return nil, &tensor.ShapeError{Op: "stlbeam: part of stage " + task.Stage, Want: dst.Shape, Got: y.Shape}
		}
		copy(out.Batch(lo, hi).Data, y.Data)
	}
	return out, nil
}

// watch reports the stage's progress, in images of finished parts, to
// s.Rep every second until the returned function is called.
func (e *Executor) watch(s *experiment.Stage, task experiment.StageTask, sh Sharding) (stop func()) {
	if s.Rep == nil {
		return func() {}
	}
	what := task.Stage + " (Beam)"
	report := func() {
		done := 0
		for i := range sh.Shards {
			if _, err := os.Stat(PartPath(sh.PartsDir, i, sh.Shards) + ".done"); err == nil {
				lo, hi := stageRange(task, i, sh.Shards)
				done += hi - lo
			}
		}
		s.Rep.Report(what, done, task.N, fmt.Sprintf("%d shards", sh.Shards))
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			report()
			select {
			case <-quit:
				report()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-finished }
}

// stageRange is the images of shard i of n of the task's: cut at its
// batch boundaries (dataset.Shard.BatchRange).
func stageRange(task experiment.StageTask, i, n int) (lo, hi int) {
	return dataset.Shard{Index: i, Count: n}.BatchRange(task.N, task.Batch)
}

// partKey is what the .done marker of shard i of n of the task's holds:
// the stage's key and the shard's range.
func partKey(task experiment.StageTask, i, n int) string {
	lo, hi := stageRange(task, i, n)
	return fmt.Sprintf("%s %d..%d", task.Key, lo, hi)
}

// stageShardFn computes one part of a run's stage per element. Task and
// Sh are the DoFn's serialized configuration.
type stageShardFn struct {
	Task experiment.StageTask
	Sh   Sharding
}

// Setup creates the parts' directory.
func (f *stageShardFn) Setup() error { return os.MkdirAll(f.Sh.PartsDir, 0o755) }

// ProcessElement computes shard i's part (experiment.StageWorker.Compute,
// resumable inside the part) unless a finished one computed under the
// same stage key and range is there, and emits the part's path.
func (f *stageShardFn) ProcessElement(ctx context.Context, i int, emit func(string)) error {
	t, sh := f.Task, f.Sh
	lo, hi := stageRange(t, i, sh.Shards)
	if hi <= lo {
		return noBatch(i, sh.Shards, t.N, t.Batch)
	}
	out := PartPath(sh.PartsDir, i, sh.Shards)
	return runShard(ctx, out, partKey(t, i, sh.Shards), func(ctx context.Context) error {
		load := func(ctx context.Context) (*experiment.StageWorker, error) { return t.Open(ctx) }
		return withWorker(ctx, sh.Workers, t, load, func(w *experiment.StageWorker) error {
			y, err := w.Compute(ctx, lo, hi, out+".partial")
			if err != nil {
				return err
			}
			if err := npy.WriteFile(out, y); err != nil {
				return err
			}
			return os.RemoveAll(out + ".partial")
		})
	}, emit)
}

func init() {
	register.DoFn3x1[context.Context, int, func(string), error](&stageShardFn{})
}
