package cluster

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// KMeansOptions configures FitKMeans.
type KMeansOptions struct {
	// K is the number of clusters. Default 4, the paper's setting for
	// CIFAR-10 and ImageNet-10 (section 5.1; 10 for full ImageNet).
	K int
	// Restarts is the number of independent k-means++ seedings; the run
	// with the lowest inertia wins. Default 10 (scikit-learn's classic
	// n_init; the paper does not give its value).
	Restarts int
	// MaxIter bounds the Lloyd iterations of one restart. Default 300.
	MaxIter int
	// Tol stops a restart when the summed squared movement of the centres
	// in one iteration is at most Tol times the mean per-dimension variance
	// of the data (scikit-learn's rule). A restart also stops as soon as no
	// label changes. Default 1e-4.
	Tol float64
	// Seed seeds the PCG source of the k-means++ draws; restart r uses the
	// stream (Seed, r), so results do not depend on anything else.
	Seed uint64
}

// DefaultKMeansOptions returns K 4, 10 restarts, 300 iterations, Tol 1e-4,
// Seed 1.
func DefaultKMeansOptions() KMeansOptions {
	return KMeansOptions{K: 4, Restarts: 10, MaxIter: 300, Tol: 1e-4, Seed: 1}
}

// Validate reports an *OptionError for any option out of range.
func (o KMeansOptions) Validate() error {
	switch {
	case o.K < 1:
		return &OptionError{Option: "KMeansOptions.K", Value: o.K, Reason: "must be >= 1"}
	case o.Restarts < 1:
		return &OptionError{Option: "KMeansOptions.Restarts", Value: o.Restarts, Reason: "must be >= 1"}
	case o.MaxIter < 1:
		return &OptionError{Option: "KMeansOptions.MaxIter", Value: o.MaxIter, Reason: "must be >= 1"}
	case !(o.Tol >= 0) || math.IsInf(o.Tol, 0):
		return &OptionError{Option: "KMeansOptions.Tol", Value: o.Tol, Reason: "must be finite and >= 0"}
	}
	return nil
}

// KMeans is the result of FitKMeans: the winning restart's centres and the
// labels of the fitted rows. It is safe for concurrent use once fitted.
type KMeans struct {
	// Centers is the (K, D) tensor of cluster centres.
	Centers *tensor.Tensor
	// Labels gives the cluster, in [0, K), of every fitted row.
	Labels []int
	// Sizes gives the number of fitted rows in each cluster.
	Sizes []int
	// Inertia is the sum of squared distances of the rows to their centre.
	Inertia float64
	// Restart is the index of the winning restart, Iterations its number of
	// Lloyd iterations, and Converged whether it met the stopping rule
	// before MaxIter.
	Restart, Iterations int
	Converged           bool
}

// FitKMeans clusters the rows of x, an (N, D) tensor with N >= K, by Lloyd's
// algorithm from k-means++ seedings (Arthur & Vassilvitskii 2007), keeping
// the restart of lowest inertia (the first on ties). A cluster that empties
// during the iterations is re-seeded with the row farthest from its centre.
// Nearest-centre ties go to the lower centre index. The result is a pure
// function of x and opt. It checks ctx once per iteration and reports one
// unit per finished restart to rep (stage "k-means"); rep may be nil.
func FitKMeans(ctx context.Context, x *tensor.Tensor, opt KMeansOptions, rep progress.Reporter) (*KMeans, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	n, d, err := rows("FitKMeans", x, opt.K)
	if err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	tol := opt.Tol * meanVariance(x.Data, n, d)

	var best *KMeans
	for r := 0; r < opt.Restarts; r++ {
		rng := rand.New(rand.NewPCG(opt.Seed, uint64(r)))
		centers := seedPlusPlus(x.Data, n, d, opt.K, rng)
		km, err := lloyd(ctx, x.Data, n, d, centers, opt.K, opt.MaxIter, tol)
		if err != nil {
			return nil, err
		}
		km.Restart = r
		if best == nil || km.Inertia < best.Inertia {
			best = km
		}
		rep.Report("k-means", r+1, opt.Restarts, fmt.Sprintf("inertia %.4g", best.Inertia))
	}
	return best, nil
}

func meanVariance(x []float32, n, d int) float64 {
	var tot float64
	for j := 0; j < d; j++ {
		var s, s2 float64
		for i := 0; i < n; i++ {
			v := float64(x[i*d+j])
			s += v
			s2 += v * v
		}
		m := s / float64(n)
		tot += s2/float64(n) - m*m
	}
	return math.Max(tot/float64(d), 0)
}

// seedPlusPlus draws k initial centres: the first uniformly, each next one
// with probability proportional to the squared distance to the nearest
// centre chosen so far (uniformly when every distance is zero).
func seedPlusPlus(x []float32, n, d, k int, rng *rand.Rand) []float64 {
	centers := make([]float64, k*d)
	pick := func(c, i int) {
		for j := 0; j < d; j++ {
			centers[c*d+j] = float64(x[i*d+j])
		}
	}
	pick(0, rng.IntN(n))
	dist := make([]float64, n)
	for i := range dist {
		dist[i] = sqDist(x[i*d:(i+1)*d], centers[:d])
	}
	for c := 1; c < k; c++ {
		var sum float64
		for _, v := range dist {
			sum += v
		}
		var idx int
		if sum <= 0 {
			idx = rng.IntN(n)
		} else {
			u := rng.Float64() * sum
			idx = n - 1
			for i, v := range dist {
				u -= v
				if u < 0 {
					idx = i
					break
				}
			}
		}
		pick(c, idx)
		cc := centers[c*d : (c+1)*d]
		for i := range dist {
			if v := sqDist(x[i*d:(i+1)*d], cc); v < dist[i] {
				dist[i] = v
			}
		}
	}
	return centers
}

