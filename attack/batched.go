package attack

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// BatchOptions configures RunBatches.
type BatchOptions struct {
	// Size is the number of images per batch. Default 100.
	Size int
	// Progress receives "attack <name>" reports, in images, after each
	// batch. nil: none.
	Progress progress.Reporter
	// CheckpointDir, when not empty, keeps every finished batch there as a
	// Set (subdirectory batch-<first>-<last>) and reuses the batches found
	// there with the same Key, attack name and labels, so that an
	// interrupted run resumes where it stopped. The caller removes the
	// directory once the whole result is saved. Default "" (none).
	CheckpointDir string
	// Key identifies the run's inputs (model, data, options...): batches
	// checkpointed under another key are computed again.
	Key string
	// Draws and Skip keep a randomized model (a randomized defense behind
	// BPDA and EOT, drawing from one seeded stream across batches) on the
	// numbers an uninterrupted run draws. Draws returns a running count of
	// what the model has drawn (e.g. the images the defense transformed);
	// each checkpoint records how far it advanced while its batch was
	// attacked, and Skip(n) is called with that count for every reloaded
	// batch, before the next batch is attacked. Skip returns an error when
	// it cannot skip. Both nil (the default): a deterministic model.
	Draws func() int64
	Skip  func(n int64) error
}

// DefaultBatchOptions returns batches of 100 images, no progress and no
// checkpoints.
func DefaultBatchOptions() BatchOptions { return BatchOptions{Size: 100} }

// Validate checks Size >= 1.
func (o BatchOptions) Validate() error {
	if o.Size < 1 {
		return optErr("RunBatches", "Size", o.Size, "must be at least 1")
	}
	return nil
}

// RunBatched is RunBatches without checkpoints.
func RunBatched(ctx context.Context, a Attack, m Model, x *tensor.Tensor, labels []int, batchSize int, rep progress.Reporter) (*Result, error) {
	return RunBatches(ctx, a, m, x, labels, BatchOptions{Size: batchSize, Progress: rep})
}

// RunBatches runs a on x in consecutive batches of at most o.Size images
// and concatenates the results. It checks ctx between batches. The result
// equals that of one Run on the whole of x for the deterministic attacks;
// PGD's random start depends on the batching. Result.Passes is the sum
// over batches. RunBatches is safe for concurrent use when a and m are and
// concurrent runs use different checkpoint directories.
func RunBatches(ctx context.Context, a Attack, m Model, x *tensor.Tensor, labels []int, o BatchOptions) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rep := progress.Or(o.Progress)
	if a == nil {
		return nil, fmt.Errorf("attack: nil attack")
	}
	if _, err := checkInput(m, x, labels); err != nil {
		return nil, err
	}
	n := x.Shape[0]
	all := &Result{Adv: tensor.New(x.Shape...)}
	stage := "attack " + a.Name()
	rep.Report(stage, 0, n, "")
	for lo := 0; lo < n; lo += o.Size {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+o.Size, n)
		xb := x.Batch(lo, hi)
		ckpt := ""
		if o.CheckpointDir != "" {
			ckpt = filepath.Join(o.CheckpointDir, fmt.Sprintf("batch-%06d-%06d", lo, hi-1))
		}
		r, draws := loadCheckpoint(ckpt, a, o.Key, xb, labels[lo:hi])
		if r != nil && o.Skip != nil {
			if err := o.Skip(draws); err != nil {
				return nil, fmt.Errorf("attack: images %d-%d: %w", lo, hi-1, err)
			}
		}
		if r == nil {
			var before int64
			if o.Draws != nil {
				before = o.Draws()
			}
			var err error
			if r, err = a.Run(ctx, m, xb, labels[lo:hi]); err != nil {
				return nil, fmt.Errorf("attack: images %d-%d: %w", lo, hi-1, err)
			}
			if ckpt != "" {
				s, err := NewSet(a, labels[lo:hi], r)
				if err != nil {
					return nil, err
				}
				s.Meta.Data = o.Key
				if o.Draws != nil {
					s.Meta.Draws = o.Draws() - before
				}
				if err := s.Save(ckpt); err != nil {
					return nil, fmt.Errorf("attack: checkpoint: %w", err)
				}
			}
		}
		copy(all.Adv.Batch(lo, hi).Data, r.Adv.Data)
		all.appendFigures(r)
		rep.Report(stage, hi, n, fmt.Sprintf("success %.1f%%", 100*all.SuccessRate()))
	}
	return all, nil
}

// appendFigures appends o's per-image figures (not Adv) to r.
func (r *Result) appendFigures(o *Result) {
	r.Dissim = append(r.Dissim, o.Dissim...)
	r.LInf = append(r.LInf, o.LInf...)
	r.CleanPred = append(r.CleanPred, o.CleanPred...)
	r.AdvPred = append(r.AdvPred, o.AdvPred...)
	r.Success = append(r.Success, o.Success...)
	r.Passes += o.Passes
}

// loadCheckpoint returns the batch saved in dir when it was computed by the
// same attack under the same key for the same labels and shape, and nil
// otherwise: when there is none, or it is stale, partial or damaged (then
// the batch is computed again and the checkpoint replaced). It returns the
// checkpoint's SetMeta.Draws with it.
func loadCheckpoint(dir string, a Attack, key string, x *tensor.Tensor, labels []int) (*Result, int64) {
	if dir == "" {
		return nil, 0
	}
	s, err := LoadSet(dir)
	if err != nil {
		return nil, 0
	}
	m := s.Meta
	if m.Data != key || m.Attack != a.Name() || !slices.Equal(s.Labels, labels) || !tensor.SameShape(s.Adv, x) {
		return nil, 0
	}
	return &Result{Adv: s.Adv, Dissim: m.Dissim, LInf: m.LInf, CleanPred: m.CleanPred, AdvPred: m.AdvPred, Success: m.Success, Passes: m.Passes}, m.Draws
}
