package csc

import (
	"math"
	"math/cmplx"

	"github.com/stl-defense/stl/fft"
)

// spectrum holds a dictionary's DFT for one image size and the Woodbury
// factorization of the per-frequency CBPDN system.
//
// At frequency k, D_k is the C×M matrix of filter DFTs d_{c,m}[k]. With the
// eigendecomposition D_k D_k^H = V Λ V^H (C×C Hermitian) and E = V^H D_k,
//
//	(rho I + D_k^H D_k)^{-1} = (I - E^H (rho I + Λ)^{-1} E) / rho,
//
// the Woodbury identity, valid for every rho: rho changes cost nothing.
// The spectrum is read-only after construction and shared by workers.
type spectrum struct {
	h, w, f int
	m, c    int
	df      []complex64 // (M, C, F): DFT of the zero-padded filters
	e       []complex64 // (C, M, F): V^H D per frequency
	lam     []float32   // (C, F): eigenvalues of D D^H
}

func newSpectrum(d *Dictionary, h, w int) (*spectrum, error) {
	p, err := fft.New(h, w)
	if err != nil {
		return nil, err
	}
	f := fft.ComplexLen(h, w)
	sp := &spectrum{h: h, w: w, f: f, m: d.M, c: d.C,
		df:  make([]complex64, d.M*d.C*f),
		e:   make([]complex64, d.C*d.M*f),
		lam: make([]float32, d.C*f),
	}
	pad := fft.MakeFloat32(h * w)
	for m := 0; m < d.M; m++ {
		for c := 0; c < d.C; c++ {
			clear(pad)
			base := (m*d.C + c) * d.R * d.S
			for r := 0; r < d.R; r++ {
				copy(pad[r*w:r*w+d.S], d.Filters[base+r*d.S:base+(r+1)*d.S])
			}
			p.Forward(sp.df[(m*d.C+c)*f:(m*d.C+c+1)*f], pad)
		}
	}
	C, M := d.C, d.M
	g := make([]complex128, C*C)
	v := make([]complex128, C*C)
	lam := make([]float64, C)
	for k := 0; k < f; k++ {
		// G = D D^H at frequency k, in float64.
		clear(g)
		for m := 0; m < M; m++ {
			for a := 0; a < C; a++ {
				da := complex128(sp.df[(m*C+a)*f+k])
				for b := 0; b < C; b++ {
					g[a*C+b] += da * cmplx.Conj(complex128(sp.df[(m*C+b)*f+k]))
				}
			}
		}
		eigHermitian(g, v, lam, C)
		for a := 0; a < C; a++ {
			sp.lam[a*f+k] = float32(math.Max(lam[a], 0))
			for m := 0; m < M; m++ {
				var acc complex128
				for j := 0; j < C; j++ {
					acc += cmplx.Conj(v[j*C+a]) * complex128(sp.df[(m*C+j)*f+k])
				}
				sp.e[(a*M+m)*f+k] = complex64(acc)
			}
		}
	}
	return sp, nil
}

// eigHermitian diagonalizes the n×n Hermitian matrix a (row-major,
// overwritten) by cyclic complex Jacobi rotations: on return a ≈ diag(lam)
// and the columns of v are orthonormal eigenvectors, A = V diag(lam) V^H.
func eigHermitian(a, v []complex128, lam []float64, n int) {
	clear(v)
	for i := 0; i < n; i++ {
		v[i*n+i] = 1
	}
	scale := 0.0
	for _, x := range a {
		scale += real(x)*real(x) + imag(x)*imag(x)
	}
	for sweep := 0; sweep < 50; sweep++ {
		off := 0.0
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				off += 2 * (real(a[p*n+q])*real(a[p*n+q]) + imag(a[p*n+q])*imag(a[p*n+q]))
			}
		}
		if off <= 1e-30*scale || off == 0 {
			break
		}
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				apq := a[p*n+q]
				r := cmplx.Abs(apq)
				if r == 0 {
					continue
				}
				// Phase: column q times ph and row q times conj(ph) make
				// a[p][q] real and positive.
				ph := cmplx.Conj(apq) / complex(r, 0)
				for k := 0; k < n; k++ {
					a[k*n+q] *= ph
					v[k*n+q] *= ph
				}
				for k := 0; k < n; k++ {
					a[q*n+k] *= cmplx.Conj(ph)
				}
				// Real symmetric Jacobi rotation zeroing a[p][q] = r.
				app, aqq := real(a[p*n+p]), real(a[q*n+q])
				theta := (aqq - app) / (2 * r)
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				cc, sc := complex(c, 0), complex(s, 0)
				for k := 0; k < n; k++ {
					akp, akq := a[k*n+p], a[k*n+q]
					a[k*n+p] = cc*akp - sc*akq
					a[k*n+q] = sc*akp + cc*akq
					vkp, vkq := v[k*n+p], v[k*n+q]
					v[k*n+p] = cc*vkp - sc*vkq
					v[k*n+q] = sc*vkp + cc*vkq
				}
				for k := 0; k < n; k++ {
					apk, aqk := a[p*n+k], a[q*n+k]
					a[p*n+k] = cc*apk - sc*aqk
					a[q*n+k] = sc*apk + cc*aqk
				}
			}
		}
	}
	for i := 0; i < n; i++ {
		lam[i] = real(a[i*n+i])
	}
}

