package baseline

import (
	"context"
	"errors"
	"github.com/stl-defense/stl/defense"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// loadBaselineStrip reads testdata/<name>, a PNG strip of 32x32 images
// side by side, as an (N, 3, 32, 32) batch in [0,1].
func loadBaselineStrip(tb testing.TB, name string) *tensor.Tensor {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		tb.Fatal(err)
	}
	b := img.Bounds()
	const s = 32
	n := b.Dx() / s
	x := tensor.New(n, 3, s, s)
	for i := 0; i < n; i++ {
		for y := 0; y < s; y++ {
			for xx := 0; xx < s; xx++ {
				r, g, bl, _ := img.At(b.Min.X+i*s+xx, b.Min.Y+y).RGBA()
				k := y*s + xx
				base := i * 3 * s * s
				x.Data[base+k] = float32(r>>8) / 255
				x.Data[base+s*s+k] = float32(g>>8) / 255
				x.Data[base+2*s*s+k] = float32(bl>>8) / 255
			}
		}
	}
	return x
}

var _ = image.Rect

// baselineRandBatch returns an (n, c, h, w) batch of uniform pixels in [0,1].
func baselineRandBatch(seed uint64, n, c, h, w int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	x := tensor.New(n, c, h, w)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	return x
}

func baselinePSNR(a, b []float32) float64 {
	var mse float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		mse += d * d
	}
	mse /= float64(len(a))
	return 10 * math.Log10(1/mse)
}

// testBaselines lists one cheap instance of every baseline for the checks
// that every defense.Transform must pass (shape, range, determinism, bad input).
func testBaselines(tb testing.TB) []defense.Transform {
	tb.Helper()
	db := testPatchDB(tb)
	cfg := DefaultConfig()
	cfg.QuiltDB = db
	cfg.Crop.Crops = 3
	cfg.PDEnsSize = 2
	dae, err := NewMagNetDAE(DefaultMagNetDAEOptions())
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Reformer = dae
	if cfg.D3Dict, err = LoadD3Dictionary(filepath.Join("testdata", "tiny.d3d")); err != nil {
		tb.Fatal(err)
	}
	var ts []defense.Transform
	for _, name := range Names() {
		t, err := New(name, cfg)
		if err != nil {
			tb.Fatalf("New(%q): %v", name, err)
		}
		ts = append(ts, t)
	}
	return ts
}

func TestBaselinesContract(t *testing.T) {
	x := loadBaselineStrip(t, "cifar4.png")
	x = &tensor.Tensor{Shape: []int{2, 3, 32, 32}, Data: x.Data[:2*3*32*32]}
	orig := x.Clone()
	ctx := context.Background()
	for _, tr := range testBaselines(t) {
		t.Run(tr.Name(), func(t *testing.T) {
			y, err := tr.Apply(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			if !tensor.SameShape(x, y) {
				t.Fatalf("shape %v, want %v", y.Shape, x.Shape)
			}
			for i, v := range y.Data {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("output %d = %v outside [0,1]", i, v)
				}
			}
			for i := range x.Data {
				if x.Data[i] != orig.Data[i] {
					t.Fatalf("input modified at %d", i)
				}
			}
			// Determinism: a fresh instance under the same seed repeats the
			// sequence; a randomized one changes between calls.
			fresh := testBaselines(t)
			var again defense.Transform
			for _, f := range fresh {
				if f.Name() == tr.Name() {
					again = f
				}
			}
			y2, err := again.Apply(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			for i := range y.Data {
				if y.Data[i] != y2.Data[i] {
					t.Fatalf("not deterministic under a seed: %d: %v vs %v", i, y.Data[i], y2.Data[i])
				}
			}
			y3, err := tr.Apply(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			differs := false
			for i := range y.Data {
				if y.Data[i] != y3.Data[i] {
					differs = true
					break
				}
			}
			if differs != tr.Randomized() {
				t.Errorf("second call differs=%v, Randomized()=%v", differs, tr.Randomized())
			}
		})
	}
}

func TestBaselinesBadInput(t *testing.T) {
	ctx := context.Background()
	good := baselineRandBatch(1, 1, 3, 8, 8)
	nan := good.Clone()
	nan.Data[5] = float32(math.NaN())
	big := good.Clone()
	big.Data[7] = 1.5
	neg := good.Clone()
	neg.Data[0] = -0.01
	cases := []struct {
		name string
		x    *tensor.Tensor
		want func(error) bool
	}{
		{"nil", nil, func(err error) bool { return errors.Is(err, defense.ErrNilInput) }},
		{"3-d", tensor.New(3, 8, 8), func(err error) bool { var se *tensor.ShapeError; return errors.As(err, &se) }},
		{"short data", &tensor.Tensor{Shape: []int{1, 3, 8, 8}, Data: make([]float32, 10)}, func(err error) bool { var se *tensor.ShapeError; return errors.As(err, &se) }},
		{"NaN", nan, func(err error) bool { var ne *tensor.NonFiniteError; return errors.As(err, &ne) }},
		{"above 1", big, func(err error) bool { var re *PixelRangeError; return errors.As(err, &re) && re.Index == 7 }},
		{"below 0", neg, func(err error) bool { var re *PixelRangeError; return errors.As(err, &re) && re.Index == 0 }},
	}
	for _, tr := range testBaselines(t) {
		for _, c := range cases {
			t.Run(tr.Name()+"/"+c.name, func(t *testing.T) {
				y, err := tr.Apply(ctx, c.x)
				if err == nil || !c.want(err) {
					t.Fatalf("Apply = (%v, %v), want a matching error", y != nil, err)
				}
			})
		}
	}
}

func TestBaselinesCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x := baselineRandBatch(2, 3, 3, 16, 16)
	for _, tr := range testBaselines(t) {
		if _, err := tr.Apply(ctx, x); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Apply on a cancelled context = %v, want context.Canceled", tr.Name(), err)
		}
	}
}

