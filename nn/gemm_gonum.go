package nn

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// GonumGemm is the pure-Go Gemm backed by gonum's blas/gonum SGEMM. It is
// available in both builds so that the conformance tests can compare it
// with OpenBLAS.
type GonumGemm struct{}

// Name implements Gemm.
func (GonumGemm) Name() string { return "gonum" }

// Sgemm implements Gemm.
func (GonumGemm) Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
