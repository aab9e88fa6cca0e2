package defense

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

// smallDictionary returns m random unit-norm 3x3 filters on c channels.
func smallDictionary(seed uint64, m, c int) *csc.Dictionary {
	rng := rand.New(rand.NewPCG(seed, 1))
	d := &csc.Dictionary{M: m, C: c, R: 3, S: 3, Filters: make([]float32, m*c*9)}
	for k := 0; k < m; k++ {
		f := d.Filters[k*c*9 : (k+1)*c*9]
		var n float64
		for i := range f {
			f[i] = float32(rng.NormFloat64())
			n += float64(f[i]) * float64(f[i])
		}
		for i := range f {
			f[i] /= float32(math.Sqrt(n))
		}
	}
	return d
}

// tightProjector is csc's projection with ADMM run to RelStopTol 1e-6 and
// a fixed penalty, so that the forward map is the converged CBPDN
// solution the implicit route differentiates.
func tightProjector(t testing.TB, d *csc.Dictionary, lambda float64) Projector {
	t.Helper()
	opt := csc.DefaultProjectOptions()
	opt.CSC.Lambda = lambda
	opt.CSC.ADMM.RelStopTol, opt.CSC.ADMM.MaxIter, opt.CSC.ADMM.AutoRho = 1e-6, 3000, false
	opt.Clip = false // as CSCProjector: the STL's output mapping clips
	p, err := csc.NewProjection(d, opt)
	if err != nil {
		t.Fatal(err)
	}
	return cscProjector{p}
}

