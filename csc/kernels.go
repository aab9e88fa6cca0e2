package csc

// Pure-Go reference versions of the hot loops. The cgo build runs C
// versions of the same loops (kernels_cgo.go); these are the purego build's
// implementation and the reference the kernel tests compare against.

// dhsGo stores D^H s in dsf (M, F) for df (M, C, F) and sf (C, F).
func dhsGo(dsf, df, sf []complex64, M, C, F int) {
	clear(dsf[:M*F])
	for m := 0; m < M; m++ {
		dm := dsf[m*F : (m+1)*F]
		for c := 0; c < C; c++ {
			d := df[(m*C+c)*F : (m*C+c+1)*F]
			s := sf[c*F : (c+1)*F]
			for k := range dm {
				dk := d[k]
				dm[k] += complex(real(dk), -imag(dk)) * s[k]
			}
		}
	}
}

// dictXGo is the dictionary step's x-step for one image (Sherman-Morrison;
// see learner.dictXStep): dk (C, M, F) from the coefficient spectra yf
// (M, F), the image spectrum sf (C, F), the consensus gf and the scaled
// dual du (C, M, F). It returns sum_c sum_k wt_k |sum_m g_cm a_m - s_c|^2.
func dictXGo(dk, yf, sf, gf, du []complex64, wt []float64, M, C, F int, rho float32) float64 {
	aa := make([]float32, F)
	t := make([]complex64, F)
	res := make([]complex64, F)
	for m := 0; m < M; m++ {
		a := yf[m*F : (m+1)*F]
		for k, v := range a {
			aa[k] += real(v)*real(v) + imag(v)*imag(v)
		}
	}
	for k := range aa {
		aa[k] = 1 / (rho + aa[k])
	}
	r := complex(rho, 0)
	inv := complex(1/rho, 0)
	dfid := 0.0
	for c := 0; c < C; c++ {
		s := sf[c*F : (c+1)*F]
		clear(t)
		clear(res)
		for m := 0; m < M; m++ {
			a := yf[m*F : (m+1)*F]
			g := gf[(c*M+m)*F : (c*M+m+1)*F]
			u := du[(c*M+m)*F : (c*M+m+1)*F]
			d := dk[(c*M+m)*F : (c*M+m+1)*F]
			for k := range d {
				ak := a[k]
				res[k] += g[k] * ak
				b := complex(real(ak), -imag(ak))*s[k] + r*(g[k]-u[k])
				d[k] = b
				t[k] += ak * b
			}
		}
		for k := range t {
			e := res[k] - s[k]
			dfid += wt[k] * float64(real(e)*real(e)+imag(e)*imag(e))
			t[k] *= complex(aa[k], 0)
		}
		for m := 0; m < M; m++ {
			a := yf[m*F : (m+1)*F]
			d := dk[(c*M+m)*F : (c*M+m+1)*F]
			for k := range d {
				ak := a[k]
				d[k] = (d[k] - complex(real(ak), -imag(ak))*t[k]) * inv
			}
		}
	}
	return dfid
}

// axpy2Go adds alpha d + u to acc.
func axpy2Go(acc, d, u []complex64, alpha float32) {
	a := complex(alpha, 0)
	d, u = d[:len(acc)], u[:len(acc)]
	for i := range acc {
		acc[i] += a*d[i] + u[i]
	}
}

// dictUGo is the dictionary step's u-step for one image:
// u += alpha d + (1-alpha) gold - gnew over blocks of F frequencies, and
// the weighted squared norms of d, d - gnew and the new u.
func dictUGo(u, d, gold, gnew []complex64, wt []float64, F int, alpha float32) (dd, rr, uu float64) {
	a := complex(alpha, 0)
	b := complex(1-alpha, 0)
	for i := range u {
		w := wt[i%F]
		dv, gn := d[i], gnew[i]
		un := u[i] + a*dv + b*gold[i] - gn
		u[i] = un
		e := dv - gn
		dd += w * float64(real(dv)*real(dv)+imag(dv)*imag(dv))
		rr += w * float64(real(e)*real(e)+imag(e)*imag(e))
		uu += w * float64(real(un)*real(un)+imag(un)*imag(un))
	}
	return
}

// blockMaxAbsGo stores in dst[b] the largest |x[i]| over x[b*blk :
// (b+1)*blk] (the last block may be short).
func blockMaxAbsGo(dst, x []float32, blk int) {
	for b, i0 := 0, 0; i0 < len(x); b, i0 = b+1, i0+blk {
		var m float32
		for _, v := range x[i0:min(i0+blk, len(x))] {
			m = max(m, abs32(v))
		}
		dst[b] = m
	}
}
