package cluster

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

func mustTensor(t *testing.T, data []float32, shape ...int) *tensor.Tensor {
	t.Helper()
	x, err := tensor.FromData(data, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// subspaceData draws n points mean + sum_c s_c g_c u_c + noise, with u_c
// orthonormal directions in R^d.
func subspaceData(n, d int, stds []float64, noise float64, seed uint64) (x *tensor.Tensor, basis [][]float64, mean []float64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	// Orthonormal basis by Gram-Schmidt on random vectors.
	for len(basis) < len(stds) {
		v := make([]float64, d)
		for j := range v {
			v[j] = rng.NormFloat64()
		}
		for _, u := range basis {
			var dot float64
			for j := range v {
				dot += v[j] * u[j]
			}
			for j := range v {
				v[j] -= dot * u[j]
			}
		}
		var nn float64
		for _, a := range v {
			nn += a * a
		}
		nn = math.Sqrt(nn)
		for j := range v {
			v[j] /= nn
		}
		basis = append(basis, v)
	}
	mean = make([]float64, d)
	for j := range mean {
		mean[j] = float64(j) - 3
	}
	x = tensor.New(n, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			x.Data[i*d+j] = float32(mean[j] + noise*rng.NormFloat64())
		}
		for c, s := range stds {
			g := s * rng.NormFloat64()
			for j := 0; j < d; j++ {
				x.Data[i*d+j] += float32(g * basis[c][j])
			}
		}
	}
	return x, basis, mean
}

func TestPCARecoversSubspace(t *testing.T) {
	stds := []float64{5, 3, 1}
	x, basis, mean := subspaceData(4000, 10, stds, 0.01, 1)
	p, err := FitPCA(context.Background(), x, PCAOptions{Components: 3})
	if err != nil {
		t.Fatal(err)
	}
	if p.In() != 10 || p.Out() != 3 {
		t.Fatalf("In, Out = %d, %d, want 10, 3", p.In(), p.Out())
	}
	for j, m := range mean {
		if math.Abs(float64(p.Mean[j])-m) > 0.3 {
			t.Errorf("Mean[%d] = %g, want %g", j, p.Mean[j], m)
		}
	}
	for c := range stds {
		// |<w_c, u_c>| close to 1: the c-th component is the c-th direction.
		var dot float64
		for j := 0; j < 10; j++ {
			dot += float64(p.Components.Data[c*10+j]) * basis[c][j]
		}
		if math.Abs(dot) < 0.999 {
			t.Errorf("component %d: |<w, u>| = %.5f, want > 0.999", c, math.Abs(dot))
		}
		want := stds[c] * stds[c]
		if rel := math.Abs(p.Variance[c]-want) / want; rel > 0.1 {
			t.Errorf("Variance[%d] = %g, want about %g", c, p.Variance[c], want)
		}
	}
	if kept := (p.Variance[0] + p.Variance[1] + p.Variance[2]) / p.TotalVariance; kept < 0.999 {
		t.Errorf("variance kept = %g, want > 0.999", kept)
	}
	// Projections reconstruct the data: x ≈ mean + y W.
	y, err := p.Transform(nil, x)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for i := 0; i < 100; i++ {
		for j := 0; j < 10; j++ {
			r := float64(p.Mean[j])
			for c := 0; c < 3; c++ {
				r += float64(y.Data[i*3+c]) * float64(p.Components.Data[c*10+j])
			}
			worst = math.Max(worst, math.Abs(r-float64(x.Data[i*10+j])))
		}
	}
	if worst > 0.1 {
		t.Errorf("reconstruction error %g, want < 0.1", worst)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestPCADeterministicAndClamped(t *testing.T) {
	x, _, _ := subspaceData(50, 6, []float64{2, 1}, 0.1, 3)
	a, err := FitPCA(context.Background(), x, DefaultPCAOptions())
	if err != nil {
		t.Fatal(err)
	}
	b, err := FitPCA(context.Background(), x.Clone(), DefaultPCAOptions())
	if err != nil {
		t.Fatal(err)
	}
	if a.Out() != 6 {
		t.Errorf("Out = %d, want 6 (clamped to D)", a.Out())
	}
	if !slices.Equal(a.Components.Data, b.Components.Data) || !slices.Equal(a.Mean, b.Mean) {
		t.Error("two fits on the same data differ")
	}
	// Sign convention: the largest-magnitude entry of each component is positive.
	for c := 0; c < a.Out(); c++ {
		row := a.Components.Data[c*6 : (c+1)*6]
		bi := 0
		for j := range row {
			if math.Abs(float64(row[j])) > math.Abs(float64(row[bi])) {
				bi = j
			}
		}
		if row[bi] < 0 {
			t.Errorf("component %d: largest entry %g is negative", c, row[bi])
		}
	}
}

func TestPCAErrors(t *testing.T) {
	ctx := context.Background()
	good := mustTensor(t, []float32{1, 2, 3, 4, 5, 7}, 3, 2)
	nan := mustTensor(t, []float32{1, float32(math.NaN()), 3, 4}, 2, 2)
	tests := []struct {
		name string
		x    *tensor.Tensor
		opt  PCAOptions
		want any
	}{
		{"zero components", good, PCAOptions{Components: 0}, new(*OptionError)},
		{"one row", mustTensor(t, []float32{1, 2}, 1, 2), DefaultPCAOptions(), new(*DataError)},
		{"not a matrix", mustTensor(t, []float32{1, 2, 3, 4}, 4), DefaultPCAOptions(), new(*tensor.ShapeError)},
		{"nan", nan, DefaultPCAOptions(), new(*tensor.NonFiniteError)},
		{"nil", nil, DefaultPCAOptions(), new(*DataError)},
	}
	for _, tc := range tests {
		_, err := FitPCA(ctx, tc.x, tc.opt)
		if err == nil || !errors.As(err, tc.want) {
			t.Errorf("%s: err = %v, want %T", tc.name, err, tc.want)
		}
	}
	p, err := FitPCA(ctx, good, DefaultPCAOptions())
	if err != nil {
		t.Fatal(err)
	}
	var se *tensor.ShapeError
	if _, err := p.Transform(nil, mustTensor(t, []float32{1, 2, 3}, 1, 3)); !errors.As(err, &se) {
		t.Errorf("Transform wrong width: err = %v, want *tensor.ShapeError", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := FitPCA(cancelled, good, DefaultPCAOptions()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

// blobs draws per points around each of the given centres with spread sd.
func blobs(centres [][]float64, per int, sd float64, seed uint64) (*tensor.Tensor, []int) {
	rng := rand.New(rand.NewPCG(seed, 11))
	d := len(centres[0])
	x := tensor.New(per*len(centres), d)
	truth := make([]int, 0, per*len(centres))
	// Interleave so the order carries no information.
	for i := 0; i < per; i++ {
		for c, m := range centres {
			r := len(truth)
			for j := 0; j < d; j++ {
				x.Data[r*d+j] = float32(m[j] + sd*rng.NormFloat64())
			}
			truth = append(truth, c)
		}
	}
	return x, truth
}

// samePartition reports whether labels equal truth up to a renaming.
func samePartition(labels, truth []int) bool {
	fwd, back := map[int]int{}, map[int]int{}
	for i := range labels {
		if v, ok := fwd[truth[i]]; ok && v != labels[i] {
			return false
		}
		if v, ok := back[labels[i]]; ok && v != truth[i] {
			return false
		}
		fwd[truth[i]], back[labels[i]] = labels[i], truth[i]
	}
	return true
}

func TestKMeansSeparatedClusters(t *testing.T) {
	centres := [][]float64{{0, 0, 0}, {10, 0, 0}, {0, 10, 0}, {0, 0, 10}}
	x, truth := blobs(centres, 100, 0.5, 1)
	km, err := FitKMeans(context.Background(), x, DefaultKMeansOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !samePartition(km.Labels, truth) {
		t.Fatal("k-means did not recover the four separated clusters")
	}
	if !km.Converged {
		t.Error("Converged = false")
	}
	for c := 0; c < 4; c++ {
		if km.Sizes[c] != 100 {
			t.Errorf("Sizes[%d] = %d, want 100", c, km.Sizes[c])
		}
	}
	// Every centre lies near one true centre.
	for c := 0; c < 4; c++ {
		m := centres[truth[slices.Index(km.Labels, c)]]
		for j := 0; j < 3; j++ {
			if math.Abs(float64(km.Centers.Data[c*3+j])-m[j]) > 0.2 {
				t.Errorf("centre %d = %v, want near %v", c, km.Centers.Data[c*3:c*3+3], m)
				break
			}
		}
	}
	pred, err := km.Predict(nil, x)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pred, km.Labels) {
		t.Error("Predict on the fitted rows differs from Labels")
	}
}

func TestKMeansKnownOptimum(t *testing.T) {
	tests := []struct {
		name    string
		data    []float32
		d, k    int
		inertia float64
	}{
		// Two pairs: centres 0.5 and 10.5, inertia 4 * 0.25.
		{"pairs", []float32{0, 1, 10, 11}, 1, 2, 1},
		// Each point its own cluster.
		{"k equals n", []float32{0, 0, 5, 5, -3, 2}, 2, 3, 0},
		// One cluster: inertia is the total squared deviation from the mean 2.
		{"one cluster", []float32{0, 1, 2, 3, 4}, 1, 1, 10},
		// Duplicates: fewer distinct points than K still works.
		{"duplicates", []float32{1, 1, 1, 7}, 1, 2, 0},
	}
	for _, tc := range tests {
		x := mustTensor(t, tc.data, len(tc.data)/tc.d, tc.d)
		opt := DefaultKMeansOptions()
		opt.K = tc.k
		km, err := FitKMeans(context.Background(), x, opt, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if math.Abs(km.Inertia-tc.inertia) > 1e-9 {
			t.Errorf("%s: inertia = %g, want %g", tc.name, km.Inertia, tc.inertia)
		}
	}
}

func TestKMeansDeterministic(t *testing.T) {
	// Overlapping blobs so that restarts and seeds matter.
	x, _ := blobs([][]float64{{0, 0}, {2, 0}, {0, 2}, {2, 2}, {1, 1}}, 60, 0.8, 5)
	opt := DefaultKMeansOptions()
	opt.Seed = 42
	a, err := FitKMeans(context.Background(), x, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FitKMeans(context.Background(), x, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Labels, b.Labels) || !slices.Equal(a.Centers.Data, b.Centers.Data) || a.Inertia != b.Inertia {
		t.Error("two fits with the same seed differ")
	}
	// More restarts never give a worse inertia than one of them alone.
	one := opt
	one.Restarts = 1
	c, err := FitKMeans(context.Background(), x, one, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Inertia > c.Inertia {
		t.Errorf("10 restarts: inertia %g > 1 restart: %g", a.Inertia, c.Inertia)
	}
}

func TestKMeansErrors(t *testing.T) {
	x := mustTensor(t, []float32{0, 1, 2}, 3, 1)
	bad := []KMeansOptions{
		{K: 0, Restarts: 1, MaxIter: 1},
		{K: 1, Restarts: 0, MaxIter: 1},
		{K: 1, Restarts: 1, MaxIter: 0},
		{K: 1, Restarts: 1, MaxIter: 1, Tol: math.NaN()},
		{K: 1, Restarts: 1, MaxIter: 1, Tol: -1},
	}
	for _, o := range bad {
		var oe *OptionError
		if _, err := FitKMeans(context.Background(), x, o, nil); !errors.As(err, &oe) {
			t.Errorf("%+v: err = %v, want *OptionError", o, err)
		}
	}
	opt := DefaultKMeansOptions() // K = 4 > 3 rows
	var de *DataError
	if _, err := FitKMeans(context.Background(), x, opt, nil); !errors.As(err, &de) {
		t.Errorf("K > N: err = %v, want *DataError", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	opt.K = 2
	if _, err := FitKMeans(cancelled, x, opt, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

func TestKNNVote(t *testing.T) {
	// Reference codes on a line: label 0 at 0,1,2; label 1 at 10,11; label 2 at 20.
	ref := mustTensor(t, []float32{0, 1, 2, 10, 11, 20}, 6, 1)
	labels := []int{0, 0, 0, 1, 1, 2}
	tests := []struct {
		name  string
		k     int
		query float32
		want  int
	}{
		{"k1 nearest", 1, 9, 1},
		{"k3 majority", 3, 1, 0},
		{"k3 majority right", 3, 9, 1},     // 10, 11, 2 -> 2:1 for label 1
		{"k5 outvoted nearest", 5, 6.1, 0}, // 10, 2, 11, 1, 0 -> nearest is 1, label 0 has 3 votes
		{"k4 tie nearest wins", 4, 6.1, 1}, // 10, 2, 11, 1 -> 2:2, label 1 ranks first
		{"k5 tie of two labels", 5, 12, 1}, // 11, 10, 20, 2, 1 -> 1 and 0 tie 2:2, 1 is nearer
		{"k2 tie nearest wins", 2, 6.4, 1}, // 10 (d 3.6) and 2 (d 4.4): 1:1, label of 10 is nearer
		{"k2 tie other side", 2, 5.6, 0},   // 2 (d 3.6) and 10 (d 4.4)
		{"k2 equidistant index", 2, 6, 0},  // 2 and 10 both at 4: lower index (label 0) ranks first
		{"k6 all vote", 6, 20, 0},          // 3:2:1
		{"k1 far right", 1, 100, 2},
	}
	for _, tc := range tests {
		v, err := NewKNN(ref, labels, KNNOptions{K: tc.k})
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Vote(nil, mustTensor(t, []float32{tc.query}, 1, 1))
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != tc.want {
			t.Errorf("%s: vote = %d, want %d", tc.name, got[0], tc.want)
		}
	}
}

func TestKNNManyQueries(t *testing.T) {
	// More queries than one block; compare Vote and Shares with brute
	// force.
	x, truth := blobs([][]float64{{0, 0}, {1, 0}, {0, 1}}, 100, 0.6, 9)
	v, err := NewKNN(x, truth, KNNOptions{K: 7})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := blobs([][]float64{{0.5, 0.5}, {0, 0}}, 70, 0.7, 10)
	got, err := v.Vote(nil, q)
	if err != nil {
		t.Fatal(err)
	}
	shares, err := v.Shares(q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shares.Shape, []int{q.Shape[0], 3}) {
		t.Fatalf("Shares shape %v", shares.Shape)
	}
	for i := 0; i < q.Shape[0]; i++ {
		type nb struct {
			d float64
			i int
		}
		var all []nb
		for p := 0; p < x.Shape[0]; p++ {
			dx := float64(q.Data[2*i]) - float64(x.Data[2*p])
			dy := float64(q.Data[2*i+1]) - float64(x.Data[2*p+1])
			all = append(all, nb{dx*dx + dy*dy, p})
		}
		slices.SortStableFunc(all, func(a, b nb) int {
			switch {
			case a.d < b.d:
				return -1
			case a.d > b.d:
				return 1
			}
			return 0
		})
		votes := make([]int, 3)
		first := []int{-1, -1, -1}
		for r := 0; r < 7; r++ {
			l := truth[all[r].i]
			votes[l]++
			if first[l] < 0 {
				first[l] = r
			}
		}
		want := truth[all[0].i]
		for l := range votes {
			if votes[l] > votes[want] || (votes[l] == votes[want] && first[l] >= 0 && first[l] < first[want]) {
				want = l
			}
		}
		if got[i] != want {
			t.Errorf("query %d: vote %d, brute force %d", i, got[i], want)
		}
		for l, n := range votes {
			if s := shares.Data[i*3+l]; math.Abs(float64(s)-float64(n)/7) > 1e-6 {
				t.Errorf("query %d: share of label %d %v, brute force %d/7", i, l, s, n)
			}
		}
	}
	if _, err := v.Shares(tensor.New(2, 3)); err == nil {
		t.Error("Shares: no error for queries of another width")
	}
}

func TestKNNErrors(t *testing.T) {
	ref := mustTensor(t, []float32{0, 1, 2}, 3, 1)
	var oe *OptionError
	if _, err := NewKNN(ref, []int{0, 0, 1}, KNNOptions{K: 0}); !errors.As(err, &oe) {
		t.Errorf("K 0: err = %v, want *OptionError", err)
	}
	var de *DataError
	for name, tc := range map[string]struct {
		labels []int
		k      int
	}{
		"label count": {[]int{0, 1}, 1},
		"negative":    {[]int{0, -1, 1}, 1},
		"K > N":       {[]int{0, 0, 1}, 4},
	} {
		if _, err := NewKNN(ref, tc.labels, KNNOptions{K: tc.k}); !errors.As(err, &de) {
			t.Errorf("%s: err = %v, want *DataError", name, err)
		}
	}
	v, err := NewKNN(ref, []int{0, 0, 1}, KNNOptions{K: 1})
	if err != nil {
		t.Fatal(err)
	}
	var se *tensor.ShapeError
	if _, err := v.Vote(nil, mustTensor(t, []float32{1, 2}, 1, 2)); !errors.As(err, &se) {
		t.Errorf("wrong width: err = %v, want *tensor.ShapeError", err)
	}
}

// With fewer rows than dimensions FitPCA takes the SVD path; duplicating
// every row (more rows than dimensions: the covariance path) leaves the
// principal directions unchanged, so both paths must agree. The variance of
// each projected column must equal the reported variance.
func TestPCAPathsAgree(t *testing.T) {
	x, _, _ := subspaceData(20, 30, []float64{6, 4, 3, 2, 1}, 0.05, 8)
	dup := tensor.New(40, 30)
	copy(dup.Data, x.Data)
	copy(dup.Data[600:], x.Data)
	opt := PCAOptions{Components: 5}
	a, err := FitPCA(context.Background(), x, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FitPCA(context.Background(), dup, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Components.Data {
		if d := math.Abs(float64(a.Components.Data[i] - b.Components.Data[i])); d > 1e-4 {
			t.Fatalf("component entry %d: SVD path %g, covariance path %g", i, a.Components.Data[i], b.Components.Data[i])
		}
	}
	y, err := a.Transform(nil, x)
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 5; c++ {
		var s, s2 float64
		for i := 0; i < 20; i++ {
			v := float64(y.Data[i*5+c])
			s += v
			s2 += v * v
		}
		variance := (s2 - s*s/20) / 19
		if math.Abs(variance-a.Variance[c]) > 1e-3*a.Variance[c] {
			t.Errorf("component %d: projected variance %g, reported %g", c, variance, a.Variance[c])
		}
		if c > 0 && a.Variance[c] > a.Variance[c-1] {
			t.Errorf("variances not descending: %v", a.Variance)
		}
	}
}

func TestKMeansFrom(t *testing.T) {
	ctx := context.Background()
	centres := [][]float64{{0, 0, 0}, {10, 0, 0}, {0, 10, 0}, {0, 0, 10}}
	x, truth := blobs(centres, 50, 0.5, 3)
	opt := DefaultKMeansOptions()
	// Started from the true centres in a given order, cluster k is the blob
	// of centre k: labels equal the truth, not only up to a renaming.
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 1, 0, 2}} {
		init := tensor.New(4, 3)
		for k, c := range order {
			for j := 0; j < 3; j++ {
				init.Data[k*3+j] = float32(centres[c][j])
			}
		}
		km, err := FitKMeansFrom(ctx, x, init, opt)
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range km.Labels {
			if order[l] != truth[i] {
				t.Fatalf("order %v: row %d (blob %d) in cluster %d", order, i, truth[i], l)
			}
		}
		if !km.Converged || km.Sizes[0] != 50 {
			t.Errorf("order %v: converged %v, sizes %v", order, km.Converged, km.Sizes)
		}
	}
	// From the centres of a converged fit, the fit is a fixed point.
	km, err := FitKMeans(ctx, x, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := FitKMeansFrom(ctx, x, km.Centers, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Labels, km.Labels) || math.Abs(again.Inertia-km.Inertia) > 1e-6*km.Inertia {
		t.Errorf("refit from converged centres moved: inertia %g -> %g", km.Inertia, again.Inertia)
	}
	// Bad centres are refused.
	var se *tensor.ShapeError
	for _, c := range []*tensor.Tensor{tensor.New(3, 3), tensor.New(4, 2)} {
		if _, err := FitKMeansFrom(ctx, x, c, opt); !errors.As(err, &se) {
			t.Errorf("centres %v: err = %v, want *tensor.ShapeError", c.Shape, err)
		}
	}
	if _, err := FitKMeansFrom(ctx, x, nil, opt); err == nil {
		t.Error("nil centres: no error")
	}
	nan := tensor.New(4, 3)
	nan.Data[2] = float32(math.NaN())
	if _, err := FitKMeansFrom(ctx, x, nan, opt); err == nil {
		t.Error("NaN centres: no error")
	}
}
