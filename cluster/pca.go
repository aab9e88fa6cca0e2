package cluster

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/stl-defense/stl/tensor"
)

// PCAOptions configures FitPCA.
type PCAOptions struct {
	// Components is the number of principal components kept. Default 128,
	// the width the DAE latent codes are reduced to before k-means (the
	// project's reading of the official implementation, issue 5). When the
	// data has fewer dimensions (or fewer rows) than this, FitPCA keeps
	// min(D, N) components and says so in PCA.Out; this is not an error.
	Components int
}

// DefaultPCAOptions returns the defaults: 128 components.
func DefaultPCAOptions() PCAOptions { return PCAOptions{Components: 128} }

// Validate reports an *OptionError for a non-positive component count.
func (o PCAOptions) Validate() error {
	if o.Components < 1 {
		return &OptionError{Option: "PCAOptions.Components", Value: o.Components, Reason: "must be >= 1"}
	}
	return nil
}

// PCA is a fitted principal component analysis: x -> (x - Mean) Wᵀ, where
// the rows of W (Components) are the leading eigenvectors of the sample
// covariance, in decreasing order of variance. The projection is not
// whitened. A PCA is immutable after fitting and safe for concurrent use.
type PCA struct {
	// Mean is the per-dimension mean of the fitted data, length D.
	Mean []float32
	// Components holds the K unit-norm principal directions as a (K, D)
	// tensor. The sign of each is fixed so that its largest-magnitude
	// entry is positive, which makes the fit reproducible.
	Components *tensor.Tensor
	// Variance is the variance of the data along each component (the
	// covariance eigenvalue, normalized by N-1), length K.
	Variance []float64
	// TotalVariance is the trace of the covariance, so that
	// sum(Variance)/TotalVariance is the fraction of variance kept.
	TotalVariance float64
}

// In returns D, the input dimension.
func (p *PCA) In() int { return len(p.Mean) }

// Out returns K, the number of components (output dimension).
func (p *PCA) Out() int { return p.Components.Shape[0] }

// Validate checks that a PCA (for example one read from disk) is
// internally consistent: shapes agree and every value is finite.
func (p *PCA) Validate() error {
	if p == nil || p.Components == nil {
		return &DataError{Op: "PCA.Validate", Reason: "no components"}
	}
	k, d, err := rows("PCA.Validate", p.Components, 1)
	if err != nil {
		return err
	}
	if len(p.Mean) != d {
		return &DataError{Op: "PCA.Validate", Reason: fmt.Sprintf("mean has length %d, components have width %d", len(p.Mean), d)}
	}
	if p.Variance != nil && len(p.Variance) != k {
		return &DataError{Op: "PCA.Validate", Reason: fmt.Sprintf("variance has length %d, want %d", len(p.Variance), k)}
	}
	return tensor.CheckFinite(p.Mean)
}

// pcaBlock is the number of rows accumulated into the covariance at a time.
const pcaBlock = 2048

