package csc

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// gradImage is a 16x16 crop of the reference image, (1, 3, 16, 16).
func gradImage(t testing.TB) *tensor.Tensor {
	img := loadImage(t, "img32")
	out := tensor.New(1, 3, 16, 16)
	for c := 0; c < 3; c++ {
		for y := 0; y < 16; y++ {
			copy(out.Data[(c*16+y)*16:(c*16+y+1)*16], img.Data[(c*32+y+8)*32+8:])
		}
	}
	return out
}

func randTensor(rng *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// relErr returns ||a - b|| / ||b||.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		e := float64(a[i]) - float64(b[i])
		num += e * e
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// axpy returns x + h v in a new tensor.
func axpy(x, v *tensor.Tensor, h float64) *tensor.Tensor {
	out := x.Clone()
	for i := range out.Data {
		out.Data[i] += float32(h * float64(v.Data[i]))
	}
	return out
}

// gradProblem is a small, well-conditioned projection problem: a random
// dictionary of M filters (C channels, 3x3, unit norm) and an image
// 0.5 + D x0 + noise with x0 sparse, on imgC channels of 10x12 pixels.
// Its CBPDN solution has a well separated support and ADMM converges to
// float32 precision in a few hundred iterations, so central differences
// of the real forward map resolve the derivative.
func gradProblem(t testing.TB, seed uint64, m, c, imgC int, relTol float64, maxIter int) (*Projection, *tensor.Tensor) {
	rng := rand.New(rand.NewPCG(seed, 77))
	d := randDict(rng, m, c, 3, 3)
	for k := 0; k < m; k++ {
		f := d.Filters[k*c*9 : (k+1)*c*9]
		n := math.Sqrt(dot(f, f))
		for i := range f {
			f[i] /= float32(n)
		}
	}
	h, w := 10, 12
	x0 := make([]float32, m*h*w)
	for i := range x0 {
		if rng.Float64() < 0.04 {
			x0[i] = float32(0.3 * math.Copysign(1+rng.Float64(), rng.NormFloat64()))
		}
	}
	rec := make([]float64, c*h*w)
	reconstruct(rec, d, h, w, x0)
	img := tensor.New(1, imgC, h, w)
	for i := range img.Data {
		img.Data[i] = float32(0.5 + 0.05*rng.NormFloat64() + rec[i%len(rec)]*float64(1+i/len(rec))/float64(imgC))
	}
	opt := DefaultProjectOptions()
	opt.CSC.Lambda = 0.05
	opt.CSC.ADMM.RelStopTol = relTol
	opt.CSC.ADMM.MaxIter = maxIter
	opt.CSC.Workers = 1
	p, err := NewProjection(d, opt)
	if err != nil {
		t.Fatal(err)
	}
	return p, img
}

// sameLinearization reports whether the forward runs at a and b share
// their linearization: the same support of the solution, clip mask and
// (unrolled) penalty schedule and iteration count, and, for the unrolled
// tapes, at most 0.01% of the intermediate shrinkage masks' bits flipped.
// The derivative is then (nearly) one linear map on the segment between
// a and b, and central differences measure it up to rounding.
func sameLinearization(t *testing.T, p *Projection, a, b *tensor.Tensor, opt GradOptions) bool {
	t.Helper()
	ws, err := p.coder.newWorkspace(a.Shape[2], a.Shape[3])
	if err != nil {
		t.Fatal(err)
	}
	defer p.coder.release(ws)
	la, err := p.linearize(context.Background(), ws, a.Data, a.Shape[1], opt)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := p.linearize(context.Background(), ws, b.Data, b.Shape[1], opt)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(la.pass, lb.pass) {
		return false
	}
	for i := range la.support {
		if !slices.Equal(la.support[i], lb.support[i]) {
			return false
		}
	}
	for i := range la.tapes {
		ta, tb := la.tapes[i], lb.tapes[i]
		if !slices.Equal(ta.rho, tb.rho) || !slices.Equal(ta.scale, tb.scale) {
			return false
		}
		flips, bits := 0, 0
		for k := range ta.mask {
			for j := range ta.mask[k] {
				flips += popcount([]uint64{ta.mask[k][j] ^ tb.mask[k][j]})
				bits += 64
			}
		}
		if flips*10000 > bits {
			return false
		}
	}
	return true
}

// centralDifference returns (T(x + h v) - T(x - h v)) / 2h.
func centralDifference(t *testing.T, p *Projection, x, v *tensor.Tensor, h float64) *tensor.Tensor {
	t.Helper()
	fp, fm := tensor.New(x.Shape...), tensor.New(x.Shape...)
	if err := p.Project(context.Background(), fp, axpy(x, v, h)); err != nil {
		t.Fatal(err)
	}
	if err := p.Project(context.Background(), fm, axpy(x, v, -h)); err != nil {
		t.Fatal(err)
	}
	fd := tensor.New(x.Shape...)
	for i := range fd.Data {
		fd.Data[i] = float32((float64(fp.Data[i]) - float64(fm.Data[i])) / (2 * h))
	}
	return fd
}

// unit scales v to unit norm in place and returns it.
func unit(v *tensor.Tensor) *tensor.Tensor {
	n := math.Sqrt(dot(v.Data, v.Data))
	for i := range v.Data {
		v.Data[i] /= float32(n)
	}
	return v
}

var gradCases = []struct {
	name       string
	m, c, imgC int
}{
	{"gray", 4, 1, 1},
	{"gray-6", 6, 1, 1},
	{"color", 6, 3, 3},
	{"color-8", 8, 3, 3},
	{"gray-on-color", 4, 1, 3},
}

// TestProjectionGradFiniteDifferences checks both methods against central
// differences of the forward map Project itself (Tikhonov split, CBPDN by
// the real ADMM, reconstruction, clip), on small well-conditioned problems
// (gradProblem) with a fixed penalty (AutoRho off: the unrolled route
// holds the penalty schedule fixed, and residual balancing moves rho
// continuously with the image). GradImplicit is checked on a forward run
// converged to RelStopTol 1e-6, GradUnrolled (K = 0) on the default
// tolerance's short run, the map it differentiates exactly. Points are
// kept away from support changes: a step h in {3e-3, 1e-3, 3e-4, 1e-4} along a
// unit direction is used only when the runs at x +- h v share their
// linearization (sameLinearization); every case must find one within 6
// directions. Two checks per point: the JVP against the difference
// quotient along a random v, and the VJP along v = J^T w / ||J^T w||, where
// <w, (T(x+hv) - T(x-hv))/2h> must equal ||J^T w||. Both to 1e-2 relative
// (measured: 4e-6 to 3e-3; float32 rounding of the forward runs dominates).
func TestProjectionGradFiniteDifferences(t *testing.T) {
	ctx := context.Background()
	for _, tc := range gradCases {
		for _, method := range []GradMethod{GradImplicit, GradUnrolled} {
			t.Run(tc.name+"/"+method.String(), func(t *testing.T) {
				tol := 5e-3
				if method == GradImplicit {
					tol = 1e-6
				}
				p, x := gradProblem(t, 1, tc.m, tc.c, tc.imgC, tol, 3000)
				p.coder.opt.ADMM.AutoRho = false
				opt := DefaultGradOptions()
				opt.Method = method
				found := false
				for seed := uint64(1); seed <= 6 && !found; seed++ {
					rng := rand.New(rand.NewPCG(seed, 3))
					v := unit(randTensor(rng, x.Shape...))
					w := randTensor(rng, x.Shape...)
					jv, _, err := p.JVP(ctx, nil, x, v, opt)
					if err != nil {
						t.Fatal(err)
					}
					jtw, _, err := p.VJP(ctx, nil, x, w, opt)
					if err != nil {
						t.Fatal(err)
					}
					norm := math.Sqrt(dot(jtw.Data, jtw.Data))
					u := unit(jtw.Clone())
					for _, h := range []float64{3e-3, 1e-3, 3e-4, 1e-4} {
						if !sameLinearization(t, p, axpy(x, v, h), axpy(x, v, -h), opt) ||
							!sameLinearization(t, p, axpy(x, u, h), axpy(x, u, -h), opt) {
							continue
						}
						found = true
						e1 := relErr(centralDifference(t, p, x, v, h).Data, jv.Data)
						e2 := math.Abs(dot(w.Data, centralDifference(t, p, x, u, h).Data)-norm) / norm
						t.Logf("direction %d, h %g: JVP rel. error %.2g, VJP rel. error %.2g", seed, h, e1, e2)
						if e1 > 1e-2 || e2 > 1e-2 {
							t.Errorf("relative errors %.3g (JVP), %.3g (VJP) against central differences, want <= 1e-2", e1, e2)
						}
						break
					}
				}
				if !found {
					t.Fatal("no point away from support changes in 6 directions")
				}
			})
		}
	}
}

// TestProjectionGradAdjoint: <J v, w> = <v, J^T w> to 1e-4 relative, for
// both methods, on the small problems and on the reference dictionary
// with the projection's defaults (adaptive rho, 16x16 crop of the
// reference image).
func TestProjectionGradAdjoint(t *testing.T) {
	ctx := context.Background()
	type problem struct {
		name string
		p    *Projection
		x    *tensor.Tensor
	}
	var probs []problem
	for _, tc := range gradCases {
		p, x := gradProblem(t, 2, tc.m, tc.c, tc.imgC, 5e-3, 200)
		probs = append(probs, problem{tc.name, p, x})
	}
	ref, err := NewProjection(loadDict(t), DefaultProjectOptions())
	if err != nil {
		t.Fatal(err)
	}
	probs = append(probs, problem{"reference", ref, gradImage(t)})
	for _, pr := range probs {
		for _, method := range []GradMethod{GradImplicit, GradUnrolled} {
			opt := DefaultGradOptions()
			opt.Method = method
			rng := rand.New(rand.NewPCG(5, 6))
			v, w := randTensor(rng, pr.x.Shape...), randTensor(rng, pr.x.Shape...)
			jv, _, err := pr.p.JVP(ctx, nil, pr.x, v, opt)
			if err != nil {
				t.Fatal(err)
			}
			jtw, st, err := pr.p.VJP(ctx, nil, pr.x, w, opt)
			if err != nil {
				t.Fatal(err)
			}
			a, b := dot(jv.Data, w.Data), dot(v.Data, jtw.Data)
			if e := math.Abs(a-b) / math.Abs(a); e > 1e-4 || !st[0].Converged {
				t.Errorf("%s/%v: <Jv,w> = %v, <v,J^T w> = %v (rel. %.2g), stats %+v", pr.name, method, a, b, e, st[0])
			}
		}
	}
}

// TestUnrolledApproachesImplicit: the gradient through K ADMM iterations
// tends to the implicit gradient at the solution as K grows (fixed rho:
// ADMM converges linearly once the support is identified, and so does the
// derivative of its iterate). The relative distance must decrease with K
// and end below 1e-3.
func TestUnrolledApproachesImplicit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []int{0, 2, 3} {
		tc := gradCases[tc]
		p, x := gradProblem(t, 3, tc.m, tc.c, tc.imgC, 1e-6, 5000)
		p.coder.opt.ADMM.AutoRho = false
		w := randTensor(rand.New(rand.NewPCG(7, 8)), x.Shape...)
		want, _, err := p.VJP(ctx, nil, x, w, DefaultGradOptions())
		if err != nil {
			t.Fatal(err)
		}
		prev := math.Inf(1)
		var errs []float64
		for _, k := range []int{10, 40, 160, 640} {
			opt := DefaultGradOptions()
			opt.Method, opt.Iterations = GradUnrolled, k
			got, st, err := p.VJP(ctx, nil, x, w, opt)
			if err != nil {
				t.Fatal(err)
			}
			if st[0].Iterations != k {
				t.Errorf("%s: K = %d: %d iterations taped", tc.name, k, st[0].Iterations)
			}
			e := relErr(got.Data, want.Data)
			errs = append(errs, e)
			if e >= prev {
				t.Errorf("%s: distance to the implicit gradient %.3g at K = %d, not below %.3g at the previous K", tc.name, e, k, prev)
			}
			prev = e
		}
		t.Logf("%s: relative distance to the implicit gradient at K = 10, 40, 160, 640: %.2g", tc.name, errs)
		if prev > 1e-3 {
			t.Errorf("%s: distance %.3g at K = 640, want <= 1e-3", tc.name, prev)
		}
	}
}

