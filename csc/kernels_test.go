package csc

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"
)

func randC(rng *rand.Rand, n int) []complex64 {
	v := make([]complex64, n)
	for i := range v {
		v[i] = complex(float32(rng.NormFloat64()), float32(rng.NormFloat64()))
	}
	return v
}

func randF(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func closeC(t *testing.T, name string, got, want []complex64, tol float64) {
	t.Helper()
	for i := range want {
		if d := cmplx.Abs(complex128(got[i] - want[i])); d > tol*(1+cmplx.Abs(complex128(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

func closeF(t *testing.T, name string, got, want float64, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*(1+math.Abs(want)) {
		t.Fatalf("%s = %v, want %v", name, got, want)
	}
}

// TestKernelsMatchGo compares the build's hot-loop kernels (C in the cgo
// build) with the pure-Go references, on odd sizes that exercise vector
// remainders.
func TestKernelsMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const M, C, F = 7, 3, 37
	t.Run("fusedYU", func(t *testing.T) {
		x, y, u := randF(rng, 1001), randF(rng, 1001), randF(rng, 1001)
		y2, u2 := append([]float32(nil), y...), append([]float32(nil), u...)
		a1, b1, c1, d1, e1 := fusedYU(x, y, u, 1.8, 0.3)
		a2, b2, c2, d2, e2 := fusedYUGo(x, y2, u2, 1.8, 0.3)
		for i := range y {
			if math.Abs(float64(y[i]-y2[i])) > 1e-6 || math.Abs(float64(u[i]-u2[i])) > 1e-6 {
				t.Fatalf("y/u[%d]: %v %v vs %v %v", i, y[i], u[i], y2[i], u2[i])
			}
		}
		for i, p := range [][2]float64{{a1, a2}, {b1, b2}, {c1, c2}, {d1, d2}, {e1, e2}} {
			closeF(t, "norm "+string(rune('0'+i)), p[0], p[1], 1e-5)
		}
	})
	t.Run("formSolve", func(t *testing.T) {
		d := randDict(rng, M, C, 3, 3)
		sp, _ := newSpectrum(d, 6, 11)
		b := randC(rng, M*sp.f)
		dsf := randC(rng, M*sp.f)
		b2 := append([]complex64(nil), b...)
		sp.formSolve(b, dsf, 2.5, 0.25, make([]complex64, sp.scratchLen()))
		sp.formSolveGo(b2, dsf, 2.5, 0.25, make([]complex64, sp.scratchLen()))
		closeC(t, "x", b, b2, 1e-5)
	})
	t.Run("dhs", func(t *testing.T) {
		df, sf := randC(rng, M*C*F), randC(rng, C*F)
		a, b := make([]complex64, M*F), make([]complex64, M*F)
		dhs(a, df, sf, M, C, F)
		dhsGo(b, df, sf, M, C, F)
		closeC(t, "dsf", a, b, 1e-5)
	})
	t.Run("dictX", func(t *testing.T) {
		yf, sf, gf, du := randC(rng, M*F), randC(rng, C*F), randC(rng, C*M*F), randC(rng, C*M*F)
		wt := make([]float64, F)
		for i := range wt {
			wt[i] = rng.Float64()
		}
		a, b := make([]complex64, C*M*F), make([]complex64, C*M*F)
		fa := dictX(a, yf, sf, gf, du, wt, make([]float32, 5*F), M, C, F, 1.7)
		fb := dictXGo(b, yf, sf, gf, du, wt, M, C, F, 1.7)
		closeC(t, "dk", a, b, 1e-5)
		closeF(t, "dfid", fa, fb, 1e-5)
	})
	t.Run("dictU", func(t *testing.T) {
		u, d, g0, g1 := randC(rng, C*M*F), randC(rng, C*M*F), randC(rng, C*M*F), randC(rng, C*M*F)
		wt := make([]float64, F)
		for i := range wt {
			wt[i] = rng.Float64()
		}
		u2 := append([]complex64(nil), u...)
		a1, b1, c1 := dictU(u, d, g0, g1, wt, F, 1.8)
		a2, b2, c2 := dictUGo(u2, d, g0, g1, wt, F, 1.8)
		closeC(t, "u", u, u2, 1e-5)
		closeF(t, "dd", a1, a2, 1e-5)
		closeF(t, "rr", b1, b2, 1e-5)
		closeF(t, "uu", c1, c2, 1e-5)
	})
	t.Run("axpy2", func(t *testing.T) {
		acc, d, u := randC(rng, 101), randC(rng, 101), randC(rng, 101)
		acc2 := append([]complex64(nil), acc...)
		axpy2(acc, d, u, 1.8)
		axpy2Go(acc2, d, u, 1.8)
		closeC(t, "acc", acc, acc2, 1e-6)
	})
}

// TestBlockMaxAbs compares the kernel with its pure-Go twin and a direct
// maximum, with a short last block and negative extremes.
func TestBlockMaxAbs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ n, blk int }{{1, 64}, {64, 64}, {100, 64}, {4096, 64}, {37, 5}, {10, 1}} {
		x := randF(rng, c.n)
		x[rng.IntN(c.n)] = -9
		nb := (c.n + c.blk - 1) / c.blk
		got, twin := make([]float32, nb), make([]float32, nb)
		blockMaxAbs(got, x, c.blk)
		blockMaxAbsGo(twin, x, c.blk)
		for b := range nb {
			var want float32
			for _, v := range x[b*c.blk : min((b+1)*c.blk, c.n)] {
				want = max(want, float32(math.Abs(float64(v))))
			}
			if got[b] != want || twin[b] != want {
				t.Fatalf("n %d, blk %d, block %d: kernel %v, Go %v, want %v", c.n, c.blk, b, got[b], twin[b], want)
			}
		}
	}
}