func TestChainAndEnsemble(t *testing.T) {
	ctx := context.Background()
	x := baselineRandBatch(3, 2, 3, 8, 8)
	sq, _ := NewSqueeze(SqueezeOptions{Bits: 3})
	med, _ := NewSqueeze(SqueezeOptions{Bits: 8, MedianSize: 2})
	ch, err := NewChain("", sq, med)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := ch.Apply(ctx, x)
	a, _ := sq.Apply(ctx, x)
	want, _ := med.Apply(ctx, a)
	for i := range want.Data {
		if got.Data[i] != want.Data[i] {
			t.Fatalf("chain differs from composition at %d", i)
		}
	}
	if ch.Randomized() {
		t.Error("chain of deterministic transforms says randomized")
	}
	// The ensemble of a deterministic transform is that transform.
	ens, err := NewEnsemble("", sq, 4)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := ens.Apply(ctx, x)
	for i := range a.Data {
		if math.Abs(float64(e.Data[i]-a.Data[i])) > 1e-6 {
			t.Fatalf("ensemble of a deterministic transform differs at %d", i)
		}
	}
	// The ensemble of a randomized transform is the mean of the members,
	// drawn in sequence from the member's source.
	tv := DefaultTVMOptions()
	tv.MaxIter = 3
	m1, _ := NewTVM(tv)
	m2, _ := NewTVM(tv)
	ens2, _ := NewEnsemble("", m1, 2)
	e2, _ := ens2.Apply(ctx, x)
	r1, _ := m2.Apply(ctx, x)
	r2, _ := m2.Apply(ctx, x)
	for i := range e2.Data {
		if d := math.Abs(float64(e2.Data[i]) - (float64(r1.Data[i])+float64(r2.Data[i]))/2); d > 1e-6 {
			t.Fatalf("ensemble mean off by %g at %d", d, i)
		}
	}
	if !ens2.Randomized() {
		t.Error("ensemble of a randomized transform says deterministic")
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"empty chain", func() error { _, err := NewChain("x"); return err }()},
		{"nil step", func() error { _, err := NewChain("x", sq, nil); return err }()},
		{"nil member", func() error { _, err := NewEnsemble("x", nil, 3); return err }()},
		{"size 0", func() error { _, err := NewEnsemble("x", sq, 0); return err }()},
	} {
		var pe *ParamError
		if !errors.As(c.err, &pe) {
			t.Errorf("%s: error %v, want *ParamError", c.name, c.err)
		}
	}
}

// TestBaselinesConcurrent applies every baseline from several goroutines
// at once (run with -race); deterministic ones must agree with a
// sequential call.
func TestBaselinesConcurrent(t *testing.T) {
	ctx := context.Background()
	x := baselineRandBatch(1, 4, 3, 16, 16)
	for _, tr := range testBaselines(t) {
		want, err := tr.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		outs := make([]*tensor.Tensor, 3)
		for g := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				y, err := tr.Apply(ctx, x)
				if err != nil {
					t.Error(err)
				}
				outs[g] = y
			}()
		}
		wg.Wait()
		if tr.Randomized() {
			continue
		}
		for _, y := range outs {
			if y == nil || !equalF32(y.Data, want.Data) {
				t.Fatalf("%s: concurrent result differs from the sequential one", tr.Name())
			}
		}
	}
}

// TestBaselinesSizes runs every baseline on the sizes of the paper's
// ImageNet-10 experiments and on odd sizes: the shape is preserved and the
// pixels stay in [0,1].
func TestBaselinesSizes(t *testing.T) {
	ctx := context.Background()
	for _, sz := range [][2]int{{64, 64}, {12, 20}, {33, 17}} {
		x := baselineRandBatch(uint64(sz[0]), 1, 3, sz[0], sz[1])
		for _, tr := range testBaselines(t) {
			y, err := tr.Apply(ctx, x)
			if err != nil {
				t.Fatalf("%s on %dx%d: %v", tr.Name(), sz[0], sz[1], err)
			}
			if !tensor.SameShape(x, y) {
				t.Fatalf("%s on %dx%d: shape %v", tr.Name(), sz[0], sz[1], y.Shape)
			}
			for i, v := range y.Data {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("%s on %dx%d: value %d = %v", tr.Name(), sz[0], sz[1], i, v)
				}
			}
		}
	}
}
