//go:build cgo && !purego

package baseline

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

// quiltScores sets s[i*m+j] = <db_i, q_j> for the n rows of db and the m
// rows of q, all of length d, row-major, with OpenBLAS's cblas_sgemm. The
// lengths are checked here, before the cgo call.
func quiltScores(s, db, q []float32, n, m, d int) {
	if n == 0 || m == 0 || d == 0 {
		return
	}
	if len(s) < n*m || len(db) < n*d || len(q) < m*d {
		panic("defense: quiltScores: slice too short") // internal invariant
	}
	C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasTrans,
		C.blasint(n), C.blasint(m), C.blasint(d), 1,
		(*C.float)(&db[0]), C.blasint(d), (*C.float)(&q[0]), C.blasint(d),
		0, (*C.float)(&s[0]), C.blasint(m))
}
