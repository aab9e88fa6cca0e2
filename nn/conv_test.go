package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naiveConv is the direct definition of ConvKernel.Forward in float64.
func naiveConv(p ConvParams, src, weight, bias []float32) []float64 {
	oh, ow := p.OutHW()
	out := make([]float64, p.N*p.K*oh*ow)
	for n := 0; n < p.N; n++ {
		for k := 0; k < p.K; k++ {
			for y := 0; y < oh; y++ {
				for x := 0; x < ow; x++ {
					var s float64
					if bias != nil {
						s = float64(bias[k])
					}
					for c := 0; c < p.C; c++ {
						for r := 0; r < p.R; r++ {
							for q := 0; q < p.S; q++ {
								iy, ix := y*p.StrideH-p.PadH+r, x*p.StrideW-p.PadW+q
								if iy < 0 || iy >= p.H || ix < 0 || ix >= p.W {
									continue
								}
								s += float64(weight[((k*p.C+c)*p.R+r)*p.S+q]) * float64(src[((n*p.C+c)*p.H+iy)*p.W+ix])
							}
						}
					}
					out[((n*p.K+k)*oh+y)*ow+x] = s
				}
			}
		}
	}
	return out
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// TestConvBackendsConform checks every registered backend against the
// naive convolution (forward) and against each other (backward), with
// the adjoint identities <dst, conv(src)> used for the backward passes:
// <ddst, conv(src; w)> = <BackwardData(ddst), src> = <BackwardWeights(src, ddst), w>.
func TestConvBackendsConform(t *testing.T) {
	shapes := []ConvParams{
		{N: 2, C: 3, H: 8, W: 8, K: 4, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 3, C: 2, H: 9, W: 7, K: 5, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1},
		{N: 1, C: 4, H: 6, W: 10, K: 2, R: 1, S: 1, StrideH: 1, StrideW: 1, PadH: 0, PadW: 0},
		{N: 4, C: 3, H: 16, W: 16, K: 8, R: 5, S: 3, StrideH: 1, StrideW: 2, PadH: 2, PadW: 0},
		{N: 5, C: 32, H: 8, W: 8, K: 16, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		// Large enough for oneDNN to take Winograd in the "dnnl" backend
		// (at least on one thread; nn/dnnl's tests log the choice).
		{N: 16, C: 32, H: 16, W: 16, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, name := range ConvBackends() {
		for _, threads := range []int{1, 2, 3} {
			for _, p := range shapes {
				k, err := newConvKernel(name, p, threads, &KernelGroup{})
				if err != nil {
					t.Errorf("%s %+v: %v", name, p, err)
					continue
				}
				oh, ow := p.OutHW()
				src := randSlice(rng, p.N*p.C*p.H*p.W)
				w := randSlice(rng, p.K*p.C*p.R*p.S)
				b := randSlice(rng, p.K)
				dst := make([]float32, p.N*p.K*oh*ow)
				if err := k.Forward(dst, src, w, b); err != nil {
					t.Fatal(err)
				}
				want := naiveConv(p, src, w, b)
				for i := range want {
					if math.Abs(float64(dst[i])-want[i]) > 1e-4*math.Max(1, math.Abs(want[i])) {
						t.Fatalf("%s threads %d %+v: forward[%d] = %g, want %g", name, threads, p, i, dst[i], want[i])
					}
				}
				ddst := randSlice(rng, len(dst))
				dsrc := make([]float32, len(src))
				dw := make([]float32, len(w))
				db := make([]float32, p.K)
				if err := k.BackwardData(dsrc, ddst, w); err != nil {
					t.Fatal(err)
				}
				if err := k.BackwardWeights(dw, db, src, ddst); err != nil {
					t.Fatal(err)
				}
				nob := naiveConv(p, src, w, nil)
				var lhs, rd, rw, rb, bscale float64
				for i := range nob {
					lhs += float64(ddst[i]) * nob[i]
				}
				for i := range src {
					rd += float64(dsrc[i]) * float64(src[i])
				}
				for i := range w {
					rw += float64(dw[i]) * float64(w[i])
				}
				for i := range db {
					var s float64
					for n := 0; n < p.N; n++ {
						for _, v := range ddst[(n*p.K+i)*oh*ow : (n*p.K+i+1)*oh*ow] {
							s += float64(v)
							bscale += math.Abs(float64(v))
						}
					}
					rb += math.Abs(s - float64(db[i]))
				}
				tol := 1e-4 * math.Max(1, math.Abs(lhs))
				// The bias gradient sums N*OH*OW float32 values per channel:
				// its rounding grows with the sum of their magnitudes.
				if math.Abs(lhs-rd) > tol || math.Abs(lhs-rw) > tol || rb > 1e-4+1e-6*bscale {
					t.Errorf("%s threads %d %+v: adjoint <ddst,conv>=%g, <dsrc,src>=%g, <dw,w>=%g, bias err %g", name, threads, p, lhs, rd, rw, rb)
				}
				// A combined backward, where offered, equals the separate passes.
				if kb, ok := k.(backwardBoth); ok {
					dsrc2, dw2, db2 := make([]float32, len(src)), make([]float32, len(w)), make([]float32, p.K)
					if err := kb.Backward(dsrc2, dw2, db2, src, ddst, w); err != nil {
						t.Fatal(err)
					}
					for i := range dsrc {
						if math.Abs(float64(dsrc[i]-dsrc2[i])) > 1e-5*math.Max(1, math.Abs(float64(dsrc[i]))) {
							t.Fatalf("%s: combined backward dsrc[%d] %g, separate %g", name, i, dsrc2[i], dsrc[i])
						}
					}
					for i := range dw {
						if math.Abs(float64(dw[i]-dw2[i])) > 1e-5*math.Max(1, math.Abs(float64(dw[i]))) {
							t.Fatalf("%s: combined backward dw[%d] %g, separate %g", name, i, dw2[i], dw[i])
						}
					}
				}
				// Wrong lengths are errors, not panics.
				if err := k.Forward(dst[1:], src, w, b); err == nil {
					t.Errorf("%s: short dst accepted", name)
				}
				k.Close()
			}
		}
	}
}

func TestConvParamsValidate(t *testing.T) {
	bad := []ConvParams{
		{},
		{N: 1, C: 1, H: 2, W: 2, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1},
		{N: 1, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 0, StrideW: 1},
	}
	for _, p := range bad {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if _, err := newConvKernel("nope", ConvParams{N: 1, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1}, 1, nil); err == nil {
		t.Error("unknown backend accepted")
	}
}
