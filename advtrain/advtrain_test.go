package advtrain_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// side is the toy images' side in pixels, the smallest resnet-20 takes,
// to keep the tests cheap (the pure-Go build's convolutions are slow).
const side = 8

// featureSet draws n side x side RGB images of two classes with a robust and a
// non-robust feature, after Tsipras et al. (ICLR 2019, section 2.1): the
// top-left quarter is brighter by 0.25 for class 1 and darker for class 0
// with probability 0.9 (the reverse otherwise), and every pixel carries a
// checkerboard of amplitude 0.02 whose phase is the class, always. Pixels
// are 0.5 plus uniform noise in [-0.1, 0.1]. A standardly trained network
// reads the checkerboard (it predicts every label), which a perturbation
// of 8/255 > 0.02 reverses; a robust one must read the block.
func featureSet(seed uint64, n int) nn.Labeled {
	rng := rand.New(rand.NewPCG(seed, 7))
	x := tensor.New(n, 3, side, side)
	y := make([]int, n)
	for i := range n {
		y[i] = rng.IntN(2)
		s := float32(2*y[i] - 1)
		r := s
		if rng.Float64() < 0.1 {
			r = -s
		}
		for c := range 3 {
			for h := range side {
				for w := range side {
					v := 0.5 + 0.2*(rng.Float32()-0.5)
					if h < side/2 && w < side/2 {
						v += 0.25 * r
					}
					if (h+w)%2 == 0 {
						v += 0.02 * s
					} else {
						v -= 0.02 * s
					}
					x.Data[((i*3+c)*side+h)*side+w] = v
				}
			}
		}
	}
	return nn.Labeled{Images: x, Labels: y}
}

