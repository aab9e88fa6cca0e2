package baseline

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// distinctBatch returns a batch whose values are pairwise distinct, so that
// every reassigned value is visible.
func distinctBatch(n, c, h, w int) *tensor.Tensor {
	x := tensor.New(n, c, h, w)
	per := c * h * w
	perm := rand.New(rand.NewPCG(3, 3)).Perm(per)
	for i := range x.Data {
		x.Data[i] = float32(perm[i%per]+1) / float32(per+1)
	}
	return x
}

func TestDeflectChangesExactlyCount(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name                string
		n, c, h, w          int
		deflections, window int
	}{
		{"cifar default", 2, 3, 32, 32, 200, 10},
		{"small window", 1, 3, 16, 16, 50, 1},
		{"every value", 1, 1, 6, 6, 36, 2},
		{"grey", 3, 1, 32, 32, 200, 10},
		{"none", 1, 3, 8, 8, 0, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultDeflectOptions()
			o.Deflections, o.Window = c.deflections, c.window
			pd, err := NewPixelDeflection(o)
			if err != nil {
				t.Fatal(err)
			}
			x := distinctBatch(c.n, c.c, c.h, c.w)
			y, err := pd.Deflect(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			plane, per := c.h*c.w, c.c*c.h*c.w
			for i := 0; i < c.n; i++ {
				changed := 0
				for k := 0; k < per; k++ {
					v := y.Data[i*per+k]
					if v == x.Data[i*per+k] {
						continue
					}
					changed++
					// The new value is the input value of a neighbour of
					// the same channel within the window.
					ch, r, col := k/plane, (k%plane)/c.w, k%c.w
					found := false
					for a := -c.window; a <= c.window && !found; a++ {
						for b := -c.window; b <= c.window; b++ {
							rr, cc := r+a, col+b
							if rr >= 0 && rr < c.h && cc >= 0 && cc < c.w && x.Data[i*per+ch*plane+rr*c.w+cc] == v {
								found = true
								break
							}
						}
					}
					if !found {
						t.Fatalf("image %d value %d: %v is no neighbour's value", i, k, v)
					}
				}
				if changed != c.deflections {
					t.Errorf("image %d: %d values changed, want exactly %d", i, changed, c.deflections)
				}
			}
		})
	}
}

func TestDeflectTooMany(t *testing.T) {
	o := DefaultDeflectOptions()
	o.Deflections = 13
	pd, _ := NewPixelDeflection(o)
	var pe *ParamError
	if _, err := pd.Apply(context.Background(), tensor.New(1, 1, 3, 4)); !errors.As(err, &pe) {
		t.Errorf("13 deflections in 12 values: error %v, want *ParamError", err)
	}
	o.Deflections = 1
	pd, _ = NewPixelDeflection(o)
	if _, err := pd.Apply(context.Background(), tensor.New(1, 3, 1, 1)); !errors.As(err, &pe) {
		t.Errorf("single-pixel image: error %v, want *ParamError", err)
	}
}

func TestHaarPerfectReconstruction(t *testing.T) {
	for _, c := range []struct{ h, w, levels int }{{8, 8, 3}, {32, 16, 2}, {4, 12, 2}, {2, 2, 1}} {
		rng := rand.New(rand.NewPCG(uint64(c.h), uint64(c.w)))
		x := make([]float64, c.h*c.w)
		var e0 float64
		for i := range x {
			x[i] = rng.NormFloat64()
			e0 += x[i] * x[i]
		}
		buf := append([]float64(nil), x...)
		tmp := make([]float64, max(c.h, c.w))
		haar2D(buf, c.h, c.w, c.levels, tmp)
		var e1 float64
		for _, v := range buf {
			e1 += v * v
		}
		if math.Abs(e1-e0) > 1e-9*e0 {
			t.Errorf("%+v: energy %v -> %v, transform not orthonormal", c, e0, e1)
		}
		ihaar2D(buf, c.h, c.w, c.levels, tmp)
		for i := range x {
			if math.Abs(buf[i]-x[i]) > 1e-12 {
				t.Fatalf("%+v: value %d: %v after the round trip, want %v", c, i, buf[i], x[i])
			}
		}
	}
	// One level on [a b; c d]: LL = (a+b+c+d)/2, HH = (a-b-c+d)/2.
	buf := []float64{1, 2, 3, 4}
	haar2D(buf, 2, 2, 1, make([]float64, 2))
	want := []float64{5, -1, -2, 0}
	for i := range want {
		if math.Abs(buf[i]-want[i]) > 1e-12 {
			t.Errorf("2x2 Haar coefficient %d = %v, want %v", i, buf[i], want[i])
		}
	}
}

