package csc

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// The reference problems (testdata/README.md): SPORCO's inputs and the
// objectives it reaches.
const (
	optimum32       = 1.49522658
	sporcoDefault32 = 1.67014671 // 200 iterations, not converged
	optimum128      = 23.3312302
	sporcoDef128    = 23.3389127 // 58 iterations
)

func loadDict(t testing.TB) *Dictionary {
	t.Helper()
	d, err := ReadDictionary(filepath.Join("testdata", "dict.npy"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// loadImage reads a SPORCO (H, W, C) image as a (1, C, H, W) batch.
func loadImage(t testing.TB, name string) *tensor.Tensor {
	t.Helper()
	raw, err := npy.ReadFile(filepath.Join("testdata", name+".npy"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ImagesFromSPORCO(raw)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestReferenceDefaultStopping(t *testing.T) {
	cases := []struct {
		name   string
		sporco float64
		iters  int // SPORCO's iteration count
		slow   bool
	}{
		{"img32_hi", sporcoDefault32, 200, false},
		{"img128_hi", sporcoDef128, 58, true},
	}
	d := loadDict(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slow && testing.Short() {
				t.Skip("slow in -short mode")
			}
			coder, err := NewCoder(d, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			r, err := coder.Solve(context.Background(), loadImage(t, c.name), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: objective %.8f after %d iterations (SPORCO %.8f after %d), %.3fs",
				c.name, r.Objective, r.Iterations, c.sporco, c.iters, r.Seconds)
			// The 200-iteration img32_hi run is not converged and its
			// adaptive-rho trajectory amplifies float32 rounding: builds
			// land within a few 1e-6 of SPORCO's value on either side.
			if r.Objective > c.sporco*(1+1e-5) {
				t.Errorf("objective %.8f worse than SPORCO's %.8f", r.Objective, c.sporco)
			}
		})
	}
}

func TestReferenceOptimum(t *testing.T) {
	cases := []struct {
		name    string
		optimum float64
		iters   int
		autoRho bool // SPORCO's adaptive rho stalls near 1.7 on img32_hi; fixed rho converges
		slow    bool
	}{
		{"img32_hi", optimum32, 1500, false, false},
		{"img128_hi", optimum128, 400, true, true},
	}
	d := loadDict(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slow && (testing.Short() || fft.Implementation == "go") {
				t.Skip("slow in -short mode and with the pure-Go FFT")
			}
			opt := DefaultOptions()
			opt.ADMM.MaxIter = c.iters
			opt.ADMM.RelStopTol = 1e-5
			opt.ADMM.AutoRho = c.autoRho
			coder, _ := NewCoder(d, opt)
			r, err := coder.Solve(context.Background(), loadImage(t, c.name), nil)
			if err != nil {
				t.Fatal(err)
			}
			rel := (r.Objective - c.optimum) / c.optimum
			t.Logf("%s: objective %.8f after %d iterations, optimum %.8f, rel %.2g", c.name, r.Objective, r.Iterations, c.optimum, rel)
			if math.Abs(rel) > 1e-4 {
				t.Errorf("objective %.8f not within 1e-4 of the optimum %.8f", r.Objective, c.optimum)
			}
		})
	}
}
