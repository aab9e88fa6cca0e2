//go:build !cgo || purego

package baseline

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// quiltScores sets s[i*m+j] = <db_i, q_j> for the n rows of db and the m
// rows of q, all of length d, row-major, with gonum's pure-Go sgemm.
func quiltScores(s, db, q []float32, n, m, d int) {
	if n == 0 || m == 0 || d == 0 {
		return
	}
	a := blas32.General{Rows: n, Cols: d, Stride: d, Data: db[:n*d]}
	b := blas32.General{Rows: m, Cols: d, Stride: d, Data: q[:m*d]}
	c := blas32.General{Rows: n, Cols: m, Stride: m, Data: s[:n*m]}
	blas32.Gemm(blas.NoTrans, blas.Trans, 1, a, b, 0, c)
}
