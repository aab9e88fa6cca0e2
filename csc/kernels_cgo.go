//go:build !purego && cgo

package csc

/*
#cgo CFLAGS: -O3 -fopenmp-simd
#include <stddef.h>

// Function multiversioning: AVX-512, AVX2+FMA and baseline x86-64 clones,
// picked at load time by the CPU's features.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
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
// rho b); t is scratch of C*F values. post folds in the inverse FFT's
// normalization.
func (sp *spectrum) formSolve(b, dsf []complex64, rho, post float32, t []complex64) {
	M, Cc, F := sp.m, sp.c, sp.f
	if len(b) < M*F || len(dsf) < M*F || len(t) < Cc*F {
		panic("csc: formSolve: short slices")
	}
	C.k_solve((*C.float)(unsafe.Pointer(&b[0])), (*C.float)(unsafe.Pointer(&dsf[0])),
		(*C.float)(unsafe.Pointer(&sp.e[0])), (*C.float)(unsafe.Pointer(&sp.lam[0])),
		(*C.float)(unsafe.Pointer(&t[0])), C.ptrdiff_t(M), C.ptrdiff_t(Cc), C.ptrdiff_t(F), C.float(rho), C.float(post))
}
