package cluster

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/stl-defense/stl/tensor"
)

// KNNOptions configures a k-nearest-neighbour vote.
type KNNOptions struct {
	// K is the number of nearest training codes that vote. The paper
	// (section 3.4) does not give its value; the default 10 is this
	// project's choice: large enough that a single outlying neighbour of an
	// adversarial image cannot flip the cluster, small next to the
	// thousands of codes per cluster.
	K int
}

// DefaultKNNOptions returns K = 10.
func DefaultKNNOptions() KNNOptions { return KNNOptions{K: 10} }

// Validate reports an *OptionError for K < 1.
func (o KNNOptions) Validate() error {
	if o.K < 1 {
		return &OptionError{Option: "KNNOptions.K", Value: o.K, Reason: "must be >= 1"}
	}
	return nil
}

// KNN assigns a query to the label most common among its K nearest
// reference rows in Euclidean distance (section 3.4: "find the k-nearest
// neighbors in the training image dataset. Then we vote for the cluster").
//
// Ties are broken deterministically: neighbours at equal distance are
// ranked by lower reference index, and among labels with equal votes the
// one whose best-ranked neighbour is nearest wins. A KNN is immutable and
// safe for concurrent use.
type KNN struct {
	k, d    int
	classes int
	points  *mat.Dense // (N, D) float64 copy of the reference rows
	norms   []float64  // squared norm of each reference row
	labels  []int
}

// NewKNN builds a vote over the rows of points, an (N, D) tensor, with
// labels[i] >= 0 the label of row i. It copies its inputs. It returns an
// *OptionError for bad options and a *DataError when labels do not match
// the rows or K exceeds N.
func NewKNN(points *tensor.Tensor, labels []int, opt KNNOptions) (*KNN, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	n, d, err := rows("NewKNN", points, 1)
	if err != nil {
		return nil, err
	}
	if len(labels) != n {
		return nil, &DataError{Op: "NewKNN", Reason: fmt.Sprintf("%d labels for %d rows", len(labels), n)}
	}
	if opt.K > n {
		return nil, &DataError{Op: "NewKNN", Reason: fmt.Sprintf("K = %d exceeds the %d reference rows", opt.K, n)}
	}
	v := &KNN{k: opt.K, d: d, points: mat.NewDense(n, d, nil), norms: make([]float64, n), labels: append([]int(nil), labels...)}
	for i, l := range labels {
		if l < 0 {
			return nil, &DataError{Op: "NewKNN", Reason: fmt.Sprintf("negative label %d at row %d", l, i)}
		}
		v.classes = max(v.classes, l+1)
	}
	raw := v.points.RawMatrix().Data
	for i := 0; i < n; i++ {
		var s float64
		for j := 0; j < d; j++ {
			x := float64(points.Data[i*d+j])
			raw[i*d+j] = x
			s += x * x
		}
		v.norms[i] = s
	}
	return v, nil
}

// K returns the number of voting neighbours.
func (v *KNN) K() int { return v.k }

// Dim returns the width D of the reference rows.
func (v *KNN) Dim() int { return v.d }

// knnBlock is the number of queries whose distances to all reference rows
// are computed by one matrix product.
const knnBlock = 64

// Vote returns the voted label of every row of q, an (M, D) tensor, in dst
// (reused when it has length M). Distances come from one matrix product per
// block of queries, ||p||² - 2 q·p, in float64. It returns a
// *tensor.ShapeError when q has the wrong width.
func (v *KNN) Vote(dst []int, q *tensor.Tensor) ([]int, error) {
	m, _, err := v.checkQuery("Vote", q)
	if err != nil {
		return nil, err
	}
	if len(dst) != m {
		dst = make([]int, m)
	}
	votes := make([]int, v.classes)
	first := make([]int, v.classes)
	v.neighbours(q, func(row int, idx []int) {
		clear(votes)
		for r, p := range idx {
			l := v.labels[p]
			if votes[l] == 0 {
				first[l] = r
			}
			votes[l]++
		}
		best := v.labels[idx[0]]
		for l, c := range votes {
			if c > votes[best] || (c == votes[best] && c > 0 && first[l] < first[best]) {
				best = l
			}
		}
		dst[row] = best
	})
	return dst, nil
}

// Shares returns, for every row of q (an (M, D) tensor), the fraction of
// its K nearest reference rows carrying each label: an (M, L) tensor, L
// the number of labels (largest label + 1), rows summing to 1. The
// neighbours are Vote's. It returns a *tensor.ShapeError when q has the
// wrong width.
func (v *KNN) Shares(q *tensor.Tensor) (*tensor.Tensor, error) {
	m, _, err := v.checkQuery("Shares", q)
	if err != nil {
		return nil, err
	}
	out := tensor.New(m, v.classes)
	v.neighbours(q, func(row int, idx []int) {
		for _, p := range idx {
			out.Data[row*v.classes+v.labels[p]] += 1 / float32(len(idx))
		}
	})
	return out, nil
}

// checkQuery checks that q is an (M, D) tensor of the reference rows'
// width.
func (v *KNN) checkQuery(op string, q *tensor.Tensor) (m, d int, err error) {
	if m, d, err = rows("KNN."+op, q, 0); err != nil {
		return 0, 0, err
	}
	if d != v.d {
		return 0, 0, &tensor.ShapeError{Op: "cluster.KNN." + op, Want: []int{-1, v.d}, Got: q.Shape}
	}
	return m, d, nil
}

// neighbours calls fn with every row of q (checked by checkQuery) and the
// indices of its K nearest reference rows, nearest first, neighbours at
// equal distance ranked by lower index. idx is reused between calls.
func (v *KNN) neighbours(q *tensor.Tensor, fn func(row int, idx []int)) {
	m, d := q.Shape[0], v.d
	n := len(v.norms)
	qb := mat.NewDense(knnBlock, d, nil)
	g := mat.NewDense(knnBlock, n, nil)
	idx := make([]int, v.k)
	key := make([]float64, v.k)
	for start := 0; start < m; start += knnBlock {
		b := min(knnBlock, m-start)
		qs := qb.Slice(0, b, 0, d).(*mat.Dense)
		for i := 0; i < b; i++ {
			for j := 0; j < d; j++ {
				qs.Set(i, j, float64(q.Data[(start+i)*d+j]))
			}
		}
		gs := g.Slice(0, b, 0, n).(*mat.Dense)
		gs.Mul(qs, v.points.T())
		for i := 0; i < b; i++ {
			row := gs.RawRowView(i)
			// Keep the k smallest keys sorted; strict comparison keeps the
			// lower index first among equal distances.
			cnt := 0
			for p, dot := range row {
				kv := v.norms[p] - 2*dot
				if cnt == v.k && kv >= key[cnt-1] {
					continue
				}
				pos := cnt
				if cnt < v.k {
					cnt++
				} else {
					pos = v.k - 1
				}
				for pos > 0 && key[pos-1] > kv {
					key[pos], idx[pos] = key[pos-1], idx[pos-1]
					pos--
				}
				key[pos], idx[pos] = kv, p
			}
			fn(start+i, idx[:cnt])
		}
	}
}
