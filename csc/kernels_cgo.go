//go:build !purego && cgo

package csc

/*
#cgo CFLAGS: -O3 -fopenmp-simd
#include <stddef.h>
#include <stdint.h> // defines __GLIBC__ on glibc systems

// Function multiversioning: AVX-512, AVX2+FMA and baseline x86-64 clones,
// picked at load time by the CPU's features (GCC on glibc, which provides
// the ifunc resolver; elsewhere the baseline build only).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && __GNUC__ >= 11
#define KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

KERNEL
static void k_sub(float *restrict dst, const float *restrict a, const float *restrict b, ptrdiff_t n) {
	#pragma omp simd
	for (ptrdiff_t i = 0; i < n; i++) dst[i] = a[i] - b[i];
}

// Fused relaxation, soft thresholding, dual update and residual norms; see
// fusedYUGo. Partial sums in float over blocks of 256, then double.
KERNEL
static void k_fused_yu(const float *restrict x, float *restrict y, float *restrict u, ptrdiff_t n,
                       float alpha, float thr, double *restrict out) {
	float beta = 1.0f - alpha;
	double r = 0, d = 0, ax = 0, by = 0, uu = 0;
	for (ptrdiff_t i0 = 0; i0 < n; i0 += 256) {
		ptrdiff_t i1 = i0 + 256 < n ? i0 + 256 : n;
		float rr = 0, dd = 0, aa = 0, bb = 0, cc = 0;
		#pragma omp simd reduction(+:rr,dd,aa,bb,cc)
		for (ptrdiff_t i = i0; i < i1; i++) {
			float xv = x[i], yo = y[i];
			float v = alpha * xv + beta * yo + u[i];
			float un = v < -thr ? -thr : v;
			un = un > thr ? thr : un; // clamp(v) = v - soft(v, thr)
			float yn = v - un;
			y[i] = yn;
			u[i] = un;
			float e = xv - yn;
			rr += e * e;
			e = yn - yo;
			dd += e * e;
			aa += xv * xv;
			bb += yn * yn;
			cc += un * un;
		}
		r += rr; d += dd; ax += aa; by += bb; uu += cc;
	}
	out[0] = r; out[1] = d; out[2] = ax; out[3] = by; out[4] = uu;
}

// b (M, F) complex interleaved: b = dsf + rho b, then
// b = post * (b - E^H diag(1/(rho+lam)) E b) / rho at every frequency.
KERNEL
static void k_solve(float *restrict b, const float *restrict dsf, const float *restrict e,
                    const float *restrict lam, float *restrict t, ptrdiff_t M, ptrdiff_t C, ptrdiff_t F, float rho, float post) {
	ptrdiff_t F2 = 2 * F;
	for (ptrdiff_t m = 0; m < M; m++) {
		float *bm = b + m * F2;
		const float *dm = dsf + m * F2;
		#pragma omp simd
		for (ptrdiff_t i = 0; i < F2; i++) bm[i] = dm[i] + rho * bm[i];
	}
	for (ptrdiff_t c = 0; c < C; c++) {
		float *tc = t + c * F2;
		for (ptrdiff_t i = 0; i < F2; i++) tc[i] = 0;
		for (ptrdiff_t m = 0; m < M; m++) {
			const float *ec = e + (c * M + m) * F2;
			const float *bm = b + m * F2;
			#pragma omp simd
			for (ptrdiff_t k = 0; k < F; k++) {
				float er = ec[2*k], ei = ec[2*k+1], br = bm[2*k], bi = bm[2*k+1];
				tc[2*k] += er * br - ei * bi;
				tc[2*k+1] += er * bi + ei * br;
			}
		}
		const float *lc = lam + c * F;
		#pragma omp simd
		for (ptrdiff_t k = 0; k < F; k++) {
			float s = 1.0f / (rho + lc[k]);
			tc[2*k] *= s;
			tc[2*k+1] *= s;
		}
	}
	float inv = post / rho;
	for (ptrdiff_t m = 0; m < M; m++) {
		float *bm = b + m * F2;
		for (ptrdiff_t c = 0; c < C; c++) {
			const float *ec = e + (c * M + m) * F2;
			const float *tc = t + c * F2;
			#pragma omp simd
			for (ptrdiff_t k = 0; k < F; k++) {
				float er = ec[2*k], ei = ec[2*k+1], tr = tc[2*k], ti = tc[2*k+1];
				// conj(e) t
				bm[2*k] -= er * tr + ei * ti;
				bm[2*k+1] -= er * ti - ei * tr;
			}
		}
		#pragma omp simd
		for (ptrdiff_t i = 0; i < F2; i++) bm[i] *= inv;
	}
}

// D^H s: dsf[m] = sum_c conj(df[m,c]) sf[c], complex interleaved.
KERNEL
static void k_dhs(float *restrict dsf, const float *restrict df, const float *restrict sf,
                  ptrdiff_t M, ptrdiff_t C, ptrdiff_t F) {
	ptrdiff_t F2 = 2 * F;
	for (ptrdiff_t m = 0; m < M; m++) {
		float *o = dsf + m * F2;
		for (ptrdiff_t i = 0; i < F2; i++) o[i] = 0;
		for (ptrdiff_t c = 0; c < C; c++) {
			const float *d = df + (m * C + c) * F2;
			const float *s = sf + c * F2;
			#pragma omp simd
			for (ptrdiff_t k = 0; k < F; k++) {
				float dr = d[2*k], di = d[2*k+1], sr = s[2*k], si = s[2*k+1];
				o[2*k] += dr * sr + di * si;
				o[2*k+1] += dr * si - di * sr;
			}
		}
	}
}

// Dictionary x-step of one image (see learner.dictXStep): for each channel
// c and frequency k, with a = yf[:, k], b_m = conj(a_m) s_c + rho (g_cm -
// u_cm), d = (b - conj(a) (a^T b) / (rho + |a|^2)) / rho. Also returns
// sum_k w_k |sum_m g_cm a_m - s_c|^2 over channels. aa, t, res: scratch of
// F, 2F, 2F floats.
KERNEL
static double k_dict_x(float *restrict dk, const float *restrict yf, const float *restrict sf,
                       const float *restrict gf, const float *restrict du, const double *restrict wt,
                       float *restrict aa, float *restrict t, float *restrict res,
                       ptrdiff_t M, ptrdiff_t C, ptrdiff_t F, float rho) {
	ptrdiff_t F2 = 2 * F;
	for (ptrdiff_t k = 0; k < F; k++) aa[k] = 0;
	for (ptrdiff_t m = 0; m < M; m++) {
		const float *a = yf + m * F2;
		#pragma omp simd
		for (ptrdiff_t k = 0; k < F; k++) aa[k] += a[2*k] * a[2*k] + a[2*k+1] * a[2*k+1];
	}
	for (ptrdiff_t k = 0; k < F; k++) aa[k] = 1.0f / (rho + aa[k]);
	float inv = 1.0f / rho;
	double dfid = 0;
	for (ptrdiff_t c = 0; c < C; c++) {
		const float *s = sf + c * F2;
		for (ptrdiff_t i = 0; i < F2; i++) { t[i] = 0; res[i] = 0; }
		for (ptrdiff_t m = 0; m < M; m++) {
			const float *a = yf + m * F2;
			const float *g = gf + (c * M + m) * F2;
			const float *u = du + (c * M + m) * F2;
			float *d = dk + (c * M + m) * F2;
			#pragma omp simd
			for (ptrdiff_t k = 0; k < F; k++) {
				float ar = a[2*k], ai = a[2*k+1], gr = g[2*k], gi = g[2*k+1], sr = s[2*k], si = s[2*k+1];
				res[2*k] += gr * ar - gi * ai;
				res[2*k+1] += gr * ai + gi * ar;
				// b = conj(a) s + rho (g - u)
				float br = ar * sr + ai * si + rho * (gr - u[2*k]);
				float bi = ar * si - ai * sr + rho * (gi - u[2*k+1]);
				d[2*k] = br;
				d[2*k+1] = bi;
				t[2*k] += ar * br - ai * bi;
				t[2*k+1] += ar * bi + ai * br;
			}
		}
		for (ptrdiff_t k = 0; k < F; k++) {
			float er = res[2*k] - s[2*k], ei = res[2*k+1] - s[2*k+1];
			dfid += wt[k] * (double)(er * er + ei * ei);
			t[2*k] *= aa[k];
			t[2*k+1] *= aa[k];
		}
		for (ptrdiff_t m = 0; m < M; m++) {
			const float *a = yf + m * F2;
			float *d = dk + (c * M + m) * F2;
			#pragma omp simd
			for (ptrdiff_t k = 0; k < F; k++) {
				float ar = a[2*k], ai = a[2*k+1], tr = t[2*k], ti = t[2*k+1];
				// d = (d - conj(a) t) / rho
				d[2*k] = (d[2*k] - (ar * tr + ai * ti)) * inv;
				d[2*k+1] = (d[2*k+1] - (ar * ti - ai * tr)) * inv;
			}
		}
	}
	return dfid;
}

// acc += alpha d + u over n complex values (2n floats).
KERNEL
static void k_axpy2(float *restrict acc, const float *restrict d, const float *restrict u, ptrdiff_t n2, float alpha) {
	#pragma omp simd
	for (ptrdiff_t i = 0; i < n2; i++) acc[i] += alpha * d[i] + u[i];
}

// Dictionary u-step of one image over B blocks of F complex values:
// u += alpha d + beta gold - gnew; out = weighted sums of |d|^2,
// |d - gnew|^2, |u|^2 (weights wt per frequency).
KERNEL
static void k_dict_u(float *restrict u, const float *restrict d, const float *restrict gold,
                     const float *restrict gnew, const double *restrict wt, ptrdiff_t B, ptrdiff_t F,
                     float alpha, double *restrict out) {
	float beta = 1.0f - alpha;
	double dd = 0, rr = 0, uu = 0;
	for (ptrdiff_t b = 0; b < B; b++) {
		ptrdiff_t o = 2 * b * F;
		for (ptrdiff_t k = 0; k < F; k++) {
			ptrdiff_t i = o + 2 * k;
			float dr = d[i], di = d[i+1], gr = gnew[i], gi = gnew[i+1];
			float ur = u[i] + alpha * dr + beta * gold[i] - gr;
			float ui = u[i+1] + alpha * di + beta * gold[i+1] - gi;
			u[i] = ur;
			u[i+1] = ui;
			float er = dr - gr, ei = di - gi;
			double w = wt[k];
			dd += w * (double)(dr * dr + di * di);
			rr += w * (double)(er * er + ei * ei);
			uu += w * (double)(ur * ur + ui * ui);
		}
	}
	out[0] = dd; out[1] = rr; out[2] = uu;
}

// dst[b] = max |x[b*blk : (b+1)*blk]| (the last block may be short).
KERNEL
static void k_block_max_abs(float *restrict dst, const float *restrict x, ptrdiff_t n, ptrdiff_t blk) {
	for (ptrdiff_t b = 0, i0 = 0; i0 < n; b++, i0 += blk) {
		ptrdiff_t i1 = i0 + blk < n ? i0 + blk : n;
		float m = 0;
		#pragma omp simd reduction(max:m)
		for (ptrdiff_t i = i0; i < i1; i++) {
			float v = x[i] < 0 ? -x[i] : x[i];
			m = v > m ? v : m;
		}
		dst[b] = m;
	}
}
*/
import "C"

