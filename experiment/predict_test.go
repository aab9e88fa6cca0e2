package experiment

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// TestPredict classifies a fake set with the nearest-centroid model, with
// and without a transform and labels, and checks every row against the
// model's own logits.
func TestPredict(t *testing.T) {
	ctx := context.Background()
	train, test := fakeSet("train", 60, 1), fakeSet("test", 7, 2)
	m, err := (&fakeTrainer{}).Train(ctx, ClassifierSpec{}, train, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		labels  []int
		shrink  float32 // 0: no transform
		wantDef string
	}{
		{name: "labels", labels: test.Labels},
		{name: "no labels"},
		{name: "through a transform", labels: test.Labels, shrink: 0.5, wantDef: "half"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr shrink
			x := test.Images
			if tc.shrink > 0 {
				tr = shrink{"half", tc.shrink}
				if x, err = tr.Apply(ctx, x); err != nil {
					t.Fatal(err)
				}
			}
			want, err := m.Logits(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			var rows []Prediction
			each := func(p Prediction) error { rows = append(rows, p); return nil }
			var sum PredictSummary
			if tc.shrink > 0 {
				sum, err = Predict(ctx, m, tr, test.Images, tc.labels, 3, each, progress.Nop)
			} else {
				sum, err = Predict(ctx, m, nil, test.Images, tc.labels, 3, each, progress.Nop)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 7 || sum.Images != 7 || sum.Defense != tc.wantDef {
				t.Fatalf("%d rows, summary %+v", len(rows), sum)
			}
			right := 0
			for i, p := range rows {
				k := fakeClasses
				if p.Index != i || len(p.Logits) != k {
					t.Fatalf("row %d: %+v", i, p)
				}
				for j, v := range p.Logits {
					if v != want.Data[i*k+j] {
						t.Fatalf("row %d logit %d = %g, want %g", i, j, v, want.Data[i*k+j])
					}
				}
				if p.Predicted != tensor.Argmax(want.Data[i*k:(i+1)*k]) {
					t.Errorf("row %d predicted %d", i, p.Predicted)
				}
				if (p.Label == nil) != (tc.labels == nil) || (p.Correct == nil) != (tc.labels == nil) {
					t.Fatalf("row %d: label %v correct %v with labels %v", i, p.Label, p.Correct, tc.labels)
				}
				if p.Label != nil {
					if *p.Label != tc.labels[i] || *p.Correct != (p.Predicted == tc.labels[i]) {
						t.Errorf("row %d: label %d correct %v predicted %d", i, *p.Label, *p.Correct, p.Predicted)
					}
					if *p.Correct {
						right++
					}
				}
			}
			if tc.labels == nil {
				if sum.Accuracy != nil {
					t.Errorf("accuracy %v without labels", *sum.Accuracy)
				}
				return
			}
			if sum.Correct != right || sum.Accuracy == nil || *sum.Accuracy != float64(right)/7 {
				t.Errorf("summary %+v, %d right", sum, right)
			}
			if tc.shrink == 0 && right < 6 {
				t.Errorf("the centroid model got %d of 7 of its own kind of images", right)
			}
		})
	}
}

func TestPredictBadInput(t *testing.T) {
	ctx := context.Background()
	m, err := (&fakeTrainer{}).Train(ctx, ClassifierSpec{}, fakeSet("train", 30, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	test := fakeSet("test", 4, 2)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	stop := errors.New("stop")
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		x      *tensor.Tensor
		labels []int
		batch  int
		each   func(Prediction) error
		want   string
		wantIs error
	}{
		{name: "no images", x: tensor.New(0, fakeC, fakeH, fakeW), batch: 2, wantIs: ErrNoImages},
		{name: "not 4-D", x: tensor.New(4, 8), batch: 2, want: "shape"},
		{name: "wrong size", x: tensor.New(2, fakeC, 2*fakeH, 2*fakeW), batch: 2, want: "takes 3x8x8 images, the input holds 3x16x16"},
		{name: "label count", x: test.Images, labels: []int{0}, batch: 2, want: "1 labels for 4 images"},
		{name: "label range", x: test.Images, labels: []int{0, 1, 3, 0}, batch: 2, want: "image 2 has the label 3, and the model has 3 classes"},
		{name: "batch", x: test.Images, batch: 0, want: "batch 0"},
		{name: "failing transform", x: test.Images, batch: 2, want: "synthetic transform failure"},
		{name: "callback error", x: test.Images, batch: 2, each: func(Prediction) error { return stop }, wantIs: stop},
		{name: "cancelled", ctx: cancelled, x: test.Images, batch: 2, wantIs: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctx
			if tc.ctx != nil {
				c = tc.ctx
			}
			each := tc.each
			if each == nil {
				each = func(Prediction) error { return nil }
			}
			var err error
			switch tc.name {
			case "failing transform":
				_, err = Predict(c, m, failing{}, tc.x, tc.labels, tc.batch, each, nil)
			case "cancelled":
				// The context reaches the transform, which returns its error.
				_, err = Predict(c, m, ctxTransform{}, tc.x, tc.labels, tc.batch, each, nil)
			default:
				_, err = Predict(c, m, nil, tc.x, tc.labels, tc.batch, each, nil)
			}
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.wantIs != nil && !errors.Is(err, tc.wantIs):
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// ctxTransform is the identity that honours cancellation.
type ctxTransform struct{}

func (ctxTransform) Name() string     { return "ctx" }
func (ctxTransform) Randomized() bool { return false }
func (ctxTransform) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return x.Clone(), nil
}

func TestLoadTransform(t *testing.T) {
	jpeg, err := LoadTransform("jpeg", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(jpeg.Name(), "JPEG") || jpeg.Resolution != 0 || jpeg.CheckShape(3, 17, 23) != nil {
		t.Errorf("jpeg: %q, resolution %d", jpeg.Name(), jpeg.Resolution)
	}
	for _, tc := range []struct {
		spec      string
		universal bool
		want      string
	}{
		{"no-such-defense", false, "neither a defense directory nor a baseline"},
		{"quilt", false, "learns from clean training images"},
		{"magnet", false, "learns from clean training images"},
		{"jpeg", true, "universal dictionary applies to a defense directory only"},
	} {
		_, err := LoadTransform(tc.spec, tc.universal)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s (universal %v): err = %v, want %q", tc.spec, tc.universal, err, tc.want)
		}
	}
	if _, err := LoadTransform("no-such-defense", false); !errors.Is(err, ErrUnknownDefense) {
		t.Errorf("unknown: %v does not wrap ErrUnknownDefense", err)
	}
	if _, err := LoadTransform(t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("empty directory: err = %v", err)
	}
}

// TestOpenPredictInputData checks that a data set's split opened by
// images (OpenPredictInput: .npy rows, PNG folders) and the embedded
// sample (read whole) give LoadPredictInput's images, labels, classes and
// name, with and without a limit.
func TestOpenPredictInputData(t *testing.T) {
	ctx := context.Background()
	train, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []dataset.Format{dataset.FormatNPY, dataset.FormatPNG} {
		if err := dataset.Save(filepath.Join(dir, string(f)), train.Head(9), test.Head(11), f, nil); err != nil {
			t.Fatal(err)
		}
	}
	shape := dataset.Shape{C: 3, H: 32, W: 32}
	for _, in := range []PredictInput{
		{Data: filepath.Join(dir, "npy")},
		{Data: filepath.Join(dir, "npy"), Split: "train", Limit: 4},
		{Data: filepath.Join(dir, "png"), Limit: 5},
		{Data: dataset.DefaultSpec, Limit: 6},
	} {
		want, _, err := LoadPredictInput(ctx, in, shape, nil)
		if err != nil {
			t.Fatal(err)
		}
		src, labeled, err := OpenPredictInput(ctx, in, shape, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !labeled || src.Len() != want.Len() {
			t.Fatalf("%+v: labeled %v, %d images; want %d", in, labeled, src.Len(), want.Len())
		}
		got, err := src.Read(ctx, 0, src.Len())
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != want.Name || !reflect.DeepEqual(got.Labels, want.Labels) || !reflect.DeepEqual(got.Classes, want.Classes) ||
			!slices.Equal(got.Images.Data, want.Images.Data) {
			t.Errorf("%+v: %s %v %v, want %s %v %v (or other pixels)", in, got.Name, got.Labels, got.Classes, want.Name, want.Labels, want.Classes)
		}
	}
}

// batchSizes is a model of 224x224 images whose class is the sign of the
// image's first pixel; it records the batch sizes it is called with.
type batchSizes struct{ sizes []int }

func (*batchSizes) InputShape() (int, int, int) { return 3, 224, 224 }
func (*batchSizes) NumClasses() int             { return 2 }
func (m *batchSizes) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	m.sizes = append(m.sizes, n)
	per := len(x.Data) / n
	out := tensor.New(n, 2)
	for i := range n {
		out.Data[2*i+1] = x.Data[i*per]
	}
	return out, nil
}
func (m *batchSizes) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, err := m.Logits(ctx, x)
	return z, tensor.New(x.Shape...), err
}

// TestPredictBatchFor checks the inference batch against the image area:
// unchanged up to 64 px, fewer images above, never 0.
func TestPredictBatchFor(t *testing.T) {
	for _, tc := range []struct {
		shape []int
		want  int
	}{
		{[]int{500, 3, 32, 32}, 100},
		{[]int{500, 3, 64, 64}, 100},
		{[]int{500, 3, 128, 128}, 25},
		{[]int{500, 3, 224, 224}, 8},
		{[]int{5, 3, 4096, 4096}, 1},
		{[]int{5, 3, 0, 0}, 100},
		{[]int{5}, 100},
	} {
		if got := predictBatchFor(tc.shape); got != tc.want {
			t.Errorf("predictBatchFor(%v) = %d, want %d", tc.shape, got, tc.want)
		}
	}
	// predict at 224 px: batches of at most 8 that cover every image once,
	// in order.
	m := &batchSizes{}
	x := tensor.New(20, 3, 224, 224)
	per := 3 * 224 * 224
	for i := range 20 {
		x.Data[i*per] = float32(i%3 - 1)
	}
	pred, err := predict(context.Background(), m, x)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.sizes, []int{8, 8, 4}) {
		t.Errorf("batches %v, want [8 8 4]", m.sizes)
	}
	for i, p := range pred {
		if want := map[bool]int{true: 1, false: 0}[i%3 == 2]; p != want {
			t.Errorf("image %d predicted %d, want %d", i, p, want)
		}
	}
	if len(pred) != 20 {
		t.Errorf("%d predictions, want 20", len(pred))
	}
}
