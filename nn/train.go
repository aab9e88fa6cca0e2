package nn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/stl-defense/stl/internal/safefile"
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

// ScheduleKind names a learning-rate schedule for TrainOptions.
type ScheduleKind string

// Schedules.
const (
	ScheduleOneCycle ScheduleKind = "onecycle" // DefaultOneCycle(LR)
	ScheduleCosine   ScheduleKind = "cosine"   // Cosine{Base: LR, Warmup: one epoch}
	ScheduleStep     ScheduleKind = "step"     // x0.1 at 50% and 75% of the epochs
	ScheduleConstant ScheduleKind = "constant"
)

func (k ScheduleKind) build(lr float64, stepsPerEpoch, epochs int) (Schedule, error) {
	switch k {
	case ScheduleOneCycle:
		return DefaultOneCycle(lr), nil
	case ScheduleCosine:
		return Cosine{Base: lr, Warmup: stepsPerEpoch}, nil
	case ScheduleStep:
		return stepAt{lr, []int{epochs / 2 * stepsPerEpoch, epochs * 3 / 4 * stepsPerEpoch}}, nil
	case ScheduleConstant:
		return Constant(lr), nil
	}
	return nil, fmt.Errorf("nn: unknown schedule %q", k)
}

type stepAt struct {
	base      float64
	milestone []int
}

func (s stepAt) LR(step, _ int) float64 {
	lr := s.base
	for _, m := range s.milestone {
		if step >= m {
			lr *= 0.1
		}
	}
	return lr
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
}

// DefaultTrainOptions returns the recipe of the PyTorch anchor: 30
// epochs, batch 128, one-cycle peaking at 0.05, SGD Nesterov 0.9, weight
// decay 5e-4, crop with padding 4 and flips.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Epochs: 30, BatchSize: 128, LR: 0.05, Schedule: ScheduleOneCycle, SGD: DefaultSGDOptions(), CropPad: 4, Flip: true, Seed: 1}
}

// Validate reports invalid options.
func (o TrainOptions) Validate() error {
	if o.Epochs < 1 || o.BatchSize < 2 || !(o.LR > 0) || o.CropPad < 0 || o.Cutout < 0 || o.LabelSmoothing < 0 || o.LabelSmoothing >= 1 {
		return fmt.Errorf("nn: invalid train options: epochs %d, batch %d, lr %g, crop pad %d, cutout %d, smoothing %g", o.Epochs, o.BatchSize, o.LR, o.CropPad, o.Cutout, o.LabelSmoothing)
	}
	if _, err := o.Schedule.build(o.LR, 1, o.Epochs); err != nil {
		return err
	}
	if o.Resume && o.CheckpointDir == "" {
		return errors.New("nn: Resume needs a CheckpointDir")
	}
	return o.SGD.Validate()
}

// EpochStats are the figures of one training epoch. Test figures are NaN
// when there is no test set; for the DAE, accuracies are NaN and the losses
// are BCE.
type EpochStats struct {
	Epoch     int     `json:"epoch"` // 1-based
	LR        float64 `json:"lr"`    // at the end of the epoch
	TrainLoss float64 `json:"train_loss"`
	TrainAcc  float64 `json:"train_acc"`
	TestLoss  float64 `json:"test_loss"`
	TestAcc   float64 `json:"test_acc"`
	Seconds   float64 `json:"seconds"`
	ImgPerSec float64 `json:"img_per_sec"`
	Elapsed   float64 `json:"elapsed"` // training seconds since epoch 1, across resumes
}

// MarshalJSON writes NaN figures as null.
func (s EpochStats) MarshalJSON() ([]byte, error) {
	f := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		Epoch     int      `json:"epoch"`
		LR        float64  `json:"lr"`
		TrainLoss *float64 `json:"train_loss"`
		TrainAcc  *float64 `json:"train_acc"`
		TestLoss  *float64 `json:"test_loss"`
		TestAcc   *float64 `json:"test_acc"`
		Seconds   float64  `json:"seconds"`
		ImgPerSec float64  `json:"img_per_sec"`
		Elapsed   float64  `json:"elapsed"`
	}{s.Epoch, s.LR, f(s.TrainLoss), f(s.TrainAcc), f(s.TestLoss), f(s.TestAcc), s.Seconds, s.ImgPerSec, s.Elapsed})
}

