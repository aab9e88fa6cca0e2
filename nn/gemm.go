package nn

// Gemm computes single-precision general matrix products on row-major
// matrices, C = alpha * op(A) * op(B) + beta * C, where op(A) is m x k and
// op(B) is k x n. tA and tB select the transposed operand; lda, ldb and ldc
// are the row strides of the stored matrices. Lengths are the caller's
// responsibility (internal invariant). Implementations are safe for
// concurrent use on disjoint C.
type Gemm interface {
	Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	// Name identifies the implementation in benchmarks and errors.
	Name() string
}

// DefaultGemm is the fastest Gemm of the build: OpenBLAS (single-threaded,
// the layers parallelize themselves) in the default cgo build, gonum's
// pure-Go SGEMM under the purego build tag.
func DefaultGemm() Gemm { return defaultGemm }