// nearest returns the index of the centre nearest to row (lowest index on
// ties) and the squared distance.
func nearest(row []float32, centers []float64, k, d int) (int, float64) {
	bi, bd := 0, math.Inf(1)
	for c := 0; c < k; c++ {
		if v := sqDist(row, centers[c*d:(c+1)*d]); v < bd {
			bi, bd = c, v
		}
	}
	return bi, bd
}

func lloyd(ctx context.Context, x []float32, n, d int, centers []float64, k, maxIter int, tol float64) (*KMeans, error) {
	labels := make([]int, n)
	for i := range labels {
		labels[i] = -1
	}
	dist := make([]float64, n)
	sums := make([]float64, k*d)
	sizes := make([]int, k)
	km := &KMeans{}
	for it := 1; it <= maxIter; it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		changed := 0
		for i := 0; i < n; i++ {
			c, v := nearest(x[i*d:(i+1)*d], centers, k, d)
			if c != labels[i] {
				changed++
				labels[i] = c
			}
			dist[i] = v
		}
		km.Iterations = it
		if changed == 0 {
			km.Converged = true
			break
		}
		clear(sums)
		clear(sizes)
		for i := 0; i < n; i++ {
			c := labels[i]
			sizes[c]++
			s := sums[c*d : (c+1)*d]
			for j, v := range x[i*d : (i+1)*d] {
				s[j] += float64(v)
			}
		}
		// Re-seed empty clusters with the farthest rows, one distinct row each.
		for c := 0; c < k; c++ {
			if sizes[c] > 0 {
				continue
			}
			far := 0
			for i := 1; i < n; i++ {
				if dist[i] > dist[far] {
					far = i
				}
			}
			old := labels[far]
			if sizes[old] > 1 {
				sizes[old]--
				for j, v := range x[far*d : (far+1)*d] {
					sums[old*d+j] -= float64(v)
				}
				labels[far] = c
				sizes[c] = 1
				for j, v := range x[far*d : (far+1)*d] {
					sums[c*d+j] = float64(v)
				}
			}
			dist[far] = 0
		}
		var shift float64
		for c := 0; c < k; c++ {
			if sizes[c] == 0 {
				continue
			}
			inv := 1 / float64(sizes[c])
			for j := 0; j < d; j++ {
				v := sums[c*d+j] * inv
				t := v - centers[c*d+j]
				shift += t * t
				centers[c*d+j] = v
			}
		}
		if shift <= tol {
			km.Converged = true
			break
		}
	}
	// Labels and inertia must match the final centres.
	for i := 0; i < n; i++ {
		labels[i], dist[i] = nearest(x[i*d:(i+1)*d], centers, k, d)
	}
	km.Labels = labels
	km.Sizes = make([]int, k)
	for i, c := range labels {
		km.Sizes[c]++
		km.Inertia += dist[i]
	}
	km.Centers = tensor.New(k, d)
	for i, v := range centers {
		km.Centers.Data[i] = float32(v)
	}
	return km, nil
}

// Predict returns the nearest centre (lowest index on ties) of every row of
// x, an (N, D) tensor, in dst (reused when it has length N).
func (m *KMeans) Predict(dst []int, x *tensor.Tensor) ([]int, error) {
	n, d, err := rows("KMeans.Predict", x, 0)
	if err != nil {
		return nil, err
	}
	k, cd := m.Centers.Shape[0], m.Centers.Shape[1]
	if d != cd {
		return nil, &tensor.ShapeError{Op: "cluster.KMeans.Predict", Want: []int{-1, cd}, Got: x.Shape}
	}
	centers := make([]float64, len(m.Centers.Data))
	for i, v := range m.Centers.Data {
		centers[i] = float64(v)
	}
	if len(dst) != n {
		dst = make([]int, n)
	}
	for i := 0; i < n; i++ {
		dst[i], _ = nearest(x.Data[i*d:(i+1)*d], centers, k, d)
	}
	return dst, nil
}

// FitKMeansFrom clusters the rows of x, an (N, D) tensor with N >= K, by
// Lloyd's algorithm started from centers, a (K, D) tensor, instead of
// k-means++ seedings: one run, with opt.K (which must equal K), opt.MaxIter
// and opt.Tol as in FitKMeans; opt.Restarts and opt.Seed are not used. It
// draws no random numbers: the result is a pure function of x, centers and
// opt, and cluster k of the result is the one grown from centre k (the
// transductive assignment of the stratified STL refits the training
// clustering on the training and test codes this way). It checks ctx once
// per iteration.
func FitKMeansFrom(ctx context.Context, x, centers *tensor.Tensor, opt KMeansOptions) (*KMeans, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	n, d, err := rows("FitKMeansFrom", x, opt.K)
	if err != nil {
		return nil, err
	}
	k, cd, err := rows("FitKMeansFrom centres", centers, 1)
	if err != nil {
		return nil, err
	}
	if k != opt.K || cd != d {
		return nil, &tensor.ShapeError{Op: "cluster.FitKMeansFrom centres", Want: []int{opt.K, d}, Got: centers.Shape}
	}
	init := make([]float64, k*d)
	for i, v := range centers.Data {
		init[i] = float64(v)
	}
	return lloyd(ctx, x.Data, n, d, init, k, opt.MaxIter, opt.Tol*meanVariance(x.Data, n, d))
}