// FitPCA fits a PCA to the rows of x, an (N, D) tensor with N >= 2, by an
// eigendecomposition of the D x D sample covariance accumulated in float64
// (cost O(N D² + D³); D is a latent-code width, a few hundred at most), or,
// when N < D, by the thin SVD of the centred data (O(N² D)). It
// checks ctx between blocks of rows. It returns an *OptionError for bad
// options and a *DataError or *tensor.ShapeError for unusable data.
func FitPCA(ctx context.Context, x *tensor.Tensor, opt PCAOptions) (*PCA, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	n, d, err := rows("FitPCA", x, 2)
	if err != nil {
		return nil, err
	}
	k := min(opt.Components, d, n)

	mean := make([]float64, d)
	for i := 0; i < n; i++ {
		row := x.Data[i*d : (i+1)*d]
		for j, v := range row {
			mean[j] += float64(v)
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}

	// vals[j] and column j of vecs: variance and direction, ascending.
	var vals []float64
	var vecs mat.Dense
	var total float64
	if n < d {
		// Fewer rows than dimensions (small fits): the thin SVD of the
		// centred data, O(N² D), instead of a D x D eigenproblem.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		xc := mat.NewDense(n, d, nil)
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				v := float64(x.Data[i*d+j]) - mean[j]
				xc.Set(i, j, v)
				total += v * v
			}
		}
		total /= float64(n - 1)
		var svd mat.SVD
		if ok := svd.Factorize(xc, mat.SVDThinV); !ok {
			return nil, &DataError{Op: "FitPCA", Reason: "SVD of the centred data did not converge"}
		}
		sv := svd.Values(nil) // descending
		var v mat.Dense
		svd.VTo(&v) // d x n
		r := len(sv)
		vals = make([]float64, r)
		vecs = *mat.NewDense(d, r, nil)
		for c := 0; c < r; c++ { // reverse to ascending order
			vals[r-1-c] = sv[c] * sv[c] / float64(n-1)
			for j := 0; j < d; j++ {
				vecs.Set(j, r-1-c, v.At(j, c))
			}
		}
	} else {
		cov := mat.NewSymDense(d, nil)
		buf := make([]float64, pcaBlock*d)
		for start := 0; start < n; start += pcaBlock {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			end := min(start+pcaBlock, n)
			b := end - start
			blk := buf[:b*d]
			for i := 0; i < b; i++ {
				row := x.Data[(start+i)*d : (start+i+1)*d]
				for j, v := range row {
					blk[i*d+j] = float64(v) - mean[j]
				}
			}
			m := mat.NewDense(b, d, blk)
			cov.SymRankK(cov, 1/float64(n-1), m.T())
		}
		for j := 0; j < d; j++ {
			total += cov.At(j, j)
		}
		var eig mat.EigenSym
		if ok := eig.Factorize(cov, true); !ok {
			return nil, &DataError{Op: "FitPCA", Reason: "eigendecomposition of the covariance did not converge"}
		}
		vals = eig.Values(nil) // ascending
		eig.VectorsTo(&vecs)
	}
	cols := len(vals)

	p := &PCA{
		Mean:          make([]float32, d),
		Components:    tensor.New(k, d),
		Variance:      make([]float64, k),
		TotalVariance: total,
	}
	for j, v := range mean {
		p.Mean[j] = float32(v)
	}
	for c := 0; c < k; c++ {
		col := cols - 1 - c // descending order of variance
		p.Variance[c] = math.Max(vals[col], 0)
		// Fix the sign: largest-magnitude entry positive (first one on ties).
		best, sign := 0.0, 1.0
		for j := 0; j < d; j++ {
			if a := math.Abs(vecs.At(j, col)); a > best+1e-9 {
				best = a
				if vecs.At(j, col) < 0 {
					sign = -1
				} else {
					sign = 1
				}
			}
		}
		dst := p.Components.Data[c*d : (c+1)*d]
		for j := range dst {
			dst[j] = float32(sign * vecs.At(j, col))
		}
	}
	return p, nil
}

// Transform projects the rows of x, an (N, D) tensor, onto the components
// and returns the (N, K) result. dst is reused when it is non-nil and has
// shape (N, K); otherwise a new tensor is allocated. It returns a
// *tensor.ShapeError when x has the wrong width.
func (p *PCA) Transform(dst, x *tensor.Tensor) (*tensor.Tensor, error) {
	n, d, err := rows("PCA.Transform", x, 0)
	if err != nil {
		return nil, err
	}
	if d != p.In() {
		return nil, &tensor.ShapeError{Op: "cluster.PCA.Transform", Want: []int{-1, p.In()}, Got: x.Shape}
	}
	k := p.Out()
	if dst == nil || len(dst.Shape) != 2 || dst.Shape[0] != n || dst.Shape[1] != k || len(dst.Data) != n*k {
		dst = tensor.New(n, k)
	}
	centred := make([]float64, d)
	w := p.Components.Data
	for i := 0; i < n; i++ {
		row := x.Data[i*d : (i+1)*d]
		for j, v := range row {
			centred[j] = float64(v) - float64(p.Mean[j])
		}
		out := dst.Data[i*k : (i+1)*k]
		for c := 0; c < k; c++ {
			wc := w[c*d : (c+1)*d]
			var s float64
			for j, v := range centred {
				s += v * float64(wc[j])
			}
			out[c] = float32(s)
		}
	}
	return dst, nil
}