// UnmarshalJSON reads null figures as NaN.
func (s *EpochStats) UnmarshalJSON(b []byte) error {
	var a struct {
		Epoch     int      `json:"epoch"`
		LR        float64  `json:"lr"`
		TrainLoss *float64 `json:"train_loss"`
		TrainAcc  *float64 `json:"train_acc"`
		TestLoss  *float64 `json:"test_loss"`
		TestAcc   *float64 `json:"test_acc"`
		Seconds   float64  `json:"seconds"`
		ImgPerSec float64  `json:"img_per_sec"`
		Elapsed   float64  `json:"elapsed"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	g := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*s = EpochStats{a.Epoch, a.LR, g(a.TrainLoss), g(a.TrainAcc), g(a.TestLoss), g(a.TestAcc), a.Seconds, a.ImgPerSec, a.Elapsed}
	return nil
}

// TrainResult is the history of a training run, including epochs done
// before a resume.
type TrainResult struct {
	Epochs []EpochStats `json:"epochs"`
}

// Last returns the last epoch's figures (zero when none).
func (r *TrainResult) Last() EpochStats {
	if len(r.Epochs) == 0 {
		return EpochStats{}
	}
	return r.Epochs[len(r.Epochs)-1]
}

// trainState is the checkpoint index, train_state.json.
type trainState struct {
	Kind      string       `json:"kind"`
	Epoch     int          `json:"epoch"` // epochs completed
	Dir       string       `json:"dir"`   // checkpoint subdirectory
	AdamT     int          `json:"adam_t,omitempty"`
	History   []EpochStats `json:"history"`
	TotalSecs float64      `json:"total_seconds"`
}

const stateFile = "train_state.json"

// loop is the epoch/batch loop shared by classifier and DAE training.
type loop struct {
	kind        string
	epochs      int
	batch       int
	n           int
	seed        uint64
	sched       Schedule
	opt         Optimizer
	adam        *Adam
	params      []*Param
	save        func(dir string) error
	step        func(idx []int, rng *rand.Rand) (loss float64, correct int, err error)
	eval        func(ctx context.Context) (loss, acc float64, err error)
	reseed      func(epoch int)
	ckpt        string
	resume      bool
	accuracy    bool
	onEpochDone func(st EpochStats)
	epochDone   func(st EpochStats)
}

func (l *loop) run(ctx context.Context, rep progress.Reporter) (*TrainResult, error) {
	rep = progress.Or(rep)
	res := &TrainResult{}
	start := 0
	var total float64
	if l.resume {
		st, ok, err := l.load()
		if err != nil {
			return nil, err
		}
		if ok {
			start, res.Epochs, total = st.Epoch, st.History, st.TotalSecs
		}
	}
	steps := (l.n + l.batch - 1) / l.batch
	if l.n%l.batch == 1 {
		steps-- // a last batch of one image would break batch norm
	}
	totalSteps := steps * l.epochs
	for e := start; e < l.epochs; e++ {
		t0 := time.Now()
		rng := rand.New(rand.NewPCG(l.seed, uint64(e)))
		if l.reseed != nil {
			l.reseed(e)
		}
		perm := rng.Perm(l.n)
		var sumLoss float64
		var correct, seen int
		stage := fmt.Sprintf("%s epoch %d/%d", l.kind, e+1, l.epochs)
		lr := 0.0
		for b := 0; b < steps; b++ {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			idx := perm[b*l.batch : min((b+1)*l.batch, l.n)]
			loss, c, err := l.step(idx, rng)
			if err != nil {
				return res, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return res, fmt.Errorf("nn: training diverged at epoch %d batch %d (loss %g); lower the learning rate", e+1, b+1, loss)
			}
			lr = l.sched.LR(e*steps+b, totalSteps)
			l.opt.Step(l.params, lr)
			sumLoss += loss * float64(len(idx))
			correct += c
			seen += len(idx)
			el := time.Since(t0).Seconds()
			msg := fmt.Sprintf("loss %.4f", sumLoss/float64(seen))
			if l.accuracy {
				msg += fmt.Sprintf(" acc %.2f%%", 100*float64(correct)/float64(seen))
			}
			msg += fmt.Sprintf(" %.0f img/s", float64(seen)/el)
			rep.Report(stage, b+1, steps, msg)
		}
		secs := time.Since(t0).Seconds()
		st := EpochStats{Epoch: e + 1, LR: lr, TrainLoss: sumLoss / float64(seen), TrainAcc: math.NaN(), TestLoss: math.NaN(), TestAcc: math.NaN(),
			Seconds: secs, ImgPerSec: float64(seen) / secs}
		if l.accuracy {
			st.TrainAcc = float64(correct) / float64(seen)
		}
		if l.eval != nil {
			tl, ta, err := l.eval(ctx)
			if err != nil {
				return res, err
			}
			st.TestLoss, st.TestAcc = tl, ta
		}
		total += time.Since(t0).Seconds()
		st.Elapsed = total
		res.Epochs = append(res.Epochs, st)
		if l.onEpochDone != nil {
			l.onEpochDone(st)
		}
		if l.ckpt != "" {
			if err := l.checkpoint(e+1, res.Epochs, total); err != nil {
				return res, err
			}
		}
		if l.epochDone != nil {
			l.epochDone(st)
		}
	}
	return res, nil
}

func (l *loop) checkpoint(epoch int, hist []EpochStats, total float64) error {
	sub := fmt.Sprintf("epoch-%03d", epoch)
	dir := filepath.Join(l.ckpt, sub)
	if err := l.save(dir); err != nil {
		return err
	}
	if err := safefile.Write(filepath.Join(dir, "optimizer.safetensors"), func(w io.Writer) error {
		return writeState(w, l.opt.State(l.params))
	}); err != nil {
		return err
	}
	st := trainState{Kind: l.kind, Epoch: epoch, Dir: sub, History: hist, TotalSecs: total}
	if l.adam != nil {
		st.AdamT = l.adam.T
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	old, _, _ := readState(l.ckpt)
	if err := safefile.WriteBytes(filepath.Join(l.ckpt, stateFile), append(js, '\n')); err != nil {
		return err
	}
	if old.Dir != "" && old.Dir != sub {
		os.RemoveAll(filepath.Join(l.ckpt, old.Dir))
	}
	return nil
}

func writeState(w io.Writer, st map[string][]float32) error {
	ps := make([]*Param, 0, len(st))
	for n, v := range st {
		ps = append(ps, &Param{Name: n, Shape: []int{len(v)}, W: v})
	}
	return WriteWeights(w, ps, nil)
}

func readState(dir string) (trainState, bool, error) {
	var st trainState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("nn: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, true, nil
}

// load restores weights and optimizer state from the last checkpoint.
func (l *loop) load() (trainState, bool, error) {
	st, ok, err := readState(l.ckpt)
	if err != nil || !ok {
		return st, ok, err
	}
	if st.Kind != l.kind {
		return st, false, fmt.Errorf("%w: checkpoint in %s is for %q", ErrWrongKind, l.ckpt, st.Kind)
	}
	if st.Epoch > l.epochs {
		return st, false, fmt.Errorf("nn: checkpoint in %s has %d epochs done, more than the %d asked", l.ckpt, st.Epoch, l.epochs)
	}
	dir := filepath.Join(l.ckpt, st.Dir)
	if _, err := readHeader(dir); err != nil {
		return st, false, err
	}
	if err := loadWeights(dir, l.params); err != nil {
		return st, false, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "optimizer.safetensors"))
	if err != nil {
		return st, false, err
	}
	state := l.opt.State(l.params)
	ps := make([]*Param, 0, len(state))
	for n, v := range state {
		ps = append(ps, &Param{Name: n, Shape: []int{len(v)}, W: v})
	}
	if err := ReadWeights(b, filepath.Join(dir, "optimizer.safetensors"), ps); err != nil {
		return st, false, err
	}
	if l.adam != nil {
		l.adam.T = st.AdamT
	}
	return st, true, nil
}

// augmentInto copies images idx of src into dst (len(idx), C, H, W),
// applying a random crop of the zero-padded image (pad pixels each side)
// and a random horizontal flip when flip is set.
func augmentInto(dst []float32, src *tensor.Tensor, idx []int, pad int, flip bool, rng *rand.Rand) {
	c, h, w := src.Shape[1], src.Shape[2], src.Shape[3]
	per := c * h * w
	for i, j := range idx {
		img := src.Data[j*per : (j+1)*per]
		out := dst[i*per : (i+1)*per]
		dy, dx := 0, 0
		if pad > 0 {
			dy, dx = rng.IntN(2*pad+1)-pad, rng.IntN(2*pad+1)-pad
		}
		fl := flip && rng.IntN(2) == 1
		if dy == 0 && dx == 0 && !fl {
			copy(out, img)
			continue
		}
		for ch := 0; ch < c; ch++ {
			for y := 0; y < h; y++ {
				sy := y + dy
				row := out[(ch*h+y)*w : (ch*h+y+1)*w]
				if sy < 0 || sy >= h {
					clear(row)
					continue
				}
				srow := img[(ch*h+sy)*w : (ch*h+sy+1)*w]
				for x := 0; x < w; x++ {
					xx := x
					if fl {
						xx = w - 1 - x
					}
					sx := xx + dx
					if sx < 0 || sx >= w {
						row[x] = 0
					} else {
						row[x] = srow[sx]
					}
				}
			}
		}
	}
}

// cutoutInto sets, in each image of the batch x (shape N, C, H, W), a
// size x size square centred at a uniformly random pixel to 0.5 in every
// channel; the square is clipped at the image borders.
func cutoutInto(x []float32, shape []int, size int, rng *rand.Rand) {
	n, c, h, w := shape[0], shape[1], shape[2], shape[3]
	per := c * h * w
	for i := 0; i < n; i++ {
		cy, cx := rng.IntN(h), rng.IntN(w)
		y0, y1 := max(cy-size/2, 0), min(cy-size/2+size, h)
		x0, x1 := max(cx-size/2, 0), min(cx-size/2+size, w)
		img := x[i*per : (i+1)*per]
		for ch := 0; ch < c; ch++ {
			for y := y0; y < y1; y++ {
				row := img[(ch*h+y)*w : (ch*h+y+1)*w]
				for xx := x0; xx < x1; xx++ {
					row[xx] = 0.5
				}
			}
		}
	}
}

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
	if n < 2 {
		return nil, errors.New("nn.Train: need at least 2 training images")
	}
	opt, err := NewSGD(opts.SGD)
	if err != nil {
		return nil, err
	}
	bs := min(opts.BatchSize, n)
	steps := (n + bs - 1) / bs
	sched, err := opts.Schedule.build(opts.LR, steps, opts.Epochs)
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
		step: func(idx []int, rng *rand.Rand) (float64, int, error) {
			x := &tensor.Tensor{Shape: []int{len(idx), c.Channels, c.Height, c.Width}, Data: xb.Data[:len(idx)*per]}
			augmentInto(x.Data, train.Images, idx, opts.CropPad, opts.Flip, rng)
			if opts.Cutout > 0 {
				cutoutInto(x.Data, x.Shape, opts.Cutout, rng)
			}
			for i, j := range idx {
				lb[i] = train.Labels[j]
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
	res, err := l.run(ctx, rep)
	if err != nil {
		return res, err
	}
	if opts.CheckpointDir != "" {
		if err := Save(opts.CheckpointDir, m); err != nil {
			return res, err
		}
	}
	return res, nil
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
		y := m.net.Forward(chunk(set.Images, lo, hi), false)
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
	if o.Epochs < 1 || o.BatchSize < 1 || !(o.LR > 0) || o.NoiseSigma < 0 {
		return fmt.Errorf("nn: invalid DAE train options: epochs %d, batch %d, lr %g, sigma %g", o.Epochs, o.BatchSize, o.LR, o.NoiseSigma)
	}
	if _, err := o.Schedule.build(o.LR, 1, o.Epochs); err != nil {
		return err
	}
	if o.Resume && o.CheckpointDir == "" {
		return errors.New("nn: Resume needs a CheckpointDir")
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
	if n < 2 {
		return nil, errors.New("nn.TrainDAE: need at least 2 training images")
	}
	opt, err := NewAdam(opts.Adam)
	if err != nil {
		return nil, err
	}
	bs := min(opts.BatchSize, n)
	steps := (n + bs - 1) / bs
	sched, err := opts.Schedule.build(opts.LR, steps, opts.Epochs)
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
		step: func(idx []int, rng *rand.Rand) (float64, int, error) {
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
	res, err := l.run(ctx, rep)
	if err != nil {
		return res, err
	}
	if opts.CheckpointDir != "" {
		if err := Save(opts.CheckpointDir, d); err != nil {
			return res, err
		}
	}
	return res, nil
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
		in := chunk(x, lo, hi)
		y := d.dec.Forward(d.enc.Forward(in, false), false)
		l, err := BCEWithLogits(y, in, nil)
		if err != nil {
			return 0, err
		}
		loss += l * float64(hi-lo)
	}
	return loss / float64(n), nil
}
