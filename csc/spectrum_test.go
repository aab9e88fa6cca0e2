package csc

import (
	"math/cmplx"
	"math/rand/v2"
	"testing"
)

func randDict(rng *rand.Rand, m, c, r, s int) *Dictionary {
	d := &Dictionary{M: m, C: c, R: r, S: s, Filters: make([]float32, m*c*r*s)}
	for i := range d.Filters {
		d.Filters[i] = float32(rng.NormFloat64())
	}
	return d
}

func TestEigHermitian(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 4} {
		for trial := 0; trial < 20; trial++ {
			a := make([]complex128, n*n)
			for i := 0; i < n; i++ {
				a[i*n+i] = complex(rng.NormFloat64(), 0)
				for j := i + 1; j < n; j++ {
					z := complex(rng.NormFloat64(), rng.NormFloat64())
					a[i*n+j], a[j*n+i] = z, cmplx.Conj(z)
				}
			}
			orig := append([]complex128(nil), a...)
			v := make([]complex128, n*n)
			lam := make([]float64, n)
			eigHermitian(a, v, lam, n)
			// V diag(lam) V^H == A and V^H V == I.
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					var rec, id complex128
					for k := 0; k < n; k++ {
						rec += v[i*n+k] * complex(lam[k], 0) * cmplx.Conj(v[j*n+k])
						id += cmplx.Conj(v[k*n+i]) * v[k*n+j]
					}
					if cmplx.Abs(rec-orig[i*n+j]) > 1e-10 {
						t.Fatalf("n=%d: reconstruction[%d,%d] = %v, want %v", n, i, j, rec, orig[i*n+j])
					}
					want := complex128(0)
					if i == j {
						want = 1
					}
					if cmplx.Abs(id-want) > 1e-10 {
						t.Fatalf("n=%d: V^H V[%d,%d] = %v", n, i, j, id)
					}
				}
			}
		}
	}
}

// TestWoodburySolve checks (rho I + D^H D) x = b at every frequency for
// several rho with one factorization.
func TestWoodburySolve(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []int{1, 3} {
		d := randDict(rng, 5, c, 3, 2)
		sp, err := newSpectrum(d, 6, 5)
		if err != nil {
			t.Fatal(err)
		}
		f, M := sp.f, sp.m
		for _, rho := range []float32{0.01, 1, 11, 1000} {
			b := make([]complex64, M*f)
			for i := range b {
				b[i] = complex(float32(rng.NormFloat64()), float32(rng.NormFloat64()))
			}
			x := append([]complex64(nil), b...)
			sp.solve(x, rho, make([]complex64, c*f))
			for k := 0; k < f; k++ {
				for m := 0; m < M; m++ {
					// (rho x + D^H D x)_m
					acc := complex(float64(rho), 0) * complex128(x[m*f+k])
					// float32 rounding is relative to the sum of the absolute
					// values of the terms, which grows with the condition number.
					mag := cmplx.Abs(complex128(b[m*f+k])) + cmplx.Abs(acc)
					for ch := 0; ch < c; ch++ {
						var dx complex128
						absdx := 0.0
						for j := 0; j < M; j++ {
							dx += complex128(sp.df[(j*c+ch)*f+k]) * complex128(x[j*f+k])
							absdx += cmplx.Abs(complex128(sp.df[(j*c+ch)*f+k]) * complex128(x[j*f+k]))
						}
						acc += cmplx.Conj(complex128(sp.df[(m*c+ch)*f+k])) * dx
						mag += cmplx.Abs(complex128(sp.df[(m*c+ch)*f+k])) * absdx
					}
					if e := cmplx.Abs(acc - complex128(b[m*f+k])); e > 1e-5*mag {
						t.Fatalf("C=%d rho=%v k=%d m=%d: residual %g", c, rho, k, m, e)
					}
				}
			}
		}
	}
}
