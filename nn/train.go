package nn

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Labeled is a set of images (N, C, H, W) in [0, 1] with their labels.
type Labeled struct {
	Images *tensor.Tensor
	Labels []int
}

func (l Labeled) check(op string, c, h, w, classes int) error {
	if err := checkInput(op, l.Images, c, h, w); err != nil {
		return err
	}
	if len(l.Labels) != l.Images.Shape[0] {
		return fmt.Errorf("%s: %d labels for %d images", op, len(l.Labels), l.Images.Shape[0])
	}
	for i, y := range l.Labels {
		if y < 0 || y >= classes {
			return fmt.Errorf("%s: label %d of image %d outside [0, %d)", op, y, i, classes)
		}
	}
	return nil
}

// TrainOptions configures classifier training: SGD with (Nesterov)
// momentum and weight decay, a learning-rate schedule over all steps,
// random-crop and flip augmentation, and per-epoch checkpoints.
type TrainOptions struct {
	Epochs         int          // default 30
	BatchSize      int          // default 128
	LR             float64      // peak / base learning rate; default 0.05
	Schedule       ScheduleKind // default ScheduleOneCycle
	SGD            SGDOptions   // default DefaultSGDOptions()
	LabelSmoothing float64      // default 0
	CropPad        int          // random crop after zero padding by CropPad pixels; default 4, 0 disables
	Flip           bool         // random horizontal flip; default true
	// Cutout, when positive, sets a Cutout x Cutout square at a random
	// centre (clipped at the borders) of every augmented image to 0.5
	// (DeVries and Taylor 2017); default 0, off.
	Cutout int
	Seed   uint64 // shuffling and augmentation; default 1
	// CheckpointDir, when set, receives a checkpoint after every epoch
	// (written atomically) and the final model; with Resume, training
	// continues from the last checkpoint there.
	CheckpointDir string
	Resume        bool
	Dataset       string // recorded in the model's Metadata
	// EpochDone, when set, is called after every epoch (after the
	// checkpoint), for example to log a line per epoch.
	EpochDone func(EpochStats)
	// BatchHook, when set, is called on every training batch after
	// augmentation and before the training step, with the model under
	// training in inference mode (TrainBatch.Model). It may rewrite the
	// batch's images in place: adversarial training (package advtrain)
	// replaces them by adversarial examples of the current model. For a
	// resumed training to give the same weights it must be a function of
	// the batch, the model and its position (draw random numbers from a
	// seed derived from TrainBatch.Epoch and Index, never from a stream
	// that runs across batches). An error stops training and is returned
	// by Train; the last completed epoch stays checkpointed. Default nil.
	BatchHook func(ctx context.Context, b *TrainBatch) error
}

// TrainBatch is one training batch as Train hands it to
// TrainOptions.BatchHook.
type TrainBatch struct {
	Epoch, Index int   // 0-based epoch, and batch within the epoch
	Indices      []int // the images' indices in the training set; read only
	// Images are the augmented images (n, C, H, W) in [0, 1] the step
	// trains on; the hook may overwrite their values (not their shape),
	// which must stay finite. They are valid during the call only.
	Images *tensor.Tensor
	Labels []int // their labels; read only
	// Model is the classifier under training, in inference mode, as an
	// attack.Model.
	Model TrainingModel
}

// TrainingModel is a Classifier under training as its TrainOptions.BatchHook
// sees it: the methods of attack.Model (InputShape, NumClasses, Logits,
// InputGrad), in inference mode with the running batch-norm statistics and
// no dropout, as Classifier's own, but without taking the classifier's
// lock, which Train holds. It is valid only during the hook's call and,
// like the training, not safe for concurrent use.
type TrainingModel struct{ m *Classifier }

// InputShape implements attack.Model.
func (t TrainingModel) InputShape() (c, h, w int) { return t.m.InputShape() }

// NumClasses implements attack.Model.
func (t TrainingModel) NumClasses() int { return t.m.NumClasses() }

// Logits implements attack.Model as Classifier.Logits does.
func (t TrainingModel) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	c := t.m.cfg
	if err := checkInput("nn.TrainingModel.Logits", x, c.Channels, c.Height, c.Width); err != nil {
		return nil, err
	}
	return t.m.logits(ctx, x)
}

// InputGrad implements attack.Model as Classifier.InputGrad does.
func (t TrainingModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	c := t.m.cfg
	if err := checkInput("nn.TrainingModel.InputGrad", x, c.Channels, c.Height, c.Width); err != nil {
		return nil, nil, err
	}
	if seed == nil {
		return nil, nil, fmt.Errorf("nn.TrainingModel.InputGrad: nil seed")
	}
	return t.m.inputGrad(ctx, x, seed)
}

// DefaultTrainOptions returns the recipe of the PyTorch anchor: 30
// epochs, batch 128, one-cycle peaking at 0.05, SGD Nesterov 0.9, weight
// decay 5e-4, crop with padding 4 and flips.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Epochs: 30, BatchSize: 128, LR: 0.05, Schedule: ScheduleOneCycle, SGD: DefaultSGDOptions(), CropPad: 4, Flip: true, Seed: 1}
}

// Validate reports invalid options.
func (o TrainOptions) Validate() error {
	run := runOptions{"TrainOptions", o.Epochs, o.BatchSize, 2, o.LR, o.Schedule, o.Resume, o.CheckpointDir}
	if err := run.validate(); err != nil {
		return err
	}
	switch {
	case o.CropPad < 0:
		return option.New("nn", "TrainOptions.CropPad", o.CropPad, "want >= 0")
	case o.Cutout < 0:
		return option.New("nn", "TrainOptions.Cutout", o.Cutout, "want >= 0")
	case o.LabelSmoothing < 0 || o.LabelSmoothing >= 1:
		return option.New("nn", "TrainOptions.LabelSmoothing", o.LabelSmoothing, "want [0, 1)")
	}
	return o.SGD.Validate()
}