func TestYCbCrRoundTrip(t *testing.T) {
	x := baselineRandBatch(4, 1, 3, 4, 4)
	p := 16
	r, g, b := append([]float32(nil), x.Data[:p]...), append([]float32(nil), x.Data[p:2*p]...), append([]float32(nil), x.Data[2*p:]...)
	rgbToYCbCr(r, g, b)
	for k := range r {
		if r[k] < 0 || r[k] > 1 || g[k] < 0 || g[k] > 1 || b[k] < 0 || b[k] > 1 {
			t.Fatalf("YCbCr out of [0,1]: %v %v %v", r[k], g[k], b[k])
		}
	}
	yCbCrToRGB(r, g, b)
	for k := 0; k < p; k++ {
		for ch, v := range []float32{r[k], g[k], b[k]} {
			if math.Abs(float64(v-x.Data[ch*p+k])) > 1e-5 {
				t.Fatalf("round trip: %v, want %v", v, x.Data[ch*p+k])
			}
		}
	}
}

func TestWaveletDenoiseRemovesNoise(t *testing.T) {
	clean := loadBaselineStrip(t, "cifar4.png")
	noisy := clean.Clone()
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range noisy.Data {
		noisy.Data[i] = float32(math.Min(1, math.Max(0, float64(noisy.Data[i])+0.04*rng.NormFloat64())))
	}
	o := DefaultDeflectOptions()
	o.Deflections = 0
	pd, _ := NewPixelDeflection(o)
	y, err := pd.Apply(context.Background(), noisy)
	if err != nil {
		t.Fatal(err)
	}
	before, after := baselinePSNR(clean.Data, noisy.Data), baselinePSNR(clean.Data, y.Data)
	t.Logf("PSNR noisy %.2f dB, denoised %.2f dB", before, after)
	if after <= before {
		t.Errorf("denoising did not raise the PSNR: %.2f -> %.2f dB", before, after)
	}
	// Sigma 0 with no deflection is the identity.
	o.Sigma = 0
	id, _ := NewPixelDeflection(o)
	z, _ := id.Apply(context.Background(), noisy)
	for i := range z.Data {
		if z.Data[i] != noisy.Data[i] {
			t.Fatalf("identity configuration changed value %d", i)
		}
	}
	if id.Randomized() {
		t.Error("0 deflections says randomized")
	}
}

func TestDeflectOptionsValidate(t *testing.T) {
	mod := func(f func(*DeflectOptions)) DeflectOptions { o := DefaultDeflectOptions(); f(&o); return o }
	for _, c := range []struct {
		field string
		opts  DeflectOptions
	}{
		{"Deflections", mod(func(o *DeflectOptions) { o.Deflections = -1 })},
		{"Window", mod(func(o *DeflectOptions) { o.Window = 0 })},
		{"Sigma", mod(func(o *DeflectOptions) { o.Sigma = -0.1 })},
		{"Sigma", mod(func(o *DeflectOptions) { o.Sigma = math.NaN() })},
		{"Levels", mod(func(o *DeflectOptions) { o.Levels = -1 })},
	} {
		var pe *ParamError
		if _, err := NewPixelDeflection(c.opts); !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: error %v, want *ParamError on %s", c.field, err, c.field)
		}
	}
}