// TestLowpassAdjoint: <L a, b> = <a, L^T b> for the Tikhonov lowpass map,
// with pads smaller and larger than the image (symmetric padding folds
// several times).
func TestLowpassAdjoint(t *testing.T) {
	for _, tc := range []struct {
		h, w, pad int
		lambda    float64
	}{{9, 13, 16, 5}, {16, 16, 0, 5}, {5, 4, 3, 0.5}, {7, 6, 20, 2}} {
		tk, err := NewTikhonov(tc.lambda, tc.pad)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, uint64(tc.pad)))
		a, b := randTensor(rng, tc.h, tc.w).Data, randTensor(rng, tc.h, tc.w).Data
		la, ltb := make([]float32, len(a)), make([]float32, len(a))
		if err := tk.Split(la, nil, a, tc.h, tc.w); err != nil {
			t.Fatal(err)
		}
		if err := tk.LowpassAdjoint(ltb, b, tc.h, tc.w); err != nil {
			t.Fatal(err)
		}
		if x, y := dot(la, b), dot(a, ltb); math.Abs(x-y) > 1e-5*(math.Abs(x)+1) {
			t.Errorf("%+v: <La,b> = %v, <a,L^T b> = %v", tc, x, y)
		}
	}
	tk, _ := NewTikhonov(5, 16)
	if err := tk.LowpassAdjoint(make([]float32, 3), make([]float32, 4), 2, 2); err == nil {
		t.Error("no error for a short destination")
	}
}

