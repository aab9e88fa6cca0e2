package dnnl

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// refBatchNorm returns the training-mode forward pass in float64: output,
// mean and biased variance.
func refBatchNorm(p BatchNormParams, x, gamma, beta []float32) (y, mean, variance []float64) {
	hw, m := p.H*p.W, float64(p.N*p.H*p.W)
	y = make([]float64, len(x))
	mean, variance = make([]float64, p.C), make([]float64, p.C)
	for c := 0; c < p.C; c++ {
		var s float64
		for n := 0; n < p.N; n++ {
			for _, v := range x[(n*p.C+c)*hw : (n*p.C+c+1)*hw] {
				s += float64(v)
			}
		}
		mu := s / m
		var q float64
		for n := 0; n < p.N; n++ {
			for _, v := range x[(n*p.C+c)*hw : (n*p.C+c+1)*hw] {
				q += (float64(v) - mu) * (float64(v) - mu)
			}
		}
		mean[c], variance[c] = mu, q/m
		inv := 1 / math.Sqrt(variance[c]+float64(p.Epsilon))
		for n := 0; n < p.N; n++ {
			for i := (n*p.C + c) * hw; i < (n*p.C+c+1)*hw; i++ {
				y[i] = float64(gamma[c])*(float64(x[i])-mu)*inv + float64(beta[c])
			}
		}
	}
	return y, mean, variance
}

// refBatchNormBackward is the training-mode gradient (the statistics depend
// on x): with xh = (x-mean)/s, s = sqrt(var+eps), M = N*H*W,
// dbeta = sum dy, dgamma = sum dy*xh, dx = gamma/s * (dy - dbeta/M - xh*dgamma/M).
func refBatchNormBackward(p BatchNormParams, x, dy, gamma []float32, mean, variance []float64) (dx, dgamma, dbeta []float64) {
	hw, m := p.H*p.W, float64(p.N*p.H*p.W)
	dx = make([]float64, len(x))
	dgamma, dbeta = make([]float64, p.C), make([]float64, p.C)
	for c := 0; c < p.C; c++ {
		s := math.Sqrt(variance[c] + float64(p.Epsilon))
		for n := 0; n < p.N; n++ {
			for i := (n*p.C + c) * hw; i < (n*p.C+c+1)*hw; i++ {
				xh := (float64(x[i]) - mean[c]) / s
				dbeta[c] += float64(dy[i])
				dgamma[c] += float64(dy[i]) * xh
			}
		}
		for n := 0; n < p.N; n++ {
			for i := (n*p.C + c) * hw; i < (n*p.C+c+1)*hw; i++ {
				xh := (float64(x[i]) - mean[c]) / s
				dx[i] = float64(gamma[c]) / s * (float64(dy[i]) - dbeta[c]/m - xh*dgamma[c]/m)
			}
		}
	}
	return dx, dgamma, dbeta
}

// refPool returns the pooled output and the input gradient for dy.
func refPool(p PoolParams, x, dy []float32) (y, dx []float64) {
	oh, ow := p.OutHW()
	y, dx = make([]float64, p.N*p.C*oh*ow), make([]float64, len(x))
	for nc := 0; nc < p.N*p.C; nc++ {
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				o := (nc*oh+i)*ow + j
				best, arg, sum := math.Inf(-1), -1, 0.0
				for r := 0; r < p.R; r++ {
					for s := 0; s < p.S; s++ {
						h, w := i*p.StrideH+r-p.PadH, j*p.StrideW+s-p.PadW
						if h < 0 || h >= p.H || w < 0 || w >= p.W {
							continue
						}
						k := (nc*p.H+h)*p.W + w
						if v := float64(x[k]); v > best {
							best, arg = v, k
						}
						sum += float64(x[k])
					}
				}
				if p.Algorithm == MaxPool {
					y[o] = best
					dx[arg] += float64(dy[o])
					continue
				}
				y[o] = sum / float64(p.R*p.S)
				for r := 0; r < p.R; r++ {
					for s := 0; s < p.S; s++ {
						h, w := i*p.StrideH+r-p.PadH, j*p.StrideW+s-p.PadW
						if h >= 0 && h < p.H && w >= 0 && w < p.W {
							dx[(nc*p.H+h)*p.W+w] += float64(dy[o]) / float64(p.R*p.S)
						}
					}
				}
			}
		}
	}
	return y, dx
}