// scratchLen is the length of the scratch slice formSolve needs: C*F.
// (Processing frequencies in cache-sized blocks was tried and measured
// slower: the streaming passes prefetch well.)
func (sp *spectrum) scratchLen() int { return sp.c * sp.f }

// formSolveGo is the pure-Go formSolve: b = dsf + rho b, then solve.
func (sp *spectrum) formSolveGo(b, dsf []complex64, rho, post float32, t []complex64) {
	for i := range b[:sp.m*sp.f] {
		b[i] = dsf[i] + complex(rho, 0)*b[i]
	}
	sp.solvePost(b, rho, post, t)
}

// solve overwrites b (M, F) with (rho I + D^H D)^{-1} b at every
// frequency, by the Woodbury identity. t is scratch of C*F values.
func (sp *spectrum) solve(b []complex64, rho float32, t []complex64) { sp.solvePost(b, rho, 1, t) }

// solvePost is solve with the result multiplied by post.
func (sp *spectrum) solvePost(b []complex64, rho, post float32, t []complex64) {
	f, M, C := sp.f, sp.m, sp.c
	clear(t[:C*f])
	for c := 0; c < C; c++ {
		tc := t[c*f : (c+1)*f]
		for m := 0; m < M; m++ {
			e := sp.e[(c*M+m)*f : (c*M+m+1)*f]
			bm := b[m*f : (m+1)*f]
			for k := range tc {
				tc[k] += e[k] * bm[k]
			}
		}
		lam := sp.lam[c*f : (c+1)*f]
		for k := range tc {
			tc[k] *= complex(1/(rho+lam[k]), 0)
		}
	}
	inv := post / rho
	for m := 0; m < M; m++ {
		bm := b[m*f : (m+1)*f]
		for c := 0; c < C; c++ {
			e := sp.e[(c*M+m)*f : (c*M+m+1)*f]
			tc := t[c*f : (c+1)*f]
			for k := range bm {
				ek := e[k]
				bm[k] -= complex(real(ek), -imag(ek)) * tc[k]
			}
		}
		for k := range bm {
			bm[k] *= complex(inv, 0)
		}
	}
}

// apply returns D x (C, H, W) for coefficient maps x (M, H, W), through
// the Fourier domain; dst is allocated when nil.
func (ws *workspace) apply(dst, x []float32) []float32 {
	sp := ws.sp
	f, hw := sp.f, ws.h*ws.w
	if dst == nil {
		dst = make([]float32, sp.c*hw)
	}
	for m := 0; m < sp.m; m++ {
		copy(ws.tmp, x[m*hw:(m+1)*hw])
		ws.plan.Forward(ws.xf[m*f:(m+1)*f], ws.tmp)
	}
	acc := ws.t
	clear(acc)
	sp.mulD(acc, ws.xf)
	for c := 0; c < sp.c; c++ {
		ws.plan.Inverse(ws.tmp, acc[c*f:(c+1)*f])
		copy(dst[c*hw:(c+1)*hw], ws.tmp)
	}
	return dst
}

// mulD adds D xf to acc at every frequency: acc (C, F) += sum_m
// d_{c,m} xf_m for spectra xf (M, F).
func (sp *spectrum) mulD(acc, xf []complex64) {
	f := sp.f
	for m := 0; m < sp.m; m++ {
		xm := xf[m*f : (m+1)*f]
		for c := 0; c < sp.c; c++ {
			d := sp.df[(m*sp.c+c)*f : (m*sp.c+c+1)*f]
			a := acc[c*f : (c+1)*f]
			for k := range a {
				a[k] += d[k] * xm[k]
			}
		}
	}
}

// applyAdjoint returns D^T r (M, H, W) for r (C, H, W): the correlation
// with the filters, through the Fourier domain; dst is allocated when nil.
func (ws *workspace) applyAdjoint(dst, r []float32) []float32 {
	sp := ws.sp
	f, hw := sp.f, ws.h*ws.w
	if dst == nil {
		dst = make([]float32, sp.m*hw)
	}
	for c := 0; c < sp.c; c++ {
		copy(ws.tmp, r[c*hw:(c+1)*hw])
		ws.plan.Forward(ws.sf[c*f:(c+1)*f], ws.tmp)
	}
	ws.computeDSf()
	for m := 0; m < sp.m; m++ {
		ws.plan.Inverse(ws.tmp, ws.dsf[m*f:(m+1)*f])
		copy(dst[m*hw:(m+1)*hw], ws.tmp)
	}
	return dst
}