// TestSplitAndClipGradFiniteDifferences: with a lambda so large that the
// support is empty the projection is clip(L s), a map of the split and
// the clip alone; its VJP must match central differences (linear map
// away from the clip's kinks: the pixels are kept at least 0.02 from 0
// and 1 in the lowpass output, h = 1e-3) to 1e-3 relative, with some
// pixels clipped.
func TestSplitAndClipGradFiniteDifferences(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 12))
	x := tensor.New(1, 3, 12, 10)
	for i := range x.Data {
		x.Data[i] = float32(-0.6 + 2.2*float64(i%10)/9 + 0.1*rng.NormFloat64()) // a ramp across [0, 1]
	}
	opt := DefaultProjectOptions()
	opt.CSC.Lambda = 1e4
	p, err := NewProjection(randDict(rng, 4, 3, 3, 3), opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.Clip = false
	raw, err := NewProjection(p.coder.dict, opt)
	if err != nil {
		t.Fatal(err)
	}
	pre := tensor.New(x.Shape...)
	if err := raw.Project(ctx, pre, x); err != nil {
		t.Fatal(err)
	}
	clipped := 0
	for i, v := range pre.Data {
		if d := math.Min(math.Abs(float64(v)), math.Abs(float64(v)-1)); d < 0.02 {
			x.Data[i] += 0.1 // move off the kink; the check below re-verifies
		}
		if v < 0 || v > 1 {
			clipped++
		}
	}
	if clipped == 0 || clipped == len(pre.Data) {
		t.Fatalf("%d of %d pixels clipped: the test needs some of each", clipped, len(pre.Data))
	}
	w := randTensor(rng, x.Shape...)
	for _, method := range []GradMethod{GradImplicit, GradUnrolled} {
		gopt := DefaultGradOptions()
		gopt.Method = method
		jtw, st, err := p.VJP(ctx, nil, x, w, gopt)
		if err != nil {
			t.Fatal(err)
		}
		if st[0].Support != 0 {
			t.Fatalf("support %d, want empty", st[0].Support)
		}
		u := unit(jtw.Clone())
		norm := math.Sqrt(dot(jtw.Data, jtw.Data))
		if !sameLinearization(t, p, axpy(x, u, 1e-3), axpy(x, u, -1e-3), gopt) {
			t.Fatal("the clip mask changes within h of x")
		}
		if e := math.Abs(dot(w.Data, centralDifference(t, p, x, u, 1e-3).Data)-norm) / norm; e > 1e-3 {
			t.Errorf("%v: VJP relative error %.3g against central differences, want <= 1e-3", method, e)
		}
	}
}

