package baseline

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// TestTVMKnownOptimum checks the solver against the closed-form minimizer of
// the ROF objective for a vertical step edge: with all pixels kept, an h x w
// image with value a left of the middle and b right of it has the minimizer
// a + 2 lambda/w on the left and b - 2 lambda/w on the right (each row is the
// 1-D problem, whose jump shrinks by lambda/(w/2) on both sides).
func TestTVMKnownOptimum(t *testing.T) {
	cases := []struct {
		h, w         int
		a, b, lambda float64
	}{
		{h: 4, w: 8, a: 0.2, b: 0.8, lambda: 0.03},
		{h: 6, w: 10, a: 0.9, b: 0.1, lambda: 0.1},
		{h: 1, w: 16, a: 0.5, b: 0.6, lambda: 0.05},
	}
	for _, c := range cases {
		f := make([]float32, c.h*c.w)
		mask := make([]bool, len(f))
		for r := 0; r < c.h; r++ {
			for k := 0; k < c.w; k++ {
				v := c.a
				if k >= c.w/2 {
					v = c.b
				}
				f[r*c.w+k] = float32(v)
				mask[r*c.w+k] = true
			}
		}
		o := DefaultTVMOptions()
		o.Lambda, o.KeepProb, o.MaxIter, o.Tol = c.lambda, 1, 5000, 1e-12
		u := make([]float32, len(f))
		s := newTVScratch(c.h, c.w)
		s.solve(u, f, mask, o)
		delta := 2 * c.lambda / float64(c.w)
		if c.b < c.a {
			delta = -delta
		}
		for r := 0; r < c.h; r++ {
			for k := 0; k < c.w; k++ {
				want := c.a + delta
				if k >= c.w/2 {
					want = c.b - delta
				}
				if got := float64(u[r*c.w+k]); math.Abs(got-want) > 1e-4 {
					t.Fatalf("%+v: u[%d,%d] = %.6f, want %.6f", c, r, k, got, want)
				}
			}
		}
	}
}

// TestTVMOptimality checks, on noisy data with half the pixels dropped, that
// no random perturbation of the solution lowers the (convex) objective.
func TestTVMOptimality(t *testing.T) {
	const h, w = 8, 8
	rng := rand.New(rand.NewPCG(4, 4))
	f := make([]float32, h*w)
	mask := make([]bool, h*w)
	for k := range f {
		f[k] = float32(0.3 + 0.4*float64(k%w)/w + 0.1*rng.NormFloat64())
		mask[k] = rng.Float64() < 0.5
	}
	o := DefaultTVMOptions()
	o.MaxIter, o.Tol = 20000, 1e-12
	u := make([]float32, h*w)
	newTVScratch(h, w).solve(u, f, mask, o)
	e0 := tvObjective(u, f, mask, h, w, o.Lambda)
	p := make([]float32, len(u))
	for trial := 0; trial < 200; trial++ {
		step := 1e-3 * float64(1+trial%3)
		for k := range p {
			p[k] = u[k] + float32(step*rng.NormFloat64())
		}
		if e := tvObjective(p, f, mask, h, w, o.Lambda); e < e0-1e-6 {
			t.Fatalf("perturbation lowers the objective: %.8f < %.8f", e, e0)
		}
	}
	if e := tvObjective(f, f, mask, h, w, o.Lambda); e0 >= e {
		t.Fatalf("solution objective %.6f not below the data's %.6f", e0, e)
	}
}

func TestTVMReducesTotalVariation(t *testing.T) {
	ctx := context.Background()
	x := loadBaselineStrip(t, "cifar4.png")
	for _, keep := range []float64{1, 0.5} {
		o := DefaultTVMOptions()
		o.KeepProb = keep
		tv, err := NewTVM(o)
		if err != nil {
			t.Fatal(err)
		}
		y, err := tv.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		const plane = 32 * 32
		for p := 0; p < len(x.Data)/plane; p++ {
			in := totalVariation(x.Data[p*plane:(p+1)*plane], 32, 32)
			out := totalVariation(y.Data[p*plane:(p+1)*plane], 32, 32)
			if out >= in {
				t.Errorf("keep %v, plane %d: TV %.3f not below the input's %.3f", keep, p, out, in)
			}
		}
		// The reconstruction stays close to the image: TVM is a defense,
		// not a blur to grey.
		if q := baselinePSNR(x.Data, y.Data); q < 20 {
			t.Errorf("keep %v: PSNR %.2f dB, want >= 20", keep, q)
		} else {
			t.Logf("keep %v: PSNR %.2f dB", keep, q)
		}
	}
}

func TestTVMConstantFromDropout(t *testing.T) {
	// Half the pixels of a constant image determine it entirely.
	x := tensor.New(1, 3, 12, 12)
	for i := range x.Data {
		x.Data[i] = 0.37
	}
	tv, _ := NewTVM(DefaultTVMOptions())
	y, err := tv.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range y.Data {
		if math.Abs(float64(v)-0.37) > 1e-5 {
			t.Fatalf("pixel %d = %v, want 0.37", i, v)
		}
	}
}

func TestTVMOptionsValidate(t *testing.T) {
	mod := func(f func(*TVMOptions)) TVMOptions { o := DefaultTVMOptions(); f(&o); return o }
	cases := []struct {
		field string
		opts  TVMOptions
	}{
		{"KeepProb", mod(func(o *TVMOptions) { o.KeepProb = 0 })},
		{"KeepProb", mod(func(o *TVMOptions) { o.KeepProb = 1.5 })},
		{"KeepProb", mod(func(o *TVMOptions) { o.KeepProb = math.NaN() })},
		{"Lambda", mod(func(o *TVMOptions) { o.Lambda = 0 })},
		{"Lambda", mod(func(o *TVMOptions) { o.Lambda = math.Inf(1) })},
		{"MaxIter", mod(func(o *TVMOptions) { o.MaxIter = 0 })},
		{"Sweeps", mod(func(o *TVMOptions) { o.Sweeps = 0 })},
		{"Tol", mod(func(o *TVMOptions) { o.Tol = -1 })},
	}
	for _, c := range cases {
		_, err := NewTVM(c.opts)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: error %v, want *ParamError on %s", c.field, err, c.field)
		}
	}
	if err := DefaultTVMOptions().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}
