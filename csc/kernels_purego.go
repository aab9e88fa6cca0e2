//go:build purego || !cgo

package csc

// fusedYU is the fused relaxation / y step / u step / residual pass; see
// fusedYUGo.
func fusedYU(x, y, u []float32, alpha, thr float32) (r, d, ax, by, uu float64) {
	return fusedYUGo(x, y, u, alpha, thr)
}