func TestGradBadInput(t *testing.T) {
	ctx := context.Background()
	p, x := gradProblem(t, 1, 4, 1, 1, 5e-3, 200)
	bad := []struct {
		name string
		call func() error
	}{
		{"nil direction", func() error { _, _, err := p.VJP(ctx, nil, x, nil, DefaultGradOptions()); return err }},
		{"short direction", func() error {
			_, _, err := p.VJP(ctx, nil, x, tensor.New(1, 1, 10, 11), DefaultGradOptions())
			return err
		}},
		{"NaN direction", func() error {
			g := tensor.New(x.Shape...)
			g.Data[3] = float32(math.NaN())
			_, _, err := p.VJP(ctx, nil, x, g, DefaultGradOptions())
			return err
		}},
		{"NaN image", func() error {
			y := x.Clone()
			y.Data[0] = float32(math.Inf(1))
			_, _, err := p.JVP(ctx, nil, y, x, DefaultGradOptions())
			return err
		}},
		{"aliased destination", func() error { _, _, err := p.VJP(ctx, x, x, x.Clone(), DefaultGradOptions()); return err }},
		{"bad method", func() error {
			_, _, err := p.VJP(ctx, nil, x, x, GradOptions{Method: 7, CGTol: 1, CGMaxIter: 1})
			return err
		}},
		{"zero CGTol", func() error { _, _, err := p.VJP(ctx, nil, x, x, GradOptions{CGMaxIter: 1}); return err }},
		{"negative K", func() error {
			_, _, err := p.VJP(ctx, nil, x, x, GradOptions{Method: GradUnrolled, CGTol: 1, CGMaxIter: 1, Iterations: -1})
			return err
		}},
	}
	for _, b := range bad {
		if err := b.call(); err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := p.VJP(cctx, nil, x, x, DefaultGradOptions()); err == nil {
		t.Error("no error on a cancelled context")
	}
}

// maxRescale is an output map dividing an image by its maximum and
// setting negative values to 0 (as a caller's per-image rescaling).
type maxRescale struct{}

func (maxRescale) apply(y []float32) {
	m := slices.Max(y)
	for i, v := range y {
		y[i] = max(v, 0) / m
	}
}

func (maxRescale) VJP(y, g []float32) {
	m := float64(slices.Max(y))
	a := slices.Index(y, slices.Max(y))
	var s float64
	for i, v := range y {
		if v > 0 {
			s += float64(v) * float64(g[i])
		} else {
			g[i] = 0
		}
	}
	for i, v := range y {
		if v > 0 {
			g[i] = float32(float64(g[i]) / m)
		}
	}
	g[a] -= float32(s / (m * m))
}

func (maxRescale) JVP(y, g []float32) {
	m := float64(slices.Max(y))
	va := float64(g[slices.Index(y, slices.Max(y))])
	for i, v := range y {
		if v > 0 {
			g[i] = float32(float64(g[i])/m - float64(v)*va/(m*m))
		} else {
			g[i] = 0
		}
	}
}

// TestGradOutputMap: with GradOptions.Output, VJP and JVP differentiate
// the output map after the projection: against central differences of
// maxRescale∘Project (unclipped, implicit method, converged forward run,
// h = 1e-3 along u = J^T w / ||J^T w||) to 1e-2 relative, and adjoint to
// 1e-4.
func TestGradOutputMap(t *testing.T) {
	ctx := context.Background()
	p, x := gradProblem(t, 1, 6, 3, 3, 1e-6, 3000)
	p.coder.opt.ADMM.AutoRho = false
	p.opt.Clip = false
	opt := DefaultGradOptions()
	opt.Output = maxRescale{}
	rng := rand.New(rand.NewPCG(9, 9))
	v, w := randTensor(rng, x.Shape...), randTensor(rng, x.Shape...)
	jv, _, err := p.JVP(ctx, nil, x, v, opt)
	if err != nil {
		t.Fatal(err)
	}
	jtw, _, err := p.VJP(ctx, nil, x, w, opt)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := dot(jv.Data, w.Data), dot(v.Data, jtw.Data); math.Abs(a-b) > 1e-4*math.Abs(a) {
		t.Errorf("<Jv,w> = %v, <v,J^T w> = %v", a, b)
	}
	norm := math.Sqrt(dot(jtw.Data, jtw.Data))
	u := unit(jtw.Clone())
	const h = 1e-3
	var fd float64
	for sign, xs := range []*tensor.Tensor{axpy(x, u, h), axpy(x, u, -h)} {
		y := tensor.New(x.Shape...)
		if err := p.Project(ctx, y, xs); err != nil {
			t.Fatal(err)
		}
		maxRescale{}.apply(y.Data)
		fd += float64(1-2*sign) * dot(w.Data, y.Data) / (2 * h)
	}
	if e := math.Abs(fd-norm) / norm; e > 1e-2 {
		t.Errorf("VJP through the output map: relative error %.3g against central differences, want <= 1e-2", e)
	} else {
		t.Logf("relative error %.2g", e)
	}
}