func assertNear(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	bad := 0
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*(1+math.Abs(want[i]))) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g", what, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values wrong", what, bad, len(want))
	}
}

var bnCases = []struct {
	name string
	p    BatchNormParams
}{
	{"odd", BatchNormParams{N: 3, C: 5, H: 7, W: 3, Epsilon: DefaultBatchNormEpsilon}},
	{"blocked", BatchNormParams{N: 4, C: 32, H: 8, W: 8, Epsilon: DefaultBatchNormEpsilon}},
	{"1x1", BatchNormParams{N: 16, C: 3, H: 1, W: 1, Epsilon: 1e-3}},
}

func TestBatchNorm(t *testing.T) {
	needDNNL(t)
	for ci, tc := range bnCases {
		for _, fuse := range []bool{false, true} {
			p := tc.p
			p.FuseReLU = fuse
			name := tc.name
			if fuse {
				name += "/relu"
			}
			t.Run(name, func(t *testing.T) { testBatchNorm(t, p, uint64(ci)) })
		}
	}
}

func testBatchNorm(t *testing.T, p BatchNormParams, seed uint64) {
	rng := rand.New(rand.NewPCG(5, seed))
	n := p.N * p.C * p.H * p.W
	x, dy := randSlice(rng, n), randSlice(rng, n)
	for i := range x {
		x[i] = 3*x[i] + 1 // mean and scale away from 0 and 1
	}
	gamma, beta := randSlice(rng, p.C), randSlice(rng, p.C)
	b, err := NewBatchNorm(p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr, in, bw := b.Impl()
	t.Logf("oneDNN implementations: %s, %s, %s", tr, in, bw)

	y, mean, variance := nanSlice(n), nanSlice(p.C), nanSlice(p.C)
	if err := b.ForwardTraining(y, mean, variance, x, gamma, beta); err != nil {
		t.Fatal(err)
	}
	wy, wmean, wvar := refBatchNorm(p, x, gamma, beta)
	dyEff := dy // gradient reaching the normalization
	if p.FuseReLU {
		dyEff = make([]float32, n)
		for i := range wy {
			if wy[i] > 0 {
				dyEff[i] = dy[i]
			} else {
				wy[i] = 0
			}
		}
	}
	assertNear(t, "mean", mean, wmean, 1e-5)
	assertNear(t, "variance", variance, wvar, 1e-5)
	assertNear(t, "ForwardTraining", y, wy, 1e-5)

	// Inference with the batch statistics gives the same output.
	y2 := nanSlice(n)
	if err := b.ForwardInference(y2, x, mean, variance, gamma, beta); err != nil {
		t.Fatal(err)
	}
	assertNear(t, "ForwardInference", y2, wy, 1e-5)

	dx, dg, db := nanSlice(n), nanSlice(p.C), nanSlice(p.C)
	if err := b.Backward(dx, dg, db, x, dy, mean, variance, gamma); err != nil {
		t.Fatal(err)
	}
	mean64, var64 := make([]float64, p.C), make([]float64, p.C)
	for c := range mean64 {
		mean64[c], var64[c] = float64(mean[c]), float64(variance[c])
	}
	wdx, wdg, wdb := refBatchNormBackward(p, x, dyEff, gamma, mean64, var64)
	assertNear(t, "dgamma", dg, wdg, 1e-4)
	assertNear(t, "dbeta", db, wdb, 1e-4)
	assertNear(t, "dsrc", dx, wdx, 1e-4)
	dx = nanSlice(n)
	if err := b.Backward(dx, nil, nil, x, dy, mean, variance, gamma); err != nil {
		t.Fatal(err)
	}
	assertNear(t, "dsrc (nil dgamma, dbeta)", dx, wdx, 1e-4)
}

// The backward pass is checked against central differences of the loss
// L = sum(ddst * y(x)) as well, independently of the closed form above.
func TestBatchNormFiniteDifferences(t *testing.T) {
	needDNNL(t)
	p := BatchNormParams{N: 2, C: 3, H: 2, W: 3, Epsilon: DefaultBatchNormEpsilon}
	n := p.N * p.C * p.H * p.W
	rng := rand.New(rand.NewPCG(8, 8))
	x, dy, gamma, beta := randSlice(rng, n), randSlice(rng, n), randSlice(rng, p.C), randSlice(rng, p.C)
	b, err := NewBatchNorm(p)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	loss := func(x []float32) float64 {
		y, _, _ := refBatchNorm(p, x, gamma, beta)
		var s float64
		for i := range y {
			s += y[i] * float64(dy[i])
		}
		return s
	}
	y, mean, variance := make([]float32, n), make([]float32, p.C), make([]float32, p.C)
	if err := b.ForwardTraining(y, mean, variance, x, gamma, beta); err != nil {
		t.Fatal(err)
	}
	dx := make([]float32, n)
	if err := b.Backward(dx, nil, nil, x, dy, mean, variance, gamma); err != nil {
		t.Fatal(err)
	}
	const h = 1e-3
	for i := range x {
		xp, xm := append([]float32(nil), x...), append([]float32(nil), x...)
		xp[i] += h
		xm[i] -= h
		num := (loss(xp) - loss(xm)) / (float64(xp[i]) - float64(xm[i]))
		if d := math.Abs(num - float64(dx[i])); d > 2e-3*(1+math.Abs(num)) {
			t.Errorf("dsrc[%d] = %g, central difference %g", i, dx[i], num)
		}
	}
}

var poolCases = []struct {
	name string
	p    PoolParams
}{
	{"max2x2/s2", PoolParams{N: 2, C: 3, H: 8, W: 8, R: 2, S: 2, StrideH: 2, StrideW: 2}},
	{"max2x2/s2/odd", PoolParams{N: 2, C: 17, H: 7, W: 9, R: 2, S: 2, StrideH: 2, StrideW: 2}},
	{"max3x3/s2/p1", PoolParams{N: 2, C: 16, H: 9, W: 8, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}},
	{"max3x3/s1/p1", PoolParams{N: 1, C: 4, H: 5, W: 5, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}},
	{"avg2x2/s2", PoolParams{N: 2, C: 3, H: 8, W: 6, R: 2, S: 2, StrideH: 2, StrideW: 2, Algorithm: AvgPool}},
	{"avg3x3/s2/p1", PoolParams{N: 2, C: 16, H: 9, W: 8, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Algorithm: AvgPool}},
	{"global-avg", PoolParams{N: 3, C: 5, H: 4, W: 4, R: 4, S: 4, StrideH: 1, StrideW: 1, Algorithm: AvgPool}},
}

func TestPool(t *testing.T) {
	needDNNL(t)
	for ci, tc := range poolCases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			rng := rand.New(rand.NewPCG(6, uint64(ci)))
			x, dy := randSlice(rng, p.srcLen()), randSlice(rng, p.dstLen())
			q, err := NewPool(p)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			f, b := q.Impl()
			t.Logf("oneDNN implementations: %s, %s", f, b)
			y, dx := nanSlice(p.dstLen()), nanSlice(p.srcLen())
			if err := q.Forward(y, x); err != nil {
				t.Fatal(err)
			}
			if err := q.Backward(dx, dy); err != nil {
				t.Fatal(err)
			}
			wy, wdx := refPool(p, x, dy)
			assertNear(t, "Forward", y, wy, 1e-6)
			assertNear(t, "Backward", dx, wdx, 1e-6)
		})
	}
}