func newModel(t testing.TB) *nn.Classifier {
	t.Helper()
	c := nn.DefaultClassifierConfig()
	c.Arch, c.Height, c.Width, c.Classes, c.Threads = nn.ArchResNet20, side, side, 2, 2
	c.Mean, c.Std = []float32{0.5, 0.5, 0.5}, []float32{0.15, 0.15, 0.15}
	m, err := nn.NewClassifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func trainOptions() nn.TrainOptions {
	o := nn.DefaultTrainOptions()
	o.Epochs, o.BatchSize, o.LR, o.CropPad, o.Flip = 4, 32, 0.05, 0, false
	return o
}

// pgdSuccess returns the clean accuracy of m on set and the success rate
// of PGD (L-infinity 8/255, 10 steps of 2/255, random start) on it.
func pgdSuccess(t *testing.T, m attack.Model, set nn.Labeled) (clean, success float64) {
	t.Helper()
	o := attack.DefaultPGDOptions()
	o.Budget.Eps, o.Steps, o.StepFrac = advtrain.Eps8, 10, 0.25
	a, err := attack.NewPGD(o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Run(context.Background(), m, set.Images, set.Labels)
	if err != nil {
		t.Fatal(err)
	}
	return res.CleanAccuracy(set.Labels), res.SuccessRate()
}

// TestAdversarialTrainingLowersPGDSuccess trains the same network on the
// same data for the same epochs with and without adversarial training and
// attacks both with PGD at 8/255: the standard one, reading the
// non-robust checkerboard, falls to most attacks; the adversarially
// trained ones must resist at least 40 points better.
func TestAdversarialTrainingLowersPGDSuccess(t *testing.T) {
	train, test := featureSet(1, 256), featureSet(2, 100)
	std := newModel(t)
	if _, err := nn.Train(context.Background(), std, train, nn.Labeled{}, trainOptions(), nil); err != nil {
		t.Fatal(err)
	}
	cleanStd, succStd := pgdSuccess(t, std, test)
	t.Logf("standard: clean %.3f, PGD success %.3f", cleanStd, succStd)
	if cleanStd < 0.95 {
		t.Fatalf("standard training reached clean accuracy %.3f only; the toy task is broken", cleanStd)
	}
	for _, method := range advtrain.Methods {
		t.Run(string(method), func(t *testing.T) {
			if pureGo && method == advtrain.PGD {
				t.Skip("PGD training costs 8 passes per image, minutes with the pure-Go convolutions; FGSM-RS checks the claim")
			}
			at := newModel(t)
			o := trainOptions()
			ao := advtrain.DefaultOptions(method)
			hook, err := advtrain.Hook(ao, nil)
			if err != nil {
				t.Fatal(err)
			}
			var worst float64
			o.BatchHook = func(ctx context.Context, b *nn.TrainBatch) error {
				x0 := b.Images.Clone()
				if err := hook(ctx, b); err != nil {
					return err
				}
				for i, v := range b.Images.Data {
					if v < 0 || v > 1 {
						t.Fatalf("training pixel %g outside [0, 1]", v)
					}
					worst = max(worst, math.Abs(float64(v-x0.Data[i])))
				}
				return nil
			}
			if _, err := nn.Train(context.Background(), at, train, nn.Labeled{}, o, nil); err != nil {
				t.Fatal(err)
			}
			if worst > ao.Eps*(1+1e-6) || worst < 0.9*ao.Eps {
				t.Errorf("largest training perturbation %g, want close to and at most eps %g", worst, ao.Eps)
			}
			clean, succ := pgdSuccess(t, at, test)
			t.Logf("%s: clean %.3f, PGD success %.3f (largest perturbation %.4f)", ao, clean, succ, worst)
			if succ > succStd-0.4 {
				t.Errorf("PGD success %.3f after adversarial training, want at least 0.4 below standard training's %.3f", succ, succStd)
			}
			if clean < 0.75 {
				t.Errorf("clean accuracy %.3f after adversarial training, want >= 0.75 (the block predicts 0.9)", clean)
			}
		})
	}
}

// TestResumeIsExact: adversarial training interrupted in its second epoch
// and resumed from the checkpoint gives the weights of an uninterrupted
// run, the adversarial examples being drawn per batch.
func TestResumeIsExact(t *testing.T) {
	train := featureSet(3, 96)
	o := trainOptions()
	o.Epochs, o.CropPad = 2, 2 // augmentation in the replay too
	hook, err := advtrain.Hook(advtrain.DefaultOptions(advtrain.FGSMRS), nil)
	if err != nil {
		t.Fatal(err)
	}
	o.BatchHook = hook
	a := newModel(t)
	if _, err := nn.Train(context.Background(), a, train, nn.Labeled{}, o, nil); err != nil {
		t.Fatal(err)
	}
	o.CheckpointDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	inner := o.BatchHook
	o.BatchHook = func(ctx context.Context, b *nn.TrainBatch) error {
		if b.Epoch == 1 && b.Index == 1 {
			cancel()
		}
		return inner(ctx, b)
	}
	if _, err := nn.Train(ctx, newModel(t), train, nn.Labeled{}, o, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	o.BatchHook, o.Resume = inner, true
	c := newModel(t)
	if _, err := nn.Train(context.Background(), c, train, nn.Labeled{}, o, nil); err != nil {
		t.Fatal(err)
	}
	pa, pc := a.Params(), c.Params()
	for i := range pa {
		for j := range pa[i].W {
			if pa[i].W[j] != pc[i].W[j] {
				t.Fatalf("%s[%d]: %g resumed, %g uninterrupted", pa[i].Name, j, pc[i].W[j], pa[i].W[j])
			}
		}
	}
}

// halve is the transform T(x) = x/2 + 1/4, invertible, counting its
// applications and the images they cover.
type halve struct{ calls, images int }

func (h *halve) Name() string     { return "halve" }
func (h *halve) Randomized() bool { return false }
func (h *halve) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	h.calls++
	h.images += x.Shape[0]
	y := x.Clone()
	for i, v := range y.Data {
		y.Data[i] = v/2 + 0.25
	}
	return y, nil
}

type coin struct{ halve }

func (*coin) Randomized() bool { return true }

// TestHookThroughTransform: with a transform the batch becomes T(x_adv) on
// the adversarial share, within the budget, and T(x) on the rest, for
// Steps applications of T on the share and one on the batch.
func TestHookThroughTransform(t *testing.T) {
	set := featureSet(4, 10)
	m := newModel(t)
	for _, tc := range []struct {
		method   advtrain.Method
		fraction float64
		adv      int // images perturbed
	}{
		{advtrain.PGD, 1, 10},
		{advtrain.FGSMRS, 0.5, 5},
		{advtrain.PGD, 0.04, 0}, // rounds to no image: T only
	} {
		o := advtrain.DefaultOptions(tc.method)
		o.Fraction = tc.fraction
		tr := &halve{}
		hook, err := advtrain.Hook(o, tr)
		if err != nil {
			t.Fatal(err)
		}
		// Train one batch through the hook, keeping what it hands on.
		var got, x0 *tensor.Tensor
		to := trainOptions()
		to.Epochs, to.BatchSize = 1, 10
		to.BatchHook = func(ctx context.Context, b *nn.TrainBatch) error {
			x0 = b.Images.Clone()
			err := hook(ctx, b)
			got = b.Images.Clone()
			return err
		}
		if _, err := nn.Train(context.Background(), m, set, nn.Labeled{}, to, nil); err != nil {
			t.Fatal(err)
		}
		wantCalls, wantImages := 1, 10
		if tc.adv > 0 {
			wantCalls, wantImages = o.Steps+1, o.Steps*tc.adv+10
		}
		if tr.calls != wantCalls || tr.images != wantImages {
			t.Errorf("%s fraction %g: T applied %d times to %d images, want %d and %d", tc.method, tc.fraction, tr.calls, tr.images, wantCalls, wantImages)
		}
		per := x0.Len() / 10
		moved := 0
		for i := range 10 {
			var d float64
			for j := i * per; j < (i+1)*per; j++ {
				d = max(d, math.Abs(float64((got.Data[j]-0.25)*2-x0.Data[j])))
			}
			if d > o.Eps+1e-6 || (i >= tc.adv && d > 1e-6) {
				t.Errorf("%s fraction %g: image %d moved by %g before T (eps %g, %d adversarial)", tc.method, tc.fraction, i, d, o.Eps, tc.adv)
			}
			if d > 1e-6 {
				moved++
			}
		}
		if moved != tc.adv {
			t.Errorf("%s fraction %g: %d images perturbed, want %d", tc.method, tc.fraction, moved, tc.adv)
		}
	}
	if _, err := advtrain.Hook(advtrain.DefaultOptions(advtrain.PGD), &coin{}); err == nil {
		t.Error("a randomized transform was accepted")
	}
}

// TestExamples: the examples stay in the budget and in [0, 1], reach its
// edge, depend on the seed only through the random start, and bad input
// is an error.
func TestExamples(t *testing.T) {
	set := featureSet(5, 6)
	// Pixels at the borders of [0, 1] exercise the clipping.
	set.Images.Data[0], set.Images.Data[1] = 0, 1
	m := newModel(t)
	ctx := context.Background()
	for _, method := range advtrain.Methods {
		o := advtrain.DefaultOptions(method)
		a, err := advtrain.Examples(ctx, m, set.Images, set.Labels, o, 9)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := advtrain.Examples(ctx, m, set.Images, set.Labels, o, 9)
		c, _ := advtrain.Examples(ctx, m, set.Images, set.Labels, o, 10)
		var linf float64
		same, differ := true, false
		for i, v := range a.Data {
			if v < 0 || v > 1 {
				t.Fatalf("%s: pixel %g outside [0, 1]", method, v)
			}
			linf = max(linf, math.Abs(float64(v-set.Images.Data[i])))
			same = same && v == b.Data[i]
			differ = differ || v != c.Data[i]
		}
		if linf > o.Eps*(1+1e-6) || linf < o.Eps*0.99 {
			t.Errorf("%s: L-infinity %g, want eps %g", method, linf, o.Eps)
		}
		if !same || !differ {
			t.Errorf("%s: same seed gives the same examples %v, another seed other ones %v", method, same, differ)
		}
	}
	o := advtrain.DefaultOptions(advtrain.PGD)
	if _, err := advtrain.Examples(ctx, m, set.Images, set.Labels[:3], o, 1); err == nil {
		t.Error("3 labels for 6 images accepted")
	}
	if _, err := advtrain.Examples(ctx, m, set.Images, []int{0, 1, 2, 0, 1, 0}, o, 1); err == nil {
		t.Error("label 2 of a 2-class model accepted")
	}
	if _, err := advtrain.Examples(ctx, m, tensor.New(2, 3, 2*side, 2*side), []int{0, 1}, o, 1); err == nil {
		t.Error("images twice the model's size accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := advtrain.Examples(cctx, m, set.Images, set.Labels, o, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(*advtrain.Options)
		field string // "" valid
	}{
		{"pgd default", func(*advtrain.Options) {}, ""},
		{"fgsm-rs default", func(o *advtrain.Options) { *o = advtrain.DefaultOptions(advtrain.FGSMRS) }, ""},
		{"method", func(o *advtrain.Options) { o.Method = "free" }, "Options.Method"},
		{"eps 0", func(o *advtrain.Options) { o.Eps = 0 }, "Options.Eps"},
		{"eps NaN", func(o *advtrain.Options) { o.Eps = math.NaN() }, "Options.Eps"},
		{"step", func(o *advtrain.Options) { o.Step = -1 }, "Options.Step"},
		{"steps", func(o *advtrain.Options) { o.Steps = 0 }, "Options.Steps"},
		{"fgsm-rs steps", func(o *advtrain.Options) { o.Method = advtrain.FGSMRS }, "Options.Steps"},
		{"fraction 0", func(o *advtrain.Options) { o.Fraction = 0 }, "Options.Fraction"},
		{"fraction 2", func(o *advtrain.Options) { o.Fraction = 2 }, "Options.Fraction"},
	} {
		o := advtrain.DefaultOptions(advtrain.PGD)
		tc.mod(&o)
		err := o.Validate()
		var oe *advtrain.OptionError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &oe) || oe.Field != tc.field):
			t.Errorf("%s: error %v, want an *OptionError for %s", tc.name, err, tc.field)
		}
	}
}

func TestString(t *testing.T) {
	o := advtrain.DefaultOptions(advtrain.PGD)
	o.Fraction = 0.5
	for _, tc := range []struct {
		o    advtrain.Options
		want string
	}{
		{advtrain.DefaultOptions(advtrain.PGD), "PGD eps 8/255, 7 steps of 2/255"},
		{advtrain.DefaultOptions(advtrain.FGSMRS), "FGSM-RS eps 8/255, 1 step of 10/255"},
		{o, "PGD eps 8/255, 7 steps of 2/255, 0.5 of each batch"},
		{advtrain.Options{Method: advtrain.PGD, Eps: 0.03, Step: 0.01, Steps: 2, Fraction: 1}, "PGD eps 0.03, 2 steps of 0.01"},
	} {
		if got := tc.o.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.o, got, tc.want)
		}
	}
}