import "unsafe"

// kernelImpl names the implementation of the hot loops.
const kernelImpl = "c"

// fusedYU is the fused relaxation / y step / u step / residual pass; see
// fusedYUGo. Lengths are checked by the callers (internal invariant).
func fusedYU(x, y, u []float32, alpha, thr float32) (r, d, ax, by, uu float64) {
	if len(y) < len(x) || len(u) < len(x) {
		panic("csc: fusedYU: short slices")
	}
	if len(x) == 0 {
		return
	}
	var out [5]C.double
	C.k_fused_yu((*C.float)(&x[0]), (*C.float)(&y[0]), (*C.float)(&u[0]), C.ptrdiff_t(len(x)),
		C.float(alpha), C.float(thr), &out[0])
	return float64(out[0]), float64(out[1]), float64(out[2]), float64(out[3]), float64(out[4])
}

// sub stores a - b in dst.
func sub(dst, a, b []float32) {
	if len(a) < len(dst) || len(b) < len(dst) {
		panic("csc: sub: short slices")
	}
	if len(dst) == 0 {
		return
	}
	C.k_sub((*C.float)(&dst[0]), (*C.float)(&a[0]), (*C.float)(&b[0]), C.ptrdiff_t(len(dst)))
}

// formSolve overwrites b (M, F) with post * (rho I + D^H D)^{-1} (dsf +
// rho b); t is scratch of sp.scratchLen() values. post folds in the
// inverse FFT's normalization.
func (sp *spectrum) formSolve(b, dsf []complex64, rho, post float32, t []complex64) {
	M, Cc, F := sp.m, sp.c, sp.f
	if len(b) < M*F || len(dsf) < M*F || len(t) < sp.scratchLen() {
		panic("csc: formSolve: short slices")
	}
	C.k_solve((*C.float)(unsafe.Pointer(&b[0])), (*C.float)(unsafe.Pointer(&dsf[0])),
		(*C.float)(unsafe.Pointer(&sp.e[0])), (*C.float)(unsafe.Pointer(&sp.lam[0])),
		(*C.float)(unsafe.Pointer(&t[0])), C.ptrdiff_t(M), C.ptrdiff_t(Cc), C.ptrdiff_t(F), C.float(rho), C.float(post))
}

