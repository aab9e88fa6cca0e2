package defense

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stl-defense/stl/cluster"
	"github.com/stl-defense/stl/tensor"
)

func TestAreaResize(t *testing.T) {
	tests := []struct {
		name       string
		in         []float32
		H, W, h, w int
		want       []float32
	}{
		{"identity", []float32{1, 2, 3, 4}, 2, 2, 2, 2, []float32{1, 2, 3, 4}},
		{"2x2 blocks", []float32{
			1, 3, 0, 0,
			5, 7, 0, 4,
			1, 1, 2, 2,
			1, 1, 2, 2}, 4, 4, 2, 2, []float32{4, 1, 1, 2}},
		// Output pixel (0,0) of 3x3->2x2 covers [0,1.5)^2: weights 1, .5, .5, .25 over 2.25.
		{"fractional", []float32{
			9, 0, 0,
			0, 0, 0,
			0, 0, 0}, 3, 3, 2, 2, []float32{4, 0, 0, 0}},
		{"upsample", []float32{1, 2}, 1, 2, 2, 4, []float32{1, 1, 2, 2, 1, 1, 2, 2}},
		{"rows only", []float32{1, 2, 3, 5}, 4, 1, 2, 1, []float32{1.5, 4}},
	}
	for _, tc := range tests {
		x, err := tensor.FromData(tc.in, 1, 1, tc.H, tc.W)
		if err != nil {
			t.Fatal(err)
		}
		got, err := areaResize(x, tc.h, tc.w)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !slices.Equal(got.Shape, []int{1, 1, tc.h, tc.w}) {
			t.Fatalf("%s: shape %v", tc.name, got.Shape)
		}
		for i := range tc.want {
			if math.Abs(float64(got.Data[i]-tc.want[i])) > 1e-6 {
				t.Errorf("%s: got %v, want %v", tc.name, got.Data, tc.want)
				break
			}
		}
	}
	// Area averaging preserves the mean of every image and channel.
	rng := rand.New(rand.NewPCG(1, 2))
	x := tensor.New(2, 3, 45, 37)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	y, err := areaResize(x, 32, 32)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < 6; p++ {
		var a, b float64
		for _, v := range x.Data[p*45*37 : (p+1)*45*37] {
			a += float64(v)
		}
		for _, v := range y.Data[p*1024 : (p+1)*1024] {
			b += float64(v)
		}
		if math.Abs(a/(45*37)-b/1024) > 1e-5 {
			t.Errorf("plane %d: mean %g -> %g", p, a/(45*37), b/1024)
		}
	}
}

// meanEncoder is a fake DAE encoder: the code of an image is its mean per
// channel and the mean of its top half per channel. It checks the input
// resolution and counts calls.
type meanEncoder struct {
	res   int
	mu    sync.Mutex
	calls int
}

func (e *meanEncoder) Encode(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n, c, h, w, err := x.NCHW()
	if err != nil {
		return nil, err
	}
	if h != e.res || w != e.res {
		return nil, errors.New("meanEncoder: wrong resolution")
	}
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	z := tensor.New(n, 2*c)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			plane := x.Data[(i*c+ch)*h*w : (i*c+ch+1)*h*w]
			var s, top float64
			for p, v := range plane {
				s += float64(v)
				if p < h*w/2 {
					top += float64(v)
				}
			}
			z.Data[i*2*c+ch] = float32(s / float64(h*w))
			z.Data[i*2*c+c+ch] = float32(top / float64(h*w/2))
		}
	}
	return z, nil
}

// colourImages draws n images of size s x s: image i has the base colour of
// class i % len(colours), plus noise.
func colourImages(n, s int, colours [][3]float32, seed uint64) (*tensor.Tensor, []int) {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := tensor.New(n, 3, s, s)
	cls := make([]int, n)
	for i := 0; i < n; i++ {
		k := i % len(colours)
		cls[i] = k
		for c := 0; c < 3; c++ {
			plane := x.Data[(i*3+c)*s*s : (i*3+c+1)*s*s]
			for p := range plane {
				v := colours[k][c] + 0.05*float32(rng.NormFloat64())
				plane[p] = min(max(v, 0), 1)
			}
		}
	}
	return x, cls
}

