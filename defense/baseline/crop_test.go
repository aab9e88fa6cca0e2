package baseline

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestCropResizeFullBoxIsIdentity(t *testing.T) {
	x := baselineRandBatch(9, 1, 3, 7, 9)
	dst := make([]float32, len(x.Data))
	cropResize(dst, x.Data, 3, 7, 9, cropBox{0, 0, 7, 9})
	for i := range dst {
		if math.Abs(float64(dst[i]-x.Data[i])) > 1e-6 {
			t.Fatalf("value %d: %v, want %v", i, dst[i], x.Data[i])
		}
	}
}

func TestCropResizeLinearRamp(t *testing.T) {
	// Bilinear resampling reproduces a linear ramp inside the crop: with
	// v(c) = c/(w-1) the crop [x0, x0+cw) sampled at w pixel centres gives
	// v at x0 + (j+0.5) cw/w - 0.5.
	const h, w = 4, 16
	src := make([]float32, h*w)
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			src[r*w+c] = float32(c) / (w - 1)
		}
	}
	box := cropBox{y0: 0.5, x0: 3.25, ch: 2, cw: 8}
	dst := make([]float32, h*w)
	cropResize(dst, src, 1, h, w, box)
	for c := 0; c < w; c++ {
		xx := box.x0 + (float64(c)+0.5)*box.cw/w - 0.5
		want := xx / (w - 1)
		if got := float64(dst[c]); math.Abs(got-want) > 1e-6 {
			t.Errorf("column %d: %v, want %v", c, got, want)
		}
	}
}

func TestRandomCropBoxInside(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		b := randomCropBox(rng, 32, 24, 90.0/299)
		if b.y0 < 0 || b.x0 < 0 || b.y0+b.ch > 32+1e-9 || b.x0+b.cw > 24+1e-9 {
			t.Fatalf("box %+v outside the 32x24 image", b)
		}
		if math.Abs(b.ch-32*90.0/299) > 1e-9 || math.Abs(b.cw-24*90.0/299) > 1e-9 {
			t.Fatalf("box %+v has the wrong size", b)
		}
	}
}

func TestCropEnsembleConstantAndSmoothing(t *testing.T) {
	ctx := context.Background()
	o := DefaultCropOptions()
	ce, err := NewCropEnsemble(o)
	if err != nil {
		t.Fatal(err)
	}
	x := baselineRandBatch(1, 1, 3, 32, 32)
	for i := range x.Data[:32*32] {
		x.Data[i] = 0.25 // a constant first channel stays constant
	}
	y, err := ce.Apply(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 32*32; i++ {
		if math.Abs(float64(y.Data[i])-0.25) > 1e-6 {
			t.Fatalf("constant channel changed at %d: %v", i, y.Data[i])
		}
	}
	// Averaging 30 magnified crops of noise flattens it.
	if tvIn, tvOut := totalVariation(x.Data[32*32:2*32*32], 32, 32), totalVariation(y.Data[32*32:2*32*32], 32, 32); tvOut > tvIn/4 {
		t.Errorf("crop ensemble of noise: TV %.2f, want below a quarter of %.2f", tvOut, tvIn)
	}
}

func TestCropOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		field string
		opts  CropOptions
	}{
		{"Fraction", CropOptions{Fraction: 0, Crops: 1}},
		{"Fraction", CropOptions{Fraction: 1.2, Crops: 1}},
		{"Fraction", CropOptions{Fraction: math.NaN(), Crops: 1}},
		{"Crops", CropOptions{Fraction: 0.5, Crops: 0}},
	} {
		var pe *ParamError
		if _, err := NewCropEnsemble(c.opts); !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%+v: error %v, want *ParamError on %s", c.opts, err, c.field)
		}
	}
}