func randBatch(seed uint64, shape ...int) *tensor.Tensor {
	x, rng := tensor.New(shape...), rand.New(rand.NewPCG(seed, 2))
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

// vjpOf returns v's VJP at x, failing the test on error.
func vjpOf(t *testing.T, v VJPer, x, gy *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	g, err := v.VJP(context.Background(), x, gy)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// projectorVJP returns the VJP of p's projection at x by the route's csc
// method with the default options.
func projectorVJP(t *testing.T, p Projector, route string, x, gy *tensor.Tensor) *tensor.Tensor {
	t.Helper()
	copt, err := GradientOptions{}.csc(route)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.(DifferentiableProjector).ProjectVJP(context.Background(), x, gy, copt)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGradientRouteRegistry(t *testing.T) {
	if got := GradientRoutes(); !slices.Equal(got, []string{"bpda", "implicit", "unrolled"}) {
		t.Fatalf("GradientRoutes() = %v", got)
	}
	GradientRoutes()[0] = "changed"
	if GradientRoutes()[0] != "bpda" {
		t.Fatal("GradientRoutes exposes its registry")
	}
	stl, err := NewSTL(mustProjector(t, smallDictionary(1, 4, 3)))
	if err != nil {
		t.Fatal(err)
	}
	fill, _ := NewSTL(&fillProjector{value: 0.5})
	for _, name := range GradientRoutes() {
		v, err := GradientRoute(stl, name, GradientOptions{})
		if err != nil || (name == RouteBPDA) != (v == nil) {
			t.Errorf("%s: VJPer %v, error %v", name, v, err)
		}
		if v, err := GradientRoute(fill, name, GradientOptions{}); (name == RouteBPDA) != (err == nil) || v != nil {
			t.Errorf("%s on a projector without derivative: VJPer %v, error %v", name, v, err)
		}
	}
	var ue *UnknownRouteError
	if _, err := GradientRoute(stl, "exact", GradientOptions{}); !errors.As(err, &ue) || ue.Name != "exact" {
		t.Errorf("unknown route: error %v", err)
	}
	for _, o := range []GradientOptions{{CGTol: -1}, {CGTol: math.NaN()}, {CGMaxIter: -2}, {Iterations: -1}} {
		if _, err := GradientRoute(stl, RouteImplicit, o); err == nil {
			t.Errorf("options %+v: no error", o)
		}
	}
	if _, err := GradientRoute(nil, RouteImplicit, GradientOptions{}); err == nil {
		t.Error("nil transform: no error")
	}
	v, _ := GradientRoute(stl, RouteImplicit, GradientOptions{})
	x := tensor.New(1, 3, 8, 8)
	if _, err := v.VJP(context.Background(), x, tensor.New(1, 3, 8, 7)); err == nil {
		t.Error("VJP with a gradient of another shape: no error")
	}
	if _, err := v.VJP(context.Background(), nil, x); err == nil {
		t.Error("VJP of a nil batch: no error")
	}
	if g, err := v.VJP(context.Background(), tensor.New(0, 3, 8, 8), tensor.New(0, 3, 8, 8)); err != nil || len(g.Data) != 0 {
		t.Errorf("empty batch: %v, %v", g, err)
	}
}

// TestSTLGradientRouteFiniteDifferences: through STL.Apply itself (with a
// projector converged to 1e-6 for the implicit route, csc's defaults for
// the unrolled one with a fixed penalty), under each output mapping
// (ApplyOptions.Output: the clip, and the per-image rescaling to the
// maximum, whose derivative couples every pixel to the maximum's),
// <w, (T(x+hu) - T(x-hu))/2h> = ||J^T w|| along u = J^T w / ||J^T w||,
// h = 1e-3, to 1e-2 relative (the support, the clip mask and the maximum's
// pixel change nowhere on the segment at these seeds; csc's tests check the
// support's condition explicitly). The saturated images (mostly 0 or 0.8)
// put some values of lowpass + D x below 0, where both mappings cut them
// to 0, and some above 1, where the clip cuts them and the rescaling does
// not.
func TestSTLGradientRouteFiniteDifferences(t *testing.T) {
	ctx := context.Background()
	d := smallDictionary(3, 6, 3)
	mid := randBatch(4, 2, 3, 10, 12)
	sat := mid.Clone()
	for i, v := range mid.Data {
		mid.Data[i] = 0.5 + 0.1*v
		sat.Data[i] = min(max(0.3+v, 0), 0.8)
	}
	// A clear maximum in each image, so that the max mapping's maximum
	// stays on one pixel along the segment (where it moves from one pixel
	// to another the mapping has a kink).
	per := len(mid.Data) / mid.Shape[0]
	for i := 0; i < mid.Shape[0]; i++ {
		mid.Data[i*per+5*12+6] = 0.95
		sat.Data[i*per+5*12+6] = 1
	}
	// Output gradients with a positive mean, as of a loss that brightens
	// the whole image: under the max mapping they reach every pixel
	// through the maximum's, a coupling random signs would mostly cancel.
	w := randBatch(5, mid.Shape...)
	for i := range w.Data {
		w.Data[i] = 1 + 0.5*w.Data[i]
	}
	loose := csc.DefaultProjectOptions()
	loose.CSC.Lambda, loose.CSC.ADMM.AutoRho, loose.Clip = 0.05, false, false
	lp, err := csc.NewProjection(d, loose)
	if err != nil {
		t.Fatal(err)
	}
	tight := tightProjector(t, d, 0.05)
	for _, tc := range []struct {
		route, output, images string
		proj                  Projector
		x                     *tensor.Tensor
	}{
		{RouteImplicit, OutputClip, "mid-gray", tight, mid},
		{RouteUnrolled, OutputClip, "mid-gray", cscProjector{lp}, mid},
		{RouteImplicit, OutputMax, "mid-gray", tight, mid},
		{RouteUnrolled, OutputMax, "mid-gray", cscProjector{lp}, mid},
		{RouteImplicit, OutputClip, "saturated", tight, sat},
		{RouteUnrolled, OutputClip, "saturated", cscProjector{lp}, sat},
		{RouteImplicit, OutputMax, "saturated", tight, sat},
		{RouteUnrolled, OutputMax, "saturated", cscProjector{lp}, sat},
	} {
		name := tc.route + "/" + tc.output + "/" + tc.images
		stl, err := NewSTLWith(tc.proj, ApplyOptions{Output: tc.output})
		if err != nil {
			t.Fatal(err)
		}
		v, err := GradientRoute(stl, tc.route, GradientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		x := tc.x
		y, err := stl.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		if n := countOf(y.Data, 0); tc.images == "saturated" && n == 0 {
			t.Fatalf("%s: no output value cut to 0: the case checks nothing of the cut", name)
		}
		if tc.output == OutputMax {
			for i := 0; i < x.Shape[0]; i++ {
				if g := topGap(y.Data[i*per : (i+1)*per]); g < 0.02 {
					t.Fatalf("%s: image %d: its two largest outputs differ by %.3g: the maximum may move on the segment", name, i, g)
				}
			}
		}
		g, err := v.VJP(ctx, x, w)
		if err != nil {
			t.Fatal(err)
		}
		norm := norm2(g.Data, nil)
		const h = 1e-3
		xp, xm := x.Clone(), x.Clone()
		for i, gv := range g.Data {
			xp.Data[i] += float32(h * float64(gv) / norm)
			xm.Data[i] -= float32(h * float64(gv) / norm)
		}
		yp, err := stl.Apply(ctx, xp)
		if err != nil {
			t.Fatal(err)
		}
		ym, err := stl.Apply(ctx, xm)
		if err != nil {
			t.Fatal(err)
		}
		var fd float64
		for i := range yp.Data {
			fd += float64(w.Data[i]) * (float64(yp.Data[i]) - float64(ym.Data[i])) / (2 * h)
		}
		e := math.Abs(fd-norm) / norm
		t.Logf("%s: ||J^T w|| %.6g, central difference %.6g, relative error %.2g", name, norm, fd, e)
		if e > 1e-2 {
			t.Errorf("%s: relative error %.3g, want <= 1e-2", name, e)
		}
	}
}

// topGap returns the difference between the largest and the second
// largest value of v.
func topGap(v []float32) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return float64(s[len(s)-1]) - float64(s[len(s)-2])
}

func countOf(v []float32, x float32) int {
	n := 0
	for _, u := range v {
		if u == x {
			n++
		}
	}
	return n
}

// TestOutputMapGradient checks the derivative of each output mapping
// (outputGrad, what both gradient routes chain onto the projection) against
// central differences of MapOutput itself, h = 1e-3 in float64 on float32
// values: the JVP along a random direction element by element, the VJP
// through <w, J u> = <J^T w, u>, on images with values inside [0, 1],
// below 0 and above 1 (at least 0.01 away from 0, 1 and each other's
// maximum, so that no kink lies on the segment), and on one whose maximum
// is negative (the max mapping returns zeros: zero derivative).
func TestOutputMapGradient(t *testing.T) {
	const n = 40
	img := func(seed uint64, lo, hi float64) []float32 {
		rng := rand.New(rand.NewPCG(seed, 3))
		v := make([]float32, n)
		for i := range v {
			for {
				u := lo + (hi-lo)*rng.Float64()
				if math.Abs(u) > 0.01 && math.Abs(u-1) > 0.01 {
					v[i] = float32(u)
					break
				}
			}
		}
		return v
	}
	inside, wide, negative := img(1, 0.05, 0.9), img(2, -0.3, 1.4), img(3, -1, -0.05)
	wide[7] = 1.6 // a clear maximum
	for _, tc := range []struct {
		output, images string
		y              []float32
		zero           bool // the derivative is 0
	}{
		{OutputClip, "inside", inside, false},
		{OutputClip, "wide", wide, false},
		{OutputClip, "negative", negative, true},
		{OutputMax, "inside", inside, false},
		{OutputMax, "wide", wide, false},
		{OutputMax, "negative", negative, true},
	} {
		name := tc.output + "/" + tc.images
		o := ApplyOptions{Output: tc.output}
		d := outputGrad{o}
		u, w := img(4, -1, 1), img(5, -1, 1)
		const h = 1e-3
		mapped := func(s float64) []float64 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(float64(tc.y[i]) + s*float64(u[i]))
			}
			o.MapOutput(v)
			out := make([]float64, n)
			for i, x := range v {
				out[i] = float64(x)
			}
			return out
		}
		yp, ym := mapped(h), mapped(-h)
		jvp := slices.Clone(u)
		d.JVP(tc.y, jvp)
		vjp := slices.Clone(w)
		d.VJP(tc.y, vjp)
		var wJu, vjpU, scale float64
		for i := range yp {
			fd := (yp[i] - ym[i]) / (2 * h)
			if math.Abs(fd-float64(jvp[i])) > 1e-3*(1+math.Abs(fd)) {
				t.Errorf("%s: JVP value %d is %g, central difference %g", name, i, jvp[i], fd)
			}
			wJu += float64(w[i]) * fd
			vjpU += float64(vjp[i]) * float64(u[i])
			scale += math.Abs(float64(vjp[i]) * float64(u[i]))
		}
		if tc.zero {
			if norm2(jvp, nil) != 0 || norm2(vjp, nil) != 0 {
				t.Errorf("%s: JVP norm %g, VJP norm %g, want 0", name, norm2(jvp, nil), norm2(vjp, nil))
			}
			continue
		}
		if math.Abs(wJu-vjpU) > 1e-3*scale {
			t.Errorf("%s: <J^T w, u> = %g, <w, central difference> = %g", name, vjpU, wJu)
		}
	}
}

// TestStratifiedGradientRoute: STL (cluster)'s route sends each image's
// gradient through the projector of the cluster the vote picks, exactly.
func TestStratifiedGradientRoute(t *testing.T) {
	ctx := context.Background()
	tr, projs := stratifiedFixture(t)
	s := tr.Stratifier()
	x, _ := colourImages(4, 32, testColours, 5)
	gy := randBatch(6, x.Shape...)
	clusters, err := s.Assign(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Min(clusters) == slices.Max(clusters) {
		t.Fatalf("clusters %v: the test needs several", clusters)
	}
	for _, route := range []string{RouteImplicit, RouteUnrolled} {
		v, err := GradientRoute(tr, route, GradientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g := vjpOf(t, v, x, gy)
		per := 3 * 32 * 32
		for i, k := range clusters {
			want := projectorVJP(t, projs[k], route, x.Batch(i, i+1), gy.Batch(i, i+1))
			if !slices.Equal(g.Data[i*per:(i+1)*per], want.Data) {
				t.Errorf("%s: image %d: gradient differs from its cluster %d's", route, i, k)
			}
		}
	}
}

// stratifiedFixture is STL (cluster) with three clusters of colour images
// (fake encoder) and csc projectors with three small random dictionaries.
func stratifiedFixture(t *testing.T) (*StratifiedSTL, []Projector) {
	t.Helper()
	enc := &meanEncoder{res: 32}
	train, _ := colourImages(60, 32, testColours, 1)
	s, _ := fitStratifier(t, enc, train, 3)
	projs := make([]Projector, 3)
	for k := range projs {
		projs[k] = mustProjector(t, smallDictionary(uint64(10+k), 4, 3))
	}
	tr, err := NewStratifiedSTL(s, projs)
	if err != nil {
		t.Fatal(err)
	}
	return tr, projs
}

// TestClusterEOTGradient: with ClusterEOT, image i's gradient is
// sum_k share_k(i) (dT_k/dx)^T gy over the clusters of its neighbours; the
// images are mixtures of two colours so that some have neighbours in
// several clusters.
func TestClusterEOTGradient(t *testing.T) {
	ctx := context.Background()
	tr, projs := stratifiedFixture(t)
	const n = 8
	a, _ := colourImages(n, 32, testColours, 5)
	b, _ := colourImages(n, 32, [][3]float32{testColours[1], testColours[2], testColours[0]}, 6)
	x := a.Clone()
	per := 3 * 32 * 32
	for i := range x.Data {
		f := 0.42 + 0.02*float32(i/per) // near the middle of two colours
		x.Data[i] = (1-f)*a.Data[i] + f*b.Data[i]
	}
	shares, err := tr.Stratifier().Shares(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	mixed := 0
	for i := 0; i < n; i++ {
		if slices.Max(shares.Data[i*3:(i+1)*3]) < 1 {
			mixed++
		}
	}
	gy := randBatch(6, x.Shape...)
	v, err := GradientRoute(tr, RouteImplicit, GradientOptions{Cluster: ClusterEOT})
	if err != nil {
		t.Fatal(err)
	}
	g := vjpOf(t, v, x, gy)
	for i := 0; i < n; i++ {
		want := make([]float64, per)
		for k, p := range projs {
			w := float64(shares.Data[i*3+k])
			if w == 0 {
				continue
			}
			for j, v := range projectorVJP(t, p, RouteImplicit, x.Batch(i, i+1), gy.Batch(i, i+1)).Data {
				want[j] += w * float64(v)
			}
		}
		for j, w := range want {
			if math.Abs(float64(g.Data[i*per+j])-w) > 1e-5*(1+math.Abs(w)) {
				t.Fatalf("image %d, value %d: %v, want %v", i, j, g.Data[i*per+j], w)
			}
		}
	}
	if mixed == 0 {
		t.Error("no image with neighbours in several clusters: the test checks nothing beyond the vote")
	}
	if _, err := GradientRoute(tr, RouteImplicit, GradientOptions{Cluster: "worst"}); err == nil {
		t.Error("unknown cluster treatment: no error")
	}
}

// TestClusterTransforms: one transform per cluster, projecting every image
// with that cluster's dictionary, differentiable like an STL.
func TestClusterTransforms(t *testing.T) {
	ctx := context.Background()
	tr, projs := stratifiedFixture(t)
	x, _ := colourImages(2, 32, testColours, 5)
	gy := randBatch(7, x.Shape...)
	cts := tr.ClusterTransforms()
	if len(cts) != 3 {
		t.Fatalf("%d cluster transforms, want 3", len(cts))
	}
	for k, ct := range cts {
		if ct.Name() != fmt.Sprintf("STL (cluster %d)", k) || ct.Cluster() != k || ct.Randomized() {
			t.Errorf("transform %d: %q, cluster %d", k, ct.Name(), ct.Cluster())
		}
		y, err := ct.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		want := tensor.New(x.Shape...)
		if err := projs[k].Project(ctx, want, x); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(y.Data, want.Data) {
			t.Errorf("cluster %d: projection differs from its projector's", k)
		}
		v, err := GradientRoute(ct, RouteUnrolled, GradientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(vjpOf(t, v, x, gy).Data, projectorVJP(t, projs[k], RouteUnrolled, x, gy).Data) {
			t.Errorf("cluster %d: gradient differs from its projector's", k)
		}
	}
}

// TestSTLGradientRouteOutputMapping: the routes differentiate the STL's
// output mapping as its transform applies it (the clip by default): an
// output gradient on the clipped pixels only (output exactly 0 or 1) has
// a zero VJP; one on the other pixels has not.
func TestSTLGradientRouteOutputMapping(t *testing.T) {
	ctx := context.Background()
	x := sampleImages(t, 1)
	for i, v := range x.Data {
		x.Data[i] = min(max(1.4*v-0.2, 0), 1) // saturated areas, so that the projection leaves [0, 1]
	}
	stl, err := NewSTL(mustProjector(t, paperDictionary(t)))
	if err != nil {
		t.Fatal(err)
	}
	y, err := stl.Apply(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	clipped, rest := tensor.New(x.Shape...), tensor.New(x.Shape...)
	n := 0
	for i, v := range y.Data {
		if v == 0 || v == 1 {
			clipped.Data[i] = 1
			n++
		} else {
			rest.Data[i] = 1
		}
	}
	if n == 0 {
		t.Fatal("no clipped pixel: the test checks nothing")
	}
	for _, route := range []string{RouteImplicit, RouteUnrolled} {
		v, err := GradientRoute(stl, route, GradientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if g := norm2(vjpOf(t, v, x, clipped).Data, nil); g != 0 {
			t.Errorf("%s: gradient on %d clipped pixels gives a VJP of norm %g, want 0", route, n, g)
		}
		if g := norm2(vjpOf(t, v, x, rest).Data, nil); g == 0 {
			t.Errorf("%s: gradient on the unclipped pixels gives a zero VJP", route)
		}
	}
}
