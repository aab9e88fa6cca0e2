package nn

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// and clipped to [0, 1], all with the clean images as targets; binary
// cross-entropy; Adam.
type DAETrainOptions struct {
	Epochs        int          // default 20
	BatchSize     int          // clean images per batch (the step sees twice as many); default 128
	LR            float64      // default 1e-3
	Schedule      ScheduleKind // default ScheduleConstant
	Adam          AdamOptions  // default DefaultAdamOptions()
	NoiseSigma    float64      // default 0.15
	Seed          uint64       // shuffling and noise; default 1
	CheckpointDir string       // as TrainOptions
	Resume        bool
	Dataset       string
	EpochDone     func(EpochStats) // as TrainOptions
}

// DefaultDAETrainOptions returns the official implementation's recipe.
func DefaultDAETrainOptions() DAETrainOptions {
	return DAETrainOptions{Epochs: 20, BatchSize: 128, LR: 1e-3, Schedule: ScheduleConstant, Adam: DefaultAdamOptions(), NoiseSigma: 0.15, Seed: 1}
}

// Validate reports invalid options.
func (o DAETrainOptions) Validate() error {
	run := runOptions{"DAETrainOptions", o.Epochs, o.BatchSize, 1, o.LR, o.Schedule, o.Resume, o.CheckpointDir}
	if err := run.validate(); err != nil {
		return err
	}
	if o.NoiseSigma < 0 {
		return option.New("nn", "DAETrainOptions.NoiseSigma", o.NoiseSigma, "want >= 0")
	}
	return o.Adam.Validate()
}

// TrainDAE trains d on the images of train (labels unused), reporting the
// BCE per batch and, when test has images, the test BCE on clean inputs
// per epoch. Checkpoints, resume, cancellation and determinism are as for
// Train.
func TrainDAE(ctx context.Context, d *DAE, train, test *tensor.Tensor, opts DAETrainOptions, rep progress.Reporter) (*TrainResult, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := d.cfg
	if err := checkInput("nn.TrainDAE train set", train, c.Channels, c.Height, c.Width); err != nil {
		return nil, err
	}
	hasTest := test != nil && test.Len() > 0
	if hasTest {
		if err := checkInput("nn.TrainDAE test set", test, c.Channels, c.Height, c.Width); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := train.Shape[0]
	bs, sched, err := plan("nn.TrainDAE", n, opts.BatchSize, opts.Epochs, opts.Schedule, opts.LR)
	if err != nil {
		return nil, err
	}
	opt, err := NewAdam(opts.Adam)
	if err != nil {
		return nil, err
	}
	per := c.Channels * c.Height * c.Width
	xb := tensor.New(2*bs, c.Channels, c.Height, c.Width)
	tb := tensor.New(2*bs, c.Channels, c.Height, c.Width)
	sigma := float32(opts.NoiseSigma)
	l := &loop{kind: "dae", epochs: opts.Epochs, batch: bs, n: n, seed: opts.Seed, sched: sched, opt: opt, adam: opt, params: d.params,
		ckpt: opts.CheckpointDir, resume: opts.Resume, epochDone: opts.EpochDone,
		save: func(dir string) error { return Save(dir, d) },
		step: func(_ context.Context, _, _ int, idx []int, rng *rand.Rand) (float64, int, error) {
			b := len(idx)
			shape := []int{2 * b, c.Channels, c.Height, c.Width}
			x := &tensor.Tensor{Shape: shape, Data: xb.Data[:2*b*per]}
			t := &tensor.Tensor{Shape: shape, Data: tb.Data[:2*b*per]}
			for i, j := range idx {
				img := train.Data[j*per : (j+1)*per]
				copy(x.Data[i*per:], img)
				copy(t.Data[i*per:], img)
				copy(t.Data[(b+i)*per:], img)
				noisy := x.Data[(b+i)*per : (b+i+1)*per]
				for k, v := range img {
					v += sigma * float32(rng.NormFloat64())
					noisy[k] = min(max(v, 0), 1)
				}
			}
			loss, err := d.trainStep(x, t)
			return loss, 0, err
		},
	}
	if hasTest {
		l.eval = func(ctx context.Context) (float64, float64, error) {
			loss, err := d.evalLoss(ctx, test)
			return loss, math.NaN(), err
		}
	}
	l.onEpochDone = func(st EpochStats) {
		d.Meta.Dataset, d.Meta.TrainImages, d.Meta.Epochs, d.Meta.TrainLoss = opts.Dataset, n, st.Epoch, st.TrainLoss
		if hasTest {
			d.Meta.TestLoss = st.TestLoss
		}
		d.Meta.Seconds = st.Elapsed
	}
	return l.runAndSave(ctx, rep)
}

// evalLoss returns the mean BCE of reconstructing x from itself; the
// caller holds d.mu.
func (d *DAE) evalLoss(ctx context.Context, x *tensor.Tensor) (float64, error) {
	n := x.Shape[0]
	var loss float64
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		hi := min(lo+ChunkSize, n)
		in := x.Batch(lo, hi)
		y := d.dec.Forward(d.enc.Forward(in, false), false)
		l, err := BCEWithLogits(y, in, nil)
		if err != nil {
			return 0, err
		}
		loss += l * float64(hi-lo)
	}
	return loss / float64(n), nil
}