func cf(p []complex64) *C.float { return (*C.float)(unsafe.Pointer(&p[0])) }

// dhs stores D^H s in dsf (M, F) for df (M, C, F) and sf (C, F).
func dhs(dsf, df, sf []complex64, M, Cc, F int) {
	if len(dsf) < M*F || len(df) < M*Cc*F || len(sf) < Cc*F {
		panic("csc: dhs: short slices")
	}
	C.k_dhs(cf(dsf), cf(df), cf(sf), C.ptrdiff_t(M), C.ptrdiff_t(Cc), C.ptrdiff_t(F))
}

// dictX is the dictionary x-step kernel; see dictXGo.
func dictX(dk, yf, sf, gf, du []complex64, wt []float64, scratch []float32, M, Cc, F int, rho float32) float64 {
	if len(dk) < Cc*M*F || len(du) < Cc*M*F || len(gf) < Cc*M*F || len(yf) < M*F || len(sf) < Cc*F ||
		len(wt) < F || len(scratch) < 5*F {
		panic("csc: dictX: short slices")
	}
	return float64(C.k_dict_x(cf(dk), cf(yf), cf(sf), cf(gf), cf(du), (*C.double)(&wt[0]),
		(*C.float)(&scratch[0]), (*C.float)(&scratch[F]), (*C.float)(&scratch[3*F]),
		C.ptrdiff_t(M), C.ptrdiff_t(Cc), C.ptrdiff_t(F), C.float(rho)))
}