func TestOpsErrors(t *testing.T) {
	if err := (BatchNormParams{N: 1, C: 0, H: 1, W: 1}).Validate(); err == nil {
		t.Error("BatchNormParams with C=0: no error")
	}
	if err := (BatchNormParams{N: 1, C: 1, H: 1, W: 1, Epsilon: -1}).Validate(); err == nil {
		t.Error("BatchNormParams with negative Epsilon: no error")
	}
	if err := (PoolParams{N: 1, C: 1, H: 4, W: 4, R: 2, S: 2, StrideH: 2, StrideW: 2, Algorithm: 7}).Validate(); err == nil {
		t.Error("PoolParams with unknown Algorithm: no error")
	}
	needDNNL(t)
	bp := BatchNormParams{N: 2, C: 3, H: 2, W: 2, Epsilon: 1e-5}
	b, err := NewBatchNorm(bp)
	if err != nil {
		t.Fatal(err)
	}
	d, c := make([]float32, 24), make([]float32, 3)
	var le *LengthError
	if err := b.ForwardTraining(d, c, c, d[:23], c, c); !errors.As(err, &le) || le.Arg != "src" {
		t.Errorf("ForwardTraining short src: %v", err)
	}
	if err := b.Backward(d, c, c[:2], d, d, c, c, c); !errors.As(err, &le) || le.Arg != "dbeta" {
		t.Errorf("Backward short dbeta: %v", err)
	}
	b.Close()
	if err := b.ForwardInference(d, d, c, c, c, c); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	q, err := NewPool(PoolParams{N: 1, C: 1, H: 4, W: 4, R: 2, S: 2, StrideH: 2, StrideW: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Forward(make([]float32, 3), make([]float32, 16)); !errors.As(err, &le) || le.Arg != "dst" {
		t.Errorf("Pool.Forward short dst: %v", err)
	}
}

// BatchNorm and Pool rebuild under a new thread count; a Pool refuses a
// Backward whose Forward ran under another count.
func TestOpsSetThreads(t *testing.T) {
	needDNNL(t)
	defer SetThreads(Threads())
	SetThreads(1)
	bp := BatchNormParams{N: 2, C: 3, H: 4, W: 4, Epsilon: DefaultBatchNormEpsilon}
	n := 2 * 3 * 4 * 4
	rng := rand.New(rand.NewPCG(2, 2))
	x, g, be := randSlice(rng, n), randSlice(rng, 3), randSlice(rng, 3)
	b, err := NewBatchNorm(bp)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pp := PoolParams{N: 2, C: 3, H: 4, W: 4, R: 2, S: 2, StrideH: 2, StrideW: 2}
	q, err := NewPool(pp)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	wy, _, _ := refBatchNorm(bp, x, g, be)
	wp, _ := refPool(pp, x, make([]float32, pp.dstLen()))
	for _, th := range []int{2, 1} {
		SetThreads(th)
		y, m, v := make([]float32, n), make([]float32, 3), make([]float32, 3)
		if err := b.ForwardTraining(y, m, v, x, g, be); err != nil {
			t.Fatal(err)
		}
		assertNear(t, "BatchNorm", y, wy, 1e-5)
		py := make([]float32, pp.dstLen())
		if err := q.Forward(py, x); err != nil {
			t.Fatal(err)
		}
		assertNear(t, "Pool", py, wp, 0)
	}
	br, err := NewBatchNorm(BatchNormParams{N: 2, C: 3, H: 4, W: 4, Epsilon: DefaultBatchNormEpsilon, FuseReLU: true})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	m, v := make([]float32, 3), make([]float32, 3)
	if err := br.ForwardTraining(make([]float32, n), m, v, x, g, be); err != nil {
		t.Fatal(err)
	}
	SetThreads(2)
	var e *Error
	if err := q.Backward(make([]float32, pp.srcLen()), make([]float32, pp.dstLen())); !errors.As(err, &e) {
		t.Errorf("Pool.Backward after a thread change: err = %v, want *Error", err)
	}
	if err := br.Backward(make([]float32, n), nil, nil, x, x, m, v, g); !errors.As(err, &e) {
		t.Errorf("BatchNorm{FuseReLU}.Backward after a thread change: err = %v, want *Error", err)
	}
}
