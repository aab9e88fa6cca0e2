//go:build !purego

package experiment

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/stl-defense/stl/internal/runcmp"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// partsExecutor computes each stage that has a task the way a distributed
// executor does: it writes the input images to the stage's directory,
// opens the task afresh (as a worker process would, from the task's JSON)
// and computes it in parts of partBatches batches, last part first, each
// with its own checkpoints; stages without a task run locally.
type partsExecutor struct {
	partBatches int

	mu            sync.Mutex
	tasks, locals []string
	whole, parts  int
}

func (e *partsExecutor) Images(ctx context.Context, s *Stage) (*tensor.Tensor, error) {
	if s.Task == nil {
		e.mu.Lock()
		e.locals = append(e.locals, "local")
		e.mu.Unlock()
		return s.Local(ctx)
	}
	js, err := json.Marshal(s.Task)
	if err != nil {
		return nil, err
	}
	var task StageTask
	if err := json.Unmarshal(js, &task); err != nil {
		return nil, err
	}
	task.Images = filepath.Join(s.Dir, "input.npy")
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := npy.WriteFile(task.Images, s.Input); err != nil {
		return nil, err
	}
	w, err := task.Open(ctx)
	if err != nil {
		return nil, err
	}
	out := tensor.New(s.Input.Shape...)
	size := e.partBatches * task.Batch
	var los []int
	for lo := 0; lo < task.N; lo += size {
		los = append(los, lo)
	}
	slices.Reverse(los)
	for i, lo := range los {
		hi := min(lo+size, task.N)
		y, err := w.Compute(ctx, lo, hi, filepath.Join(s.Dir, "part", string(rune('a'+i))))
		if err != nil {
			return nil, err
		}
		copy(out.Batch(lo, hi).Data, y.Data)
	}
	e.mu.Lock()
	e.tasks = append(e.tasks, task.Stage)
	e.parts += len(los)
	if task.WholeSet {
		e.whole++
	}
	e.mu.Unlock()
	return out, nil
}

// TestRunExecutorParts runs a small real run twice, in-process and with
// every attack column and transform computed in parts by StageTask
// workers (partsExecutor), and checks that the two results.json are
// equal but for their timings: deterministic attacks and transforms, a
// baseline learned from the training images (MagNet) and a randomized one
// skipping to each part's first image (pixel deflection).
func TestRunExecutorParts(t *testing.T) {
	if testing.Short() {
		t.Skip("trains real models; skipped with -short")
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.Limit, cfg.TestLimit, cfg.Epochs = "parts", 40, 60, 1
	cfg.Attacks, cfg.Baselines = []string{AttackFGSM008, AttackDeepFool}, []string{"jpeg", "magnet", "deflect"}
	cfg.DictImages, cfg.DictIterations, cfg.DAEEpochs, cfg.GridImages = 8, 2, 1, 0
	cfg.LambdaSweep, cfg.RetrainBaselines = []float64{}, false
	run := func(e Executor) string {
		b := DefaultBackend()
		b.Executor = e
		dir := t.TempDir()
		if _, err := RunWith(context.Background(), cfg, b, dir, nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	local := run(nil)
	e := &partsExecutor{partBatches: 1}
	parts := run(e)
	diffs, images, err := runcmp.Diff(local, parts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	if images < 20 {
		t.Errorf("%d image files in the stages, want 20 or more", images)
	}
	// 2 attacks; 5 defenses on the test set and 2 attacks; the STL rows
	// retrained, so also on the training set.
	if want := 2 + 5*3 + 2; len(e.tasks) != want || len(e.locals) != 0 {
		t.Errorf("%d stages in parts (%v), %d locally; want %d and 0", len(e.tasks), e.tasks, len(e.locals), want)
	}
	if e.parts <= len(e.tasks) {
		t.Errorf("%d parts for %d stages: no stage was cut", e.parts, len(e.tasks))
	}
}