// EpochStats are the figures of one training epoch. Test figures are NaN

// Train trains the classifier m on train with SGD, evaluating on test
// (which may have no images) after every epoch, and reports progress per
// batch (stage "classifier epoch e/E", loss, accuracy, images/s). With
// opts.CheckpointDir it checkpoints every epoch and saves the final model
// there (Save) with its Metadata filled in. It owns m until it returns.
// Cancelling ctx stops between batches and returns ctx's error; the last
// completed epoch stays checkpointed. The same model seed, options, data
// and thread count give the same weights.
func Train(ctx context.Context, m *Classifier, train, test Labeled, opts TrainOptions, rep progress.Reporter) (*TrainResult, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := m.cfg
	if err := train.check("nn.Train train set", c.Channels, c.Height, c.Width, c.Classes); err != nil {
		return nil, err
	}
	hasTest := test.Images != nil && test.Images.Len() > 0
	if hasTest {
		if err := test.check("nn.Train test set", c.Channels, c.Height, c.Width, c.Classes); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := train.Images.Shape[0]
	bs, sched, err := plan("nn.Train", n, opts.BatchSize, opts.Epochs, opts.Schedule, opts.LR)
	if err != nil {
		return nil, err
	}
	opt, err := NewSGD(opts.SGD)
	if err != nil {
		return nil, err
	}
	per := c.Channels * c.Height * c.Width
	xb := tensor.New(bs, c.Channels, c.Height, c.Width)
	lb := make([]int, bs)
	l := &loop{kind: "classifier", epochs: opts.Epochs, batch: bs, n: n, seed: opts.Seed, sched: sched, opt: opt, params: m.params,
		ckpt: opts.CheckpointDir, resume: opts.Resume, accuracy: true, epochDone: opts.EpochDone,
		save: func(dir string) error { return Save(dir, m) },
		reseed: func(e int) {
			for i, d := range m.drops {
				d.Rng = rand.New(rand.NewPCG(m.cfg.Seed+uint64(i), uint64(e)+1))
			}
		},
		step: func(ctx context.Context, e, b int, idx []int, rng *rand.Rand) (float64, int, error) {
			x := &tensor.Tensor{Shape: []int{len(idx), c.Channels, c.Height, c.Width}, Data: xb.Data[:len(idx)*per]}
			augmentInto(x.Data, train.Images, idx, opts.CropPad, opts.Flip, rng)
			if opts.Cutout > 0 {
				cutoutInto(x.Data, x.Shape, opts.Cutout, rng)
			}
			for i, j := range idx {
				lb[i] = train.Labels[j]
			}
			if opts.BatchHook != nil {
				tb := &TrainBatch{Epoch: e, Index: b, Indices: idx, Images: x, Labels: lb[:len(idx)], Model: TrainingModel{m}}
				if err := opts.BatchHook(ctx, tb); err != nil {
					return 0, 0, fmt.Errorf("nn.Train: epoch %d batch %d: %w", e+1, b+1, err)
				}
				if err := x.Validate(); err != nil {
					return 0, 0, fmt.Errorf("nn.Train: epoch %d batch %d: the batch hook left %w", e+1, b+1, err)
				}
			}
			return m.trainStep(x, lb[:len(idx)], opts.LabelSmoothing)
		},
	}
	if hasTest {
		l.eval = func(ctx context.Context) (float64, float64, error) { return m.evaluate(ctx, test) }
	}
	l.onEpochDone = func(st EpochStats) {
		m.Meta.Dataset, m.Meta.TrainImages, m.Meta.Epochs = opts.Dataset, n, st.Epoch
		m.Meta.TrainLoss, m.Meta.TrainAccuracy = st.TrainLoss, st.TrainAcc
		if hasTest {
			m.Meta.TestLoss, m.Meta.TestAccuracy = st.TestLoss, st.TestAcc
		}
		m.Meta.Seconds = st.Elapsed
	}
	return l.runAndSave(ctx, rep)
}

// evaluate returns the mean cross-entropy and the accuracy on set, in
// inference mode; the caller holds m.mu.
func (m *Classifier) evaluate(ctx context.Context, set Labeled) (float64, float64, error) {
	n := set.Images.Shape[0]
	var loss float64
	var correct int
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		hi := min(lo+ChunkSize, n)
		y := m.net.Forward(set.Images.Batch(lo, hi), false)
		l, c, err := SoftmaxCrossEntropy(y, set.Labels[lo:hi], 0, nil)
		if err != nil {
			return 0, 0, err
		}
		loss += l * float64(hi-lo)
		correct += c
	}
	return loss / float64(n), float64(correct) / float64(n), nil
}

// Evaluate returns the mean cross-entropy and the accuracy of m on set.
func (m *Classifier) Evaluate(ctx context.Context, set Labeled) (loss, acc float64, err error) {
	c := m.cfg
	if err := set.check("nn.Classifier.Evaluate", c.Channels, c.Height, c.Width, c.Classes); err != nil {
		return 0, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evaluate(ctx, set)
}

// DAETrainOptions configures DAE training (section 3.4): each batch holds
// the clean images and copies with Gaussian noise of std NoiseSigma added
