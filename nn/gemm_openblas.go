//go:build cgo && !purego

package nn

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

// OpenBLASGemm is the cgo Gemm calling OpenBLAS's cblas_sgemm. OpenBLAS is
// set to one thread at package initialization: the layers split their work
// over goroutines themselves, which keeps results deterministic for a given
// thread count.
type OpenBLASGemm struct{}

var defaultGemm Gemm = OpenBLASGemm{}

func init() { C.openblas_set_num_threads(1) }

// Name implements Gemm.
func (OpenBLASGemm) Name() string { return "openblas" }

// Sgemm implements Gemm. Slice lengths are checked by the callers (internal
// invariant); empty products return without calling C.
func (OpenBLASGemm) Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		// OpenBLAS handles k == 0 (C = beta*C) but a and b may be empty.
		for i := 0; i < m; i++ {
			row := c[i*ldc : i*ldc+n]
			for j := range row {
				row[j] *= beta
			}
		}
		return
	}
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if tA {
		ta = uint32(C.CblasTrans)
	}
	if tB {
		tb = uint32(C.CblasTrans)
	}
	C.cblas_sgemm(C.CblasRowMajor, C.enum_CBLAS_TRANSPOSE(ta), C.enum_CBLAS_TRANSPOSE(tb),
		C.blasint(m), C.blasint(n), C.blasint(k), C.float(alpha),
		(*C.float)(&a[0]), C.blasint(lda), (*C.float)(&b[0]), C.blasint(ldb),
		C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}