// axpy2 adds alpha d + u to acc.
func axpy2(acc, d, u []complex64, alpha float32) {
	if len(d) < len(acc) || len(u) < len(acc) {
		panic("csc: axpy2: short slices")
	}
	if len(acc) == 0 {
		return
	}
	C.k_axpy2(cf(acc), cf(d), cf(u), C.ptrdiff_t(2*len(acc)), C.float(alpha))
}

// dictU is the dictionary u-step kernel; see dictUGo.
func dictU(u, d, gold, gnew []complex64, wt []float64, F int, alpha float32) (dd, rr, uu float64) {
	n := len(u)
	if len(d) < n || len(gold) < n || len(gnew) < n || len(wt) < F || n%F != 0 || n == 0 {
		panic("csc: dictU: bad slices")
	}
	var out [3]C.double
	C.k_dict_u(cf(u), cf(d), cf(gold), cf(gnew), (*C.double)(&wt[0]), C.ptrdiff_t(n/F), C.ptrdiff_t(F), C.float(alpha), &out[0])
	return float64(out[0]), float64(out[1]), float64(out[2])
}

// blockMaxAbs stores in dst[b] the largest |x[i]| of block b of blk values
// (see blockMaxAbsGo).
func blockMaxAbs(dst, x []float32, blk int) {
	if blk < 1 || len(dst) < (len(x)+blk-1)/blk {
		panic("csc: blockMaxAbs: bad slices")
	}
	if len(x) == 0 {
		return
	}
	C.k_block_max_abs((*C.float)(&dst[0]), (*C.float)(&x[0]), C.ptrdiff_t(len(x)), C.ptrdiff_t(blk))
}
