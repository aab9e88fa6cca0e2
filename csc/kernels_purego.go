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
// rho b); t is scratch of C*F values. post folds in the inverse FFT's
// normalization.
func (sp *spectrum) formSolve(b, dsf []complex64, rho, post float32, t []complex64) {
	sp.formSolveGo(b, dsf, rho, post, t)
}
