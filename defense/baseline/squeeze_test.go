package baseline

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

func TestBitDepthLevels(t *testing.T) {
	ctx := context.Background()
	x := baselineRandBatch(5, 2, 3, 8, 8)
	for _, bits := range []int{1, 2, 3, 5, 8} {
		s, err := NewSqueeze(SqueezeOptions{Bits: bits})
		if err != nil {
			t.Fatal(err)
		}
		y, err := s.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		levels := float64(int(1)<<bits - 1)
		seen := map[float32]bool{}
		for i, v := range y.Data {
			q := float64(v) * levels
			if math.Abs(q-math.Round(q)) > 1e-4 {
				t.Fatalf("bits %d: %v is not on the grid of %v levels", bits, v, levels+1)
			}
			// Nearest level: the error is at most half a step.
			if d := math.Abs(float64(v - x.Data[i])); d > 0.5/levels+1e-6 {
				t.Fatalf("bits %d: value %v moved to %v, more than half a step", bits, x.Data[i], v)
			}
			seen[v] = true
		}
		if len(seen) > int(levels)+1 {
			t.Errorf("bits %d: %d distinct values, want at most %v", bits, len(seen), levels+1)
		}
	}
	// Exact levels: 1 bit maps to {0, 1} with the threshold at 0.5.
	one, _ := NewSqueeze(SqueezeOptions{Bits: 1})
	in, _ := tensor.FromData([]float32{0, 0.49, 0.51, 1}, 1, 1, 2, 2)
	y, _ := one.Apply(ctx, in)
	want := []float32{0, 0, 1, 1}
	for i := range want {
		if y.Data[i] != want[i] {
			t.Errorf("1 bit: %v -> %v, want %v", in.Data[i], y.Data[i], want[i])
		}
	}
}

func TestMedianKnownPatch(t *testing.T) {
	// A 3x3 plane; the 2x2 window of pixel (r, c) covers rows r-1..r and
	// columns c-1..c, mirrored at the border, and the median of four is the
	// upper middle value.
	in := []float32{
		0.1, 0.4, 0.7,
		0.2, 0.3, 0.9,
		0.8, 0.5, 0.6,
	}
	want := []float32{
		0.1, 0.4, 0.7, // row 0: window rows {0,0}: (0.1,0.1,0.1,0.1), (0.1,0.4,0.1,0.4)->0.4, (0.4,0.7,..)->0.7
		0.2, 0.3, 0.7, // (1,1): {0.1,0.4,0.2,0.3} -> 0.3; (1,2): {0.4,0.7,0.3,0.9} -> 0.7
		0.8, 0.5, 0.6, // (2,1): {0.2,0.3,0.8,0.5} -> 0.5; (2,2): {0.3,0.9,0.5,0.6} -> 0.6
	}
	want[3] = 0.2 // (1,0): {0.1,0.1,0.2,0.2} -> 0.2
	want[6] = 0.8 // (2,0): {0.2,0.2,0.8,0.8} -> 0.8
	x, _ := tensor.FromData(in, 1, 1, 3, 3)
	s, _ := NewSqueeze(SqueezeOptions{Bits: 8, MedianSize: 2})
	// Use values on the 8-bit grid so the bit-depth step is the identity.
	for i := range x.Data {
		x.Data[i] = float32(math.Round(float64(x.Data[i])*255) / 255)
		want[i] = float32(math.Round(float64(want[i])*255) / 255)
	}
	y, err := s.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if y.Data[i] != want[i] {
			t.Errorf("pixel (%d,%d) = %v, want %v", i/3, i%3, y.Data[i], want[i])
		}
	}
	// A 3x3 window is the ordinary centred median.
	s3, _ := NewSqueeze(SqueezeOptions{Bits: 8, MedianSize: 3})
	y3, _ := s3.Apply(context.Background(), x)
	if got, w := y3.Data[4], x.Data[5]; got != float32(math.Round(0.5*255)/255) {
		t.Errorf("3x3 median at the centre = %v, want 0.5 (%v)", got, w)
	}
}

func TestHalfSymIndex(t *testing.T) {
	cases := []struct{ i, n, want int }{
		{-1, 5, 0}, {-2, 5, 1}, {5, 5, 4}, {6, 5, 3}, {2, 5, 2}, {-7, 3, 0}, {9, 3, 2}, {4, 1, 0},
	}
	for _, c := range cases {
		if got := halfSymIndex(c.i, c.n); got != c.want {
			t.Errorf("halfSymIndex(%d, %d) = %d, want %d", c.i, c.n, got, c.want)
		}
	}
}

func TestSqueezeOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		field string
		opts  SqueezeOptions
	}{
		{"Bits", SqueezeOptions{Bits: 0}},
		{"Bits", SqueezeOptions{Bits: 9}},
		{"MedianSize", SqueezeOptions{Bits: 5, MedianSize: -1}},
		{"MedianSize", SqueezeOptions{Bits: 5, MedianSize: 16}},
	} {
		var pe *ParamError
		if _, err := NewSqueeze(c.opts); !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%+v: error %v, want *ParamError on %s", c.opts, err, c.field)
		}
	}
}
