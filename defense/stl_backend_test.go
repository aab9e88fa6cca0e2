package defense

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

func TestNNDAEBackend(t *testing.T) {
	x, _ := colourImages(16, 32, testColours, 1)
	opt := DefaultTrainOptions()
	opt.DAEEpochs = 1
	opt.CheckpointDir = t.TempDir()
	enc, err := trainNNDAE(context.Background(), x, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	z, err := enc.Encode(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if z.Shape[0] != 16 || z.Shape[1] != 512 {
		t.Fatalf("codes shape %v, want [16 512]", z.Shape)
	}
	dir := filepath.Join(t.TempDir(), "dae")
	if err := enc.SaveDir(dir); err != nil {
		t.Fatal(err)
	}
	formatsMu.RLock()
	dec := formats[enc.EncoderFormat()]
	formatsMu.RUnlock()
	back, err := dec(dir)
	if err != nil {
		t.Fatal(err)
	}
	z2, err := back.Encode(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(z.Data, z2.Data) {
		t.Error("codes differ after saving and loading the DAE")
	}
}

// With one 1x1 delta filter per channel, CBPDN is soft thresholding of the
// highpass part, so the STL projection is lowpass + soft(highpass, lambda),
// clipped: a known optimum for the projector the backend builds.
func TestCSCProjectorDeltaDictionary(t *testing.T) {
	const lambda = 0.05
	dict := &csc.Dictionary{M: 3, C: 3, R: 1, S: 1, Filters: make([]float32, 9)} // filter m is a delta on channel m
	for c := 0; c < 3; c++ {
		dict.Filters[c*3+c] = 1
	}
	p, err := CSCProjector(dict, lambda)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := colourImages(2, 16, testColours, 3)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range x.Data {
		x.Data[i] = min(max(x.Data[i]+0.2*float32(rng.NormFloat64()), 0), 1)
	}
	got := tensor.New(x.Shape...)
	if err := p.Project(context.Background(), got, x); err != nil {
		t.Fatal(err)
	}
	tk, err := csc.NewTikhonov(5, 16)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := make([]float32, 256), make([]float32, 256)
	var worst float64
	for plane := 0; plane < 6; plane++ {
		if err := tk.Split(lo, hi, x.Data[plane*256:(plane+1)*256], 16, 16); err != nil {
			t.Fatal(err)
		}
		for j := range lo {
			h := float64(hi[j])
			soft := math.Copysign(math.Max(math.Abs(h)-lambda, 0), h)
			want := math.Min(math.Max(float64(lo[j])+soft, 0), 1)
			worst = math.Max(worst, math.Abs(want-float64(got.Data[plane*256+j])))
		}
	}
	t.Logf("worst %g", worst)
	if worst > 2e-3 {
		t.Errorf("projection differs from lowpass + soft threshold by %g, want < 2e-3", worst)
	}
}

// The backend learns zero-mean, unit-norm filters of the asked size.
func TestLearnCSCBackend(t *testing.T) {
	x, _ := colourImages(4, 16, testColours, 7)
	opt := DefaultTrainOptions()
	opt.Filters, opt.FilterSize, opt.DictIterations = 6, 4, 3
	opt.CheckpointDir = t.TempDir()
	d, err := learnCSC(context.Background(), x, opt, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.M != 6 || d.C != 3 || d.R != 4 || d.S != 4 {
		t.Fatalf("%d filters %dx%dx%d, want 6 of 4x4x3", d.M, d.R, d.S, d.C)
	}
	for m := 0; m < 6; m++ {
		var norm float64
		for c := 0; c < 3; c++ {
			var mean float64
			for r := 0; r < 16; r++ {
				v := float64(d.Filters[(m*3+c)*16+r])
				mean += v
				norm += v * v
			}
			if math.Abs(mean/16) > 1e-4 {
				t.Errorf("filter %d channel %d: mean %g, want 0", m, c, mean/16)
			}
		}
		if math.Abs(math.Sqrt(norm)-1) > 1e-3 {
			t.Errorf("filter %d: norm %g, want 1", m, math.Sqrt(norm))
		}
	}
	h, err := csc.Highpass(context.Background(), x, 5, 16)
	if err != nil {
		t.Fatal(err)
	}
	// A constant image has no highpass part.
	flat := tensor.New(1, 1, 8, 8)
	for i := range flat.Data {
		flat.Data[i] = 0.3
	}
	hf, err := csc.Highpass(context.Background(), flat, 5, 16)
	if err != nil {
		t.Fatal(err)
	}
	if norm := norm2(hf.Data, nil); norm > 1e-5 {
		t.Errorf("highpass of a constant image has norm %g", norm)
	}
	if norm2(h.Data, nil) == 0 {
		t.Error("highpass of noisy images is zero")
	}
}

// An empty batch is projected to an empty batch by both transforms.
func TestEmptyBatch(t *testing.T) {
	d := testDefense(t)
	uni, strat, err := d.Transforms(CSCProjector)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []Transform{uni, strat} {
		y, err := tr.Apply(context.Background(), tensor.New(0, 3, 32, 32))
		if err != nil {
			t.Errorf("%s: %v", tr.Name(), err)
			continue
		}
		if !slices.Equal(y.Shape, []int{0, 3, 32, 32}) {
			t.Errorf("%s: shape %v", tr.Name(), y.Shape)
		}
	}
}
