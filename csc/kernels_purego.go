//go:build purego || !cgo

package csc

// kernelImpl names the implementation of the hot loops.
const kernelImpl = "go"

// fusedYU is the fused relaxation / y step / u step / residual pass; see
// fusedYUGo.
func fusedYU(x, y, u []float32, alpha, thr float32) (r, d, ax, by, uu float64) {
	return fusedYUGo(x, y, u, alpha, thr)
}

// sub stores a - b in dst.
func sub(dst, a, b []float32) { subGo(dst, a, b) }

// formSolve overwrites b (M, F) with post * (rho I + D^H D)^{-1} (dsf +
// rho b); t is scratch of sp.scratchLen() values. post folds in the
// inverse FFT's normalization.
func (sp *spectrum) formSolve(b, dsf []complex64, rho, post float32, t []complex64) {
	sp.formSolveGo(b, dsf, rho, post, t)
}

// dhs stores D^H s in dsf (M, F) for df (M, C, F) and sf (C, F).
func dhs(dsf, df, sf []complex64, M, Cc, F int) { dhsGo(dsf, df, sf, M, Cc, F) }

// dictX is the dictionary x-step kernel; see dictXGo.
func dictX(dk, yf, sf, gf, du []complex64, wt []float64, scratch []float32, M, Cc, F int, rho float32) float64 {
	return dictXGo(dk, yf, sf, gf, du, wt, M, Cc, F, rho)
}

// axpy2 adds alpha d + u to acc.
func axpy2(acc, d, u []complex64, alpha float32) { axpy2Go(acc, d, u, alpha) }

// dictU is the dictionary u-step kernel; see dictUGo.
func dictU(u, d, gold, gnew []complex64, wt []float64, F int, alpha float32) (dd, rr, uu float64) {
	return dictUGo(u, d, gold, gnew, wt, F, alpha)
}

// blockMaxAbs stores in dst[b] the largest |x[i]| of block b of blk values.
func blockMaxAbs(dst, x []float32, blk int) { blockMaxAbsGo(dst, x, blk) }
