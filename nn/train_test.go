package nn_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// toySet makes n 8x8 RGB images of 4 classes: class k has a bright 4x4
// quadrant k over noise, so a small CNN separates them quickly.
func toySet(seed uint64, n int) nn.Labeled {
	rng := rand.New(rand.NewPCG(seed, 9))
	x := tensor.New(n, 3, 8, 8)
	y := make([]int, n)
	for i := 0; i < n; i++ {
		k := rng.IntN(4)
		y[i] = k
		oy, ox := 4*(k/2), 4*(k%2)
		for c := 0; c < 3; c++ {
			for r := 0; r < 8; r++ {
				for q := 0; q < 8; q++ {
					v := 0.3 * rng.Float32()
					if r >= oy && r < oy+4 && q >= ox && q < ox+4 {
						v += 0.6
					}
					x.Data[((i*3+c)*8+r)*8+q] = v
				}
			}
		}
	}
	return nn.Labeled{Images: x, Labels: y}
}

func toyModel(t *testing.T) *nn.Classifier {
	c := nn.DefaultClassifierConfig()
	c.Arch, c.Height, c.Width, c.Classes, c.Threads = nn.ArchResNet20, 8, 8, 4, 2
	m, err := nn.NewClassifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func toyOptions() nn.TrainOptions {
	o := nn.DefaultTrainOptions()
	o.Epochs, o.BatchSize, o.LR, o.CropPad, o.Flip = 3, 32, 0.05, 0, false // crops and flips would move the quadrant
	return o
}

type reporterFunc func(stage string, done, total int, msg string)

func (f reporterFunc) Report(stage string, done, total int, msg string) { f(stage, done, total, msg) }

func TestTrainLearnsToySet(t *testing.T) {
	m := toyModel(t)
	train, test := toySet(1, 256), toySet(2, 64)
	reports := 0
	res, err := nn.Train(context.Background(), m, train, test, toyOptions(), reporterFunc(func(stage string, done, total int, msg string) {
		reports++
		if !strings.Contains(msg, "img/s") || !strings.HasPrefix(stage, "classifier epoch") {
			t.Errorf("report %q %q", stage, msg)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	last := res.Last()
	t.Logf("%+v", res.Epochs)
	if last.TestAcc < 0.9 || res.Epochs[0].TrainLoss <= last.TrainLoss {
		t.Errorf("after 3 epochs: test accuracy %.3f (want >= 0.9), train loss %.3f -> %.3f", last.TestAcc, res.Epochs[0].TrainLoss, last.TrainLoss)
	}
	if reports != 3*8 {
		t.Errorf("%d reports, want 24", reports)
	}
	_, acc, err := m.Evaluate(context.Background(), test)
	if err != nil || math.Abs(acc-last.TestAcc) > 1e-9 {
		t.Errorf("Evaluate %g (%v), last epoch %g", acc, err, last.TestAcc)
	}
}

// TestTrainResumeIsExact: training interrupted after one epoch and resumed
// gives bit-identical weights to an uninterrupted run.
func TestTrainResumeIsExact(t *testing.T) {
	train, test := toySet(1, 96), toySet(2, 16)
	opts := toyOptions()
	opts.Epochs = 2
	opts.CropPad = 2 // exercise augmentation in the replay
	a := toyModel(t)
	if _, err := nn.Train(context.Background(), a, train, test, opts, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts.CheckpointDir = dir
	b := toyModel(t)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := nn.Train(ctx, b, train, test, opts, reporterFunc(func(stage string, done, total int, msg string) {
		if strings.Contains(stage, "epoch 2/") {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "train_state.json")); err != nil {
		t.Fatal(err)
	}
	opts.Resume = true
	c := toyModel(t)
	res, err := nn.Train(context.Background(), c, train, test, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Epochs) != 2 {
		t.Errorf("history has %d epochs, want 2", len(res.Epochs))
	}
	pa, pc := a.Params(), c.Params()
	for i := range pa {
		for j := range pa[i].W {
			if pa[i].W[j] != pc[i].W[j] {
				t.Fatalf("%s[%d]: %g resumed, %g uninterrupted", pa[i].Name, j, pc[i].W[j], pa[i].W[j])
			}
		}
	}
	// The final model is saved in the checkpoint directory.
	l, err := nn.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Meta.Epochs != 2 || l.Meta.TestAccuracy != res.Last().TestAcc || l.Meta.Seconds != res.Last().Elapsed || !(res.Last().Elapsed > res.Last().Seconds) {
		t.Errorf("saved metadata %+v", l.Meta)
	}
	// Resuming a checkpoint that holds every epoch (a run killed after its
	// last epoch) trains nothing and still gives the model its metadata.
	d := toyModel(t)
	if _, err := nn.Train(context.Background(), d, train, test, opts, nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Meta, l.Meta) {
		t.Errorf("metadata after resuming a finished checkpoint %+v, want %+v", d.Meta, l.Meta)
	}
}

func TestTrainOptionErrors(t *testing.T) {
	m := toyModel(t)
	set := toySet(1, 8)
	bad := []struct {
		name  string
		mod   func(*nn.TrainOptions)
		field string // of the *nn.OptionError
	}{
		{"epochs", func(o *nn.TrainOptions) { o.Epochs = 0 }, "TrainOptions.Epochs"},
		{"lr", func(o *nn.TrainOptions) { o.LR = 0 }, "TrainOptions.LR"},
		{"schedule", func(o *nn.TrainOptions) { o.Schedule = "exp" }, "Schedule"},
		{"resume", func(o *nn.TrainOptions) { o.Resume = true }, "TrainOptions.Resume"},
		{"momentum", func(o *nn.TrainOptions) { o.SGD.Momentum = 1.5 }, "SGDOptions.Momentum"},
		{"cutout", func(o *nn.TrainOptions) { o.Cutout = -1 }, "TrainOptions.Cutout"},
	}
	for _, b := range bad {
		o := toyOptions()
		b.mod(&o)
		_, err := nn.Train(context.Background(), m, set, nn.Labeled{}, o, nil)
		if err == nil {
			t.Errorf("%s: accepted", b.name)
			continue
		}
		var oe *nn.OptionError
		if !errors.As(err, &oe) || oe.Field != b.field {
			t.Errorf("%s: error %v, want an *nn.OptionError for %s", b.name, err, b.field)
		}
	}
	wrong := nn.Labeled{Images: set.Images, Labels: append([]int(nil), set.Labels...)}
	wrong.Labels[3] = 7
	if _, err := nn.Train(context.Background(), m, wrong, nn.Labeled{}, toyOptions(), nil); err == nil {
		t.Error("label 7 of 4 classes accepted")
	}
}

func TestDAETrainEncode(t *testing.T) {
	c := nn.DefaultDAEConfig()
	c.Height, c.Width, c.Threads, c.Filters = 16, 16, 2, 8
	d, err := nn.NewDAE(c)
	if err != nil {
		t.Fatal(err)
	}
	if d.LatentDim() != 8*2*2 {
		t.Errorf("latent dim %d, want 32", d.LatentDim())
	}
	x := randImages(7, 64, 3, 16, 16)
	// Smooth images: a reconstruction target a small DAE can learn.
	for i := range x.Data {
		x.Data[i] = 0.5 + 0.3*float32(math.Sin(float64(i%16)/3+float64(i/256)))
	}
	o := nn.DefaultDAETrainOptions()
	o.Epochs, o.BatchSize, o.LR = 8, 16, 3e-3
	dir := t.TempDir()
	o.CheckpointDir = dir
	res, err := nn.TrainDAE(context.Background(), d, x, x, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, last := res.Epochs[0], res.Last()
	if !(last.TrainLoss < first.TrainLoss) || !(last.TestLoss < first.TestLoss) || !math.IsNaN(last.TestAcc) {
		t.Errorf("DAE did not improve: %+v -> %+v", first, last)
	}
	ctx := context.Background()
	z, err := d.Encode(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(z, tensor.New(64, 32)) {
		t.Errorf("codes %v, want [64 32]", z.Shape)
	}
	r, err := d.Reconstruct(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range r.Data {
		if !(v > 0 && v < 1) {
			t.Fatalf("reconstruction value %g outside (0, 1)", v)
		}
	}
	d2, err := nn.LoadDAE(dir)
	if err != nil {
		t.Fatal(err)
	}
	z2, _ := d2.Encode(ctx, x)
	for i := range z.Data {
		if z.Data[i] != z2.Data[i] {
			t.Fatalf("code %d differs after reload", i)
		}
	}
	if _, err := nn.Load(dir); !errors.Is(err, nn.ErrWrongKind) {
		t.Errorf("Load of a DAE: %v", err)
	}
	c64 := nn.DefaultDAEConfig()
	c64.Height, c64.Width = 64, 64
	d64, _ := nn.NewDAE(c64)
	if d64.LatentDim() != 8*8*32 {
		t.Errorf("64 px latent %d, want 2048", d64.LatentDim())
	}
}

// TestTrainDivergenceStops: a learning rate that blows the weights or the
// loss up stops training with an error naming the epoch, and nothing
// non-finite is checkpointed.
func TestTrainDivergenceStops(t *testing.T) {
	for _, lr := range []float64{1e10, 1e30} {
		dir := t.TempDir()
		opts := toyOptions()
		opts.LR, opts.CheckpointDir = lr, dir
		m := toyModel(t)
		_, err := nn.Train(context.Background(), m, toySet(1, 96), toySet(2, 16), opts, nil)
		if err == nil || !strings.Contains(err.Error(), "diverged") || !strings.Contains(err.Error(), "epoch 1") {
			t.Errorf("lr %g: err = %v, want divergence in epoch 1", lr, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "train_state.json")); err == nil {
			t.Errorf("lr %g: a diverged epoch was checkpointed", lr)
		}
	}
}

// TestTrainBatchHook: the hook sees every batch once, in order, with its
// images and labels; its edits reach the step; a non-finite pixel it
// leaves and an error it returns stop training.
func TestTrainBatchHook(t *testing.T) {
	train := toySet(1, 40)
	opts := toyOptions()
	opts.Epochs, opts.BatchSize = 2, 16 // batches of 16, 16, 8
	var seen [][2]int
	opts.BatchHook = func(ctx context.Context, b *nn.TrainBatch) error {
		seen = append(seen, [2]int{b.Epoch, b.Index})
		if len(b.Indices) != b.Images.Shape[0] || len(b.Labels) != len(b.Indices) {
			t.Errorf("batch %d/%d: %d indices, %d images, %d labels", b.Epoch, b.Index, len(b.Indices), b.Images.Shape[0], len(b.Labels))
		}
		for i, j := range b.Indices {
			if b.Labels[i] != train.Labels[j] {
				t.Errorf("label %d of batch %d/%d is %d, image %d has %d", i, b.Epoch, b.Index, b.Labels[i], j, train.Labels[j])
			}
		}
		// The model answers as an attack.Model would.
		z, g, err := b.Model.InputGrad(ctx, b.Images, func(z, g *tensor.Tensor) { g.Data[0] = 1 })
		if err != nil || z.Shape[0] != len(b.Indices) || !tensor.SameShape(g, b.Images) {
			t.Errorf("InputGrad: %v", err)
		}
		clear(b.Images.Data) // every image black: nothing to learn
		return nil
	}
	m := toyModel(t)
	res, err := nn.Train(context.Background(), m, train, nn.Labeled{}, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("hook saw batches %v, want %v", seen, want)
	}
	if acc := res.Last().TrainAcc; acc > 0.6 {
		t.Errorf("train accuracy %.2f on black images: the hook's edits did not reach the step", acc)
	}
	opts.BatchHook = func(_ context.Context, b *nn.TrainBatch) error {
		b.Images.Data[3] = float32(math.NaN())
		return nil
	}
	if _, err := nn.Train(context.Background(), toyModel(t), train, nn.Labeled{}, opts, nil); err == nil || !strings.Contains(err.Error(), "batch hook") {
		t.Errorf("NaN left by the hook: %v", err)
	}
	boom := errors.New("boom")
	opts.BatchHook = func(context.Context, *nn.TrainBatch) error { return boom }
	if _, err := nn.Train(context.Background(), toyModel(t), train, nn.Labeled{}, opts, nil); !errors.Is(err, boom) {
		t.Errorf("hook error: %v", err)
	}
}