var testColours = [][3]float32{{0.8, 0.1, 0.1}, {0.1, 0.8, 0.1}, {0.1, 0.1, 0.8}}

// fitStratifier builds a stratifier on the fake encoder the way Train does:
// codes -> PCA -> k-means.
func fitStratifier(t *testing.T, enc Encoder, train *tensor.Tensor, k int) (*Stratifier, *cluster.KMeans) {
	t.Helper()
	ctx := context.Background()
	raw, err := encodeCodes(ctx, enc, nil, 32, train, nil)
	if err != nil {
		t.Fatal(err)
	}
	pca, err := cluster.FitPCA(ctx, raw, cluster.PCAOptions{Components: 4})
	if err != nil {
		t.Fatal(err)
	}
	codes, err := pca.Transform(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	kopt := cluster.DefaultKMeansOptions()
	kopt.K = k
	km, err := cluster.FitKMeans(ctx, codes, kopt, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStratifier(enc, 32, 3, pca, codes, km.Labels, k, cluster.KNNOptions{K: 5})
	if err != nil {
		t.Fatal(err)
	}
	return s, km
}

func TestStratifierAssign(t *testing.T) {
	enc := &meanEncoder{res: 32}
	train, cls := colourImages(60, 64, testColours, 1)
	s, km := fitStratifier(t, enc, train, 3)
	// The clusters are the colour classes.
	perClass := map[int]int{}
	for i, l := range km.Labels {
		if v, ok := perClass[cls[i]]; ok && v != l {
			t.Fatalf("image %d of class %d in cluster %d, others in %d", i, cls[i], l, v)
		}
		perClass[cls[i]] = l
	}
	// New images, at another resolution, go to their colour's cluster.
	test, tcls := colourImages(300, 48, testColours, 2)
	before := enc.calls
	got, err := s.Assign(context.Background(), test)
	if err != nil {
		t.Fatal(err)
	}
	if calls := enc.calls - before; calls != 2 {
		t.Errorf("encoder called %d times for 300 images, want 2 batches of <= %d", calls, EncodeBatch)
	}
	for i, l := range got {
		if l != perClass[tcls[i]] {
			t.Fatalf("test image %d (class %d): cluster %d, want %d", i, tcls[i], l, perClass[tcls[i]])
		}
	}
	again, err := s.Assign(context.Background(), test)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, again) {
		t.Error("Assign is not deterministic")
	}
}

func TestStratifierErrors(t *testing.T) {
	enc := &meanEncoder{res: 32}
	train, _ := colourImages(30, 32, testColours, 1)
	s, km := fitStratifier(t, enc, train, 3)
	ctx := context.Background()

	var se *tensor.ShapeError
	if _, err := s.Assign(ctx, tensor.New(2, 1, 32, 32)); !errors.As(err, &se) {
		t.Errorf("wrong channels: err = %v, want *tensor.ShapeError", err)
	}
	if _, err := s.Assign(ctx, tensor.New(2, 3, 32)); !errors.As(err, &se) {
		t.Errorf("3-D batch: err = %v, want *tensor.ShapeError", err)
	}
	nan := tensor.New(1, 3, 8, 8)
	nan.Data[5] = float32(math.NaN())
	var ne *tensor.NonFiniteError
	if _, err := s.Assign(ctx, nan); !errors.As(err, &ne) {
		t.Errorf("NaN: err = %v, want *tensor.NonFiniteError", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Assign(cancelled, train); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}

	raw, _ := encodeCodes(ctx, enc, nil, 32, train, nil)
	pca, _ := cluster.FitPCA(ctx, raw, cluster.PCAOptions{Components: 4})
	codes, _ := pca.Transform(nil, raw)
	var ste *StratifierError
	bad := slices.Clone(km.Labels)
	bad[0] = 7
	if _, err := NewStratifier(enc, 32, 3, pca, codes, bad, 3, cluster.DefaultKNNOptions()); !errors.As(err, &ste) {
		t.Errorf("label out of range: err = %v, want *StratifierError", err)
	}
	if _, err := NewStratifier(enc, 32, 3, pca, codes, km.Labels, 4, cluster.DefaultKNNOptions()); !errors.As(err, &ste) {
		t.Errorf("empty cluster: err = %v, want *StratifierError", err)
	}
	if _, err := NewStratifier(enc, 32, 3, pca, raw, km.Labels, 3, cluster.DefaultKNNOptions()); !errors.As(err, &se) {
		t.Errorf("codes not reduced: err = %v, want *tensor.ShapeError", err)
	}
	if _, err := NewStratifier(nil, 32, 3, pca, codes, km.Labels, 3, cluster.DefaultKNNOptions()); !errors.As(err, &ste) {
		t.Errorf("nil encoder: err = %v, want *StratifierError", err)
	}
}

// fillProjector is a fake projector that writes its value into every pixel
// and records the batch sizes it saw.
type fillProjector struct {
	value float32
	sizes []int
}

func (p *fillProjector) Project(ctx context.Context, dst, src *tensor.Tensor) error {
	if !tensor.SameShape(dst, src) {
		return errors.New("fillProjector: shape mismatch")
	}
	p.sizes = append(p.sizes, src.Shape[0])
	for i := range dst.Data {
		dst.Data[i] = p.value
	}
	return nil
}

func TestStratifiedSTLRoutes(t *testing.T) {
	enc := &meanEncoder{res: 32}
	train, cls := colourImages(60, 32, testColours, 1)
	s, km := fitStratifier(t, enc, train, 3)
	projs := []Projector{&fillProjector{value: 0.25}, &fillProjector{value: 0.5}, &fillProjector{value: 0.75}}
	tr, err := NewStratifiedSTL(s, projs)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Name() != "STL (cluster)" || tr.Randomized() {
		t.Errorf("Name, Randomized = %q, %v", tr.Name(), tr.Randomized())
	}
	x, xcls := colourImages(10, 32, testColours, 5)
	orig := x.Clone()
	y, err := tr.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x.Data, orig.Data) {
		t.Error("Apply modified its input")
	}
	clusterOf := map[int]int{}
	for i, l := range km.Labels {
		clusterOf[cls[i]] = l
	}
	per := 3 * 32 * 32
	for i := 0; i < 10; i++ {
		want := projs[clusterOf[xcls[i]]].(*fillProjector).value
		for _, v := range y.Data[i*per : (i+1)*per] {
			if v != want {
				t.Fatalf("image %d (class %d): pixel %g, want %g from cluster %d", i, xcls[i], v, want, clusterOf[xcls[i]])
			}
		}
	}
	// Each cluster's images go to its projector in one batch.
	total := 0
	for _, p := range projs {
		fp := p.(*fillProjector)
		if len(fp.sizes) > 1 {
			t.Errorf("projector %g called %d times in one Apply", fp.value, len(fp.sizes))
		}
		for _, n := range fp.sizes {
			total += n
		}
	}
	if total != 10 {
		t.Errorf("projectors saw %d images, want 10", total)
	}
	if _, err := tr.ApplyClusters(context.Background(), x, []int{0, 1}); err == nil {
		t.Error("ApplyClusters with 2 assignments for 10 images: no error")
	}
	if _, err := tr.ApplyClusters(context.Background(), x, make([]int, 9)); err == nil {
		t.Error("ApplyClusters with 9 assignments: no error")
	}
	bad := make([]int, 10)
	bad[3] = 3
	if _, err := tr.ApplyClusters(context.Background(), x, bad); err == nil {
		t.Error("ApplyClusters with cluster 3 of 3: no error")
	}
	if _, err := NewStratifiedSTL(s, projs[:2]); err == nil {
		t.Error("NewStratifiedSTL with 2 projectors for 3 clusters: no error")
	}
	// Non-finite input is refused at the entry, before any encoding or
	// projection.
	nan := x.Clone()
	nan.Data[per+5] = float32(math.Inf(-1))
	calls := enc.calls
	var ne *tensor.NonFiniteError
	if _, err := tr.Apply(context.Background(), nan); !errors.As(err, &ne) {
		t.Errorf("Inf: err = %v, want *tensor.NonFiniteError", err)
	}
	if enc.calls != calls {
		t.Error("Inf input reached the encoder")
	}
}

func TestSTLUniversal(t *testing.T) {
	p := &fillProjector{value: 0.5}
	tr, err := NewSTL(p)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Name() != "STL" || tr.Randomized() {
		t.Errorf("Name, Randomized = %q, %v", tr.Name(), tr.Randomized())
	}
	x, _ := colourImages(4, 8, testColours, 1)
	y, err := tr.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(x, y) || y.Data[0] != 0.5 || &y.Data[0] == &x.Data[0] {
		t.Errorf("Apply: shape %v, first %g; want a new tensor of 0.5", y.Shape, y.Data[0])
	}
	if _, err := tr.Apply(context.Background(), nil); !errors.Is(err, ErrNilInput) {
		t.Errorf("nil batch: err = %v, want ErrNilInput", err)
	}
	if _, err := NewSTL(nil); err == nil {
		t.Error("NewSTL(nil): no error")
	}
	var se *tensor.ShapeError
	if _, err := tr.Apply(context.Background(), tensor.New(3, 3)); !errors.As(err, &se) {
		t.Errorf("2-D input: err = %v, want *tensor.ShapeError", err)
	}
	x.Data[7] = float32(math.NaN())
	var ne *tensor.NonFiniteError
	if _, err := tr.Apply(context.Background(), x); !errors.As(err, &ne) || len(p.sizes) != 1 {
		t.Errorf("NaN: err = %v after %d projections, want *tensor.NonFiniteError before the second", err, len(p.sizes))
	}
}

// barrierProjector waits, inside Project, until every projector of its
// group has been entered (or a timeout passes, returning an error): it
// finishes only when the groups are projected concurrently. fail makes it
// return its own error after the barrier.
type barrierProjector struct {
	entered *sync.WaitGroup
	fail    bool
}

var errBarrierFail = errors.New("barrierProjector: failed as asked")

func (p *barrierProjector) Project(ctx context.Context, dst, src *tensor.Tensor) error {
	p.entered.Done()
	done := make(chan struct{})
	go func() { p.entered.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("barrierProjector: the other clusters' groups were not projected concurrently")
	}
	if p.fail {
		return errBarrierFail
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	copy(dst.Data, src.Data)
	return nil
}

// TestStratifiedSTLConcurrentClusters checks that the clusters' groups of a
// batch are projected concurrently (so that one group's last images do not
// leave cores idle), that the result is each image's own projection, and
// that a failing cluster's error is reported rather than the cancellation
// it causes in the others.
func TestStratifiedSTLConcurrentClusters(t *testing.T) {
	enc := &meanEncoder{res: 32}
	train, _ := colourImages(60, 32, testColours, 1)
	s, _ := fitStratifier(t, enc, train, 3)
	x, _ := colourImages(9, 32, testColours, 7)
	clusters := []int{0, 1, 2, 2, 1, 0, 0, 1, 2}
	for _, tc := range []struct {
		name    string
		failing int // cluster whose projector fails, -1 none
	}{{"all succeed", -1}, {"cluster 1 fails", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var entered sync.WaitGroup
			entered.Add(3)
			projs := make([]Projector, 3)
			for k := range projs {
				projs[k] = &barrierProjector{entered: &entered, fail: k == tc.failing}
			}
			tr, err := NewStratifiedSTL(s, projs)
			if err != nil {
				t.Fatal(err)
			}
			y, err := tr.ApplyClusters(context.Background(), x, clusters)
			if tc.failing >= 0 {
				if !errors.Is(err, errBarrierFail) {
					t.Fatalf("err = %v, want the failing projector's", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(y.Data, x.Data) {
				t.Error("images not returned to their own rows")
			}
		})
	}
}
