package dnnl

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// convCases is the conformance table: strides 1 and 2, padding 0 and 1,
// 1x1, 3x3 and rectangular filters, odd sizes, channel counts that are and
// are not multiples of oneDNN's 8/16-channel blocks.
var convCases = []struct {
	name string
	p    ConvParams
}{
	{"1x1/s1/p0", ConvParams{N: 2, C: 3, H: 5, W: 5, K: 4, R: 1, S: 1, StrideH: 1, StrideW: 1}},
	{"3x3/s1/p1/odd", ConvParams{N: 2, C: 3, H: 7, W: 6, K: 5, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}},
	{"3x3/s1/p1/first-layer", ConvParams{N: 2, C: 3, H: 12, W: 12, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}},
	{"3x3/s1/p1/blocked", ConvParams{N: 2, C: 32, H: 8, W: 8, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}},
	{"3x3/s1/p0/padded-blocks", ConvParams{N: 3, C: 17, H: 7, W: 9, K: 19, R: 3, S: 3, StrideH: 1, StrideW: 1}},
	{"3x3/s2/p1", ConvParams{N: 3, C: 16, H: 9, W: 9, K: 32, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}},
	{"3x3/s2/p0/odd", ConvParams{N: 2, C: 8, H: 8, W: 7, K: 8, R: 3, S: 3, StrideH: 2, StrideW: 2}},
	{"1x1/s2/p0/even", ConvParams{N: 2, C: 16, H: 8, W: 8, K: 32, R: 1, S: 1, StrideH: 2, StrideW: 2}},
	{"5x3/s2x1/p2x1", ConvParams{N: 2, C: 4, H: 11, W: 6, K: 6, R: 5, S: 3, StrideH: 2, StrideW: 1, PadH: 2, PadW: 1}},
	{"1ch", ConvParams{N: 1, C: 1, H: 4, W: 3, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}},
	// Large enough for oneDNN 2.6 to pick Winograd under Algorithm Winograd
	// on AVX-512 machines.
	{"3x3/s1/p1/winograd-size", ConvParams{N: 16, C: 32, H: 16, W: 16, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}},
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*rng.Float32() - 1
	}
	return s
}

func nanSlice(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// relTol bounds the float32 error of a sum as a fraction of the sum of the
// absolute values of its terms (float32 epsilon is 6e-8; oneDNN sums in
// blocks, so the error grows far slower than the number of terms).
const relTol = 2e-5

func assertClose(t *testing.T, what string, got []float32, want, mag []float64, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		g := float64(got[i])
		if d := math.Abs(g - want[i]); !(d <= rel*mag[i]+1e-6) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g (|diff| %.3g > tol %.3g)", what, i, g, want[i], d, rel*mag[i]+1e-6)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values wrong", what, bad, len(got))
	}
}

func needDNNL(t testing.TB) {
	if !Available() {
		t.Skip("oneDNN not available in this build")
	}
}

// testConformance checks every pass of conv against the naive reference.
// Outputs start as NaN so that an element a pass forgets to write fails.
// convCase holds the inputs of one convCases entry and the reference
// results, computed once and shared by every algorithm's test.
type convCase struct {
	x, w, b, dy                   []float32
	y, yMag, y0, y0Mag, dx, dxMag []float64
	dw, dwMag, db, dbMag          []float64
}

var convCaseCache = map[int]*convCase{}

func getConvCase(ci int) *convCase {
	if cc, ok := convCaseCache[ci]; ok {
		return cc
	}
	p := convCases[ci].p
	rng := rand.New(rand.NewPCG(7, uint64(ci)))
	cc := &convCase{x: randSlice(rng, p.srcLen()), w: randSlice(rng, p.weightLen()), b: randSlice(rng, p.K), dy: randSlice(rng, p.dstLen())}
	cc.y, cc.yMag = refForward(p, cc.x, cc.w, cc.b)
	cc.y0, cc.y0Mag = refForward(p, cc.x, cc.w, nil)
	cc.dx, cc.dxMag = refBackwardData(p, cc.dy, cc.w)
	cc.dw, cc.dwMag, cc.db, cc.dbMag = refBackwardWeights(p, cc.x, cc.dy)
	convCaseCache[ci] = cc
	return cc
}

// testConformance checks every pass of a Conv built with o against the
// naive reference. Outputs start as NaN so that an element a pass forgets to
// write fails.
func testConformance(t *testing.T, o ConvOptions, rel float64) {
	for ci, tc := range convCases {
		t.Run(tc.name, func(t *testing.T) {
			p, cc := tc.p, getConvCase(ci)
			c, err := NewConvWith(p, o)
			if err != nil {
				t.Fatalf("NewConvWith(%+v, %+v): %v", p, o, err)
			}
			defer c.Close()
			fi, di, wi := c.Impl()
			t.Logf("oneDNN implementations: forward %s, backward data %s, backward weights %s; Backward reorders ddst once: %v", fi, di, wi, c.sharesDiffDst())
			checkConv(t, c, cc, rel)
		})
	}
}

// checkConv runs every pass of c on the inputs of cc and compares with its
// reference results.
func checkConv(t *testing.T, c *Conv, cc *convCase, rel float64) {
	t.Helper()
	p := c.Params()
	y := nanSlice(p.dstLen())
	if err := c.Forward(y, cc.x, cc.w, cc.b); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "Forward", y, cc.y, cc.yMag, rel)

	y = nanSlice(p.dstLen())
	if err := c.Forward(y, cc.x, cc.w, nil); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "Forward(nil bias)", y, cc.y0, cc.y0Mag, rel)

	dx := nanSlice(p.srcLen())
	if err := c.BackwardData(dx, cc.dy, cc.w); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "BackwardData", dx, cc.dx, cc.dxMag, rel)

	dw, db := nanSlice(p.weightLen()), nanSlice(p.K)
	if err := c.BackwardWeights(dw, db, cc.x, cc.dy); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "BackwardWeights dweight", dw, cc.dw, cc.dwMag, rel)
	assertClose(t, "BackwardWeights dbias", db, cc.db, cc.dbMag, rel)

	dw = nanSlice(p.weightLen())
	if err := c.BackwardWeights(dw, nil, cc.x, cc.dy); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "BackwardWeights(nil dbias)", dw, cc.dw, cc.dwMag, rel)

	// Backward, both passes and each alone, equals the separate calls bit
	// for bit.
	dx2, dw2, db2 := nanSlice(p.srcLen()), nanSlice(p.weightLen()), nanSlice(p.K)
	if err := c.Backward(dx2, dw2, db2, cc.x, cc.dy, cc.w); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "Backward dsrc", dx2, dx)
	assertSame(t, "Backward dweight", dw2, dw)
	assertSame(t, "Backward dbias", db2, db)
	dx2 = nanSlice(p.srcLen())
	if err := c.Backward(dx2, nil, nil, nil, cc.dy, cc.w); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "Backward dsrc only", dx2, dx)
	dw2 = nanSlice(p.weightLen())
	if err := c.Backward(nil, dw2, nil, cc.x, cc.dy, nil); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "Backward dweight only", dw2, dw)
}

func assertSame(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %g, want %g bit for bit", what, i, got[i], want[i])
		}
	}
}

// Convs sharing a Workspace: building later (larger) ones grows and moves
// the buffers under the earlier ones, and closing the Workspace before the
// Convs must not free memory they use.
func TestSharedWorkspace(t *testing.T) {
	needDNNL(t)
	ws, err := NewWorkspace()
	if err != nil {
		t.Fatal(err)
	}
	var convs []*Conv
	own, most := 0, 0
	for _, tc := range convCases {
		c, err := NewConvWith(tc.p, ConvOptions{Workspace: ws})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		convs = append(convs, c)
		solo, err := NewConv(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		own += solo.workspaceBytes()
		most = max(most, solo.workspaceBytes())
		solo.Close()
	}
	if got := ws.Bytes(); got < most || got > own {
		t.Errorf("shared workspace %d bytes, want between the largest single one (%d) and their sum (%d)", got, most, own)
	}
	t.Logf("shared workspace %d bytes, separate ones %d bytes", ws.Bytes(), own)
	ws.Close()
	ws.Close()
	if _, err := NewConvWith(convCases[0].p, ConvOptions{Workspace: ws}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewConvWith(closed Workspace): err = %v, want ErrClosed", err)
	}
	for i := len(convs) - 1; i >= 0; i-- {
		t.Run(convCases[i].name, func(t *testing.T) { checkConv(t, convs[i], getConvCase(i), relTol) })
	}
}

func TestConformance(t *testing.T) {
	needDNNL(t)
	cases := []struct {
		o   ConvOptions
		rel float64
	}{
		{DefaultConvOptions(), relTol},
		{ConvOptions{Algorithm: Plain}, relTol},
		// Winograd's tile transforms add rounding (measured ~1e-6 of the
		// output's magnitude on 64-channel layers, 10x Direct).
		{ConvOptions{Algorithm: Winograd}, 1e-4},
	}
	// oneDNN's choice of Winograd depends on the thread count; on one
	// thread it takes it for the winograd-size case (see the logged names).
	defer SetThreads(Threads())
	SetThreads(1)
	for _, tc := range cases {
		t.Run(tc.o.Algorithm.String(), func(t *testing.T) { testConformance(t, tc.o, tc.rel) })
	}
}

// TestForwardReLU: with ConvOptions.ForwardReLU, Forward returns the
// reference output clamped at 0, and the backward passes are the plain
// convolution's, for the direct and Winograd algorithms.
func TestForwardReLU(t *testing.T) {
	needDNNL(t)
	defer SetThreads(Threads())
	SetThreads(1)
	for _, a := range []Algorithm{Direct, Winograd} {
		for ci, tc := range convCases {
			t.Run(a.String()+"/"+tc.name, func(t *testing.T) {
				p, cc := tc.p, getConvCase(ci)
				c, err := NewConvWith(p, ConvOptions{Algorithm: a, ForwardReLU: true})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				y := nanSlice(p.dstLen())
				if err := c.Forward(y, cc.x, cc.w, cc.b); err != nil {
					t.Fatal(err)
				}
				want := make([]float64, len(cc.y))
				neg := 0
				for i, v := range cc.y {
					want[i] = math.Max(v, 0)
					if v < 0 {
						neg++
					}
				}
				if neg == 0 || neg == len(want) {
					t.Fatalf("%d of %d reference outputs negative: test is vacuous", neg, len(want))
				}
				assertClose(t, "Forward", y, want, cc.yMag, 1e-4)
				dx := nanSlice(p.srcLen())
				if err := c.BackwardData(dx, cc.dy, cc.w); err != nil {
					t.Fatal(err)
				}
				assertClose(t, "BackwardData", dx, cc.dx, cc.dxMag, 1e-4)
			})
		}
	}
}

// A batch of NaN must not poison later calls through the shared internal
// buffers, and repeated calls must give bitwise identical results.
func TestNoStateBetweenCalls(t *testing.T) {
	needDNNL(t)
	p := ConvParams{N: 2, C: 17, H: 7, W: 7, K: 19, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	rng := rand.New(rand.NewPCG(1, 2))
	x, w, dy := randSlice(rng, p.srcLen()), randSlice(rng, p.weightLen()), randSlice(rng, p.dstLen())
	c, err := NewConv(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run := func(x, w, dy []float32) (y, dx, dw, db []float32) {
		y, dx, dw, db = make([]float32, p.dstLen()), make([]float32, p.srcLen()), make([]float32, p.weightLen()), make([]float32, p.K)
		if err := c.Forward(y, x, w, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.BackwardData(dx, dy, w); err != nil {
			t.Fatal(err)
		}
		if err := c.BackwardWeights(dw, db, x, dy); err != nil {
			t.Fatal(err)
		}
		return
	}
	y1, dx1, dw1, db1 := run(x, w, dy)
	run(nanSlice(len(x)), nanSlice(len(w)), nanSlice(len(dy)))
	y2, dx2, dw2, db2 := run(x, w, dy)
	for _, pair := range []struct {
		name string
		a, b []float32
	}{{"Forward", y1, y2}, {"BackwardData", dx1, dx2}, {"dweight", dw1, dw2}, {"dbias", db1, db2}} {
		for i := range pair.a {
			if math.Float32bits(pair.a[i]) != math.Float32bits(pair.b[i]) {
				t.Fatalf("%s[%d]: %g after a NaN batch, %g before", pair.name, i, pair.b[i], pair.a[i])
			}
		}
	}
}

// Changing the thread count rebuilds the primitives; results stay within
// rounding of the reference.
func TestSetThreads(t *testing.T) {
	needDNNL(t)
	defer SetThreads(Threads())
	p := ConvParams{N: 4, C: 16, H: 8, W: 8, K: 16, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	rng := rand.New(rand.NewPCG(3, 4))
	x, w, dy := randSlice(rng, p.srcLen()), randSlice(rng, p.weightLen()), randSlice(rng, p.dstLen())
	want, mag := refForward(p, x, w, nil)
	wantDw, magDw, _, _ := refBackwardWeights(p, x, dy)
	c, err := NewConv(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{1, 2, 1, 0} {
		SetThreads(n)
		if n >= 1 && Threads() != n || n < 1 && Threads() != 1 {
			t.Fatalf("SetThreads(%d): Threads() = %d", n, Threads())
		}
		y, dw := make([]float32, p.dstLen()), make([]float32, p.weightLen())
		if err := c.Forward(y, x, w, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.BackwardWeights(dw, nil, x, dy); err != nil {
			t.Fatal(err)
		}
		assertClose(t, "Forward", y, want, mag, relTol)
		assertClose(t, "dweight", dw, wantDw, magDw, relTol)
	}
}

func TestLengthErrors(t *testing.T) {
	p := ConvParams{N: 2, C: 3, H: 5, W: 5, K: 4, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	src, w, b, dst := make([]float32, p.srcLen()), make([]float32, p.weightLen()), make([]float32, p.K), make([]float32, p.dstLen())
	short := func(s []float32) []float32 { return s[:len(s)-1] }
	c, err := NewConv(p)
	if !Available() {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("NewConv without oneDNN: err = %v, want ErrUnavailable", err)
		}
		c = &Conv{p: p} // length checks come first in this build too
	} else if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cases := []struct {
		name string
		call func() error
		arg  string
	}{
		{"Forward/dst", func() error { return c.Forward(short(dst), src, w, b) }, "dst"},
		{"Forward/src", func() error { return c.Forward(dst, short(src), w, b) }, "src"},
		{"Forward/weight", func() error { return c.Forward(dst, src, append(w, 0), b) }, "weight"},
		{"Forward/bias", func() error { return c.Forward(dst, src, w, short(b)) }, "bias"},
		{"Forward/empty-bias", func() error { return c.Forward(dst, src, w, []float32{}) }, "bias"},
		{"BackwardData/dsrc", func() error { return c.BackwardData(short(src), dst, w) }, "dsrc"},
		{"BackwardData/ddst", func() error { return c.BackwardData(src, nil, w) }, "ddst"},
		{"BackwardData/weight", func() error { return c.BackwardData(src, dst, short(w)) }, "weight"},
		{"BackwardWeights/dweight", func() error { return c.BackwardWeights(short(w), b, src, dst) }, "dweight"},
		{"BackwardWeights/dbias", func() error { return c.BackwardWeights(w, append(b, 1), src, dst) }, "dbias"},
		{"BackwardWeights/src", func() error { return c.BackwardWeights(w, b, nil, dst) }, "src"},
		{"BackwardWeights/ddst", func() error { return c.BackwardWeights(w, b, src, short(dst)) }, "ddst"},
		{"Backward/ddst", func() error { return c.Backward(src, w, b, src, nil, w) }, "ddst"},
		{"Backward/dsrc", func() error { return c.Backward(short(src), w, b, src, dst, w) }, "dsrc"},
		{"Backward/weight", func() error { return c.Backward(src, nil, nil, nil, dst, short(w)) }, "weight"},
		{"Backward/dweight", func() error { return c.Backward(nil, short(w), nil, src, dst, nil) }, "dweight"},
		{"Backward/dbias", func() error { return c.Backward(nil, w, short(b), src, dst, nil) }, "dbias"},
		{"Backward/src", func() error { return c.Backward(nil, w, b, short(src), dst, nil) }, "src"},
	}
	if err := c.Backward(nil, nil, b, src, dst, w); !errors.Is(err, ErrBiasWithoutWeights) {
		t.Errorf("Backward(dbias without dweight): err = %v, want ErrBiasWithoutWeights", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var le *LengthError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want *LengthError", err)
			}
			if le.Arg != tc.arg {
				t.Errorf("LengthError.Arg = %q, want %q (%v)", le.Arg, tc.arg, le)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	needDNNL(t)
	p := ConvParams{N: 1, C: 1, H: 3, W: 3, K: 1, R: 1, S: 1, StrideH: 1, StrideW: 1}
	c, err := NewConv(p)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	x := make([]float32, 9)
	if err := c.Forward(x, x, x[:1], nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Forward after Close: err = %v, want ErrClosed", err)
	}
	var nilConv *Conv
	if err := nilConv.BackwardData(x, x, x[:1]); err == nil {
		t.Error("BackwardData on nil *Conv: no error")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, a := range []Algorithm{Direct, Winograd, Plain} {
		if err := (ConvOptions{Algorithm: a}).Validate(); err != nil {
			t.Errorf("Algorithm %v: %v", a, err)
		}
	}
	var oe *OptionError
	for _, bad := range []ConvOptions{
		{Algorithm: Plain + 1},
		{SrcLayout: Blocked(3)},
		{DstLayout: Blocked(32)},
		{Algorithm: Plain, DstLayout: Blocked(8)},
	} {
		if err := bad.Validate(); !errors.As(err, &oe) {
			t.Errorf("Validate(%+v) = %v, want *OptionError", bad, err)
		}
	}
	for _, good := range []ConvOptions{{SrcLayout: Blocked(8), DstLayout: Blocked(16)}, {Algorithm: Winograd, DstLayout: Blocked(4)}} {
		if err := good.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", good, err)
		}
	}
	o := ConvOptions{Algorithm: Plain + 1}
	p := ConvParams{N: 1, C: 1, H: 3, W: 3, K: 1, R: 1, S: 1, StrideH: 1, StrideW: 1}
	if _, err := NewConvWith(p, o); !errors.As(err, &oe) {
		t.Errorf("NewConvWith(%+v) = %v, want *OptionError", o, err)
	}
}

func TestValidate(t *testing.T) {
	ok := ConvParams{N: 1, C: 1, H: 4, W: 4, K: 1, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	cases := []struct {
		name  string
		edit  func(*ConvParams)
		field string // "" = valid
	}{
		{"valid", func(*ConvParams) {}, ""},
		{"N=0", func(p *ConvParams) { p.N = 0 }, "N"},
		{"C<0", func(p *ConvParams) { p.C = -1 }, "C"},
		{"K=0", func(p *ConvParams) { p.K = 0 }, "K"},
		{"StrideW=0", func(p *ConvParams) { p.StrideW = 0 }, "StrideW"},
		{"PadH<0", func(p *ConvParams) { p.PadH = -1 }, "PadH"},
		{"PadW>=S", func(p *ConvParams) { p.PadW = 3 }, "PadW"},
		{"filter-taller", func(p *ConvParams) { p.H, p.PadH = 1, 0 }, "R"},
		{"filter-wider", func(p *ConvParams) { p.W, p.PadW = 2, 0 }, "S"},
		{"too-large", func(p *ConvParams) { p.N, p.C, p.H, p.W = 1<<16, 1<<16, 4, 4 }, "shape"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.edit(&p)
			err := p.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", p, err)
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Field != tc.field {
				t.Fatalf("Validate(%+v) = %v, want *ParamError on %s", p, err, tc.field)
			}
			if _, err := NewConv(p); !errors.As(err, &pe) {
				t.Errorf("NewConv(%+v) = %v, want *ParamError", p, err)
			}
		})
	}
}

func TestOutHW(t *testing.T) {
	cases := []struct {
		p      ConvParams
		oh, ow int
	}{
		{ConvParams{H: 32, W: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}, 32, 32},
		{ConvParams{H: 32, W: 31, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}, 16, 16},
		{ConvParams{H: 8, W: 7, R: 1, S: 1, StrideH: 2, StrideW: 2}, 4, 4},
		{ConvParams{H: 7, W: 5, R: 3, S: 3, StrideH: 1, StrideW: 1}, 5, 3},
		{ConvParams{H: 11, W: 6, R: 5, S: 3, StrideH: 2, StrideW: 1, PadH: 2, PadW: 1}, 6, 6},
	}
	for _, tc := range cases {
		if oh, ow := tc.p.OutHW(); oh != tc.oh || ow != tc.ow {
			t.Errorf("%+v.OutHW() = %d, %d, want %d, %d", tc.p, oh, ow, tc.oh, tc.ow)
		}
	}
}

func ExampleConvParams_OutHW() {
	p := ConvParams{N: 128, C: 32, H: 32, W: 32, K: 64, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1}
	oh, ow := p.OutHW()
	fmt.Println(oh, ow, p.Validate())
	// Output: 16 16 <nil>
}

// Random small shapes (fixed seed) beyond the table: every valid shape must
// build and agree with the reference, for every algorithm.
func TestRandomShapes(t *testing.T) {
	needDNNL(t)
	rng := rand.New(rand.NewPCG(11, 12))
	tried := 0
	for tried < 25 {
		p := ConvParams{N: 1 + rng.IntN(3), C: 1 + rng.IntN(20), H: 1 + rng.IntN(12), W: 1 + rng.IntN(12),
			K: 1 + rng.IntN(20), R: 1 + rng.IntN(5), S: 1 + rng.IntN(5), StrideH: 1 + rng.IntN(3), StrideW: 1 + rng.IntN(3)}
		p.PadH, p.PadW = rng.IntN(p.R), rng.IntN(p.S)
		if p.Validate() != nil {
			continue
		}
		tried++
		x, w, b, dy := randSlice(rng, p.srcLen()), randSlice(rng, p.weightLen()), randSlice(rng, p.K), randSlice(rng, p.dstLen())
		y0, y0Mag := refForward(p, x, w, b)
		dx0, dxMag := refBackwardData(p, dy, w)
		dw0, dwMag, db0, dbMag := refBackwardWeights(p, x, dy)
		for _, a := range []Algorithm{Direct, Winograd, Plain} {
			c, err := NewConvWith(p, ConvOptions{Algorithm: a})
			if err != nil {
				t.Errorf("NewConvWith(%+v, %v): %v", p, a, err)
				continue
			}
			y, dx, dw, db := nanSlice(p.dstLen()), nanSlice(p.srcLen()), nanSlice(p.weightLen()), nanSlice(p.K)
			if err := c.Forward(y, x, w, b); err != nil {
				t.Fatal(err)
			}
			if err := c.Backward(dx, dw, db, x, dy, w); err != nil {
				t.Fatal(err)
			}
			c.Close()
			name := fmt.Sprintf("%v %+v ", a, p)
			assertClose(t, name+"Forward", y, y0, y0Mag, 1e-4)
			assertClose(t, name+"BackwardData", dx, dx0, dxMag, 1e-4)
			assertClose(t, name+"dweight", dw, dw0, dwMag, 1e-4)
			assertClose(t, name+"dbias", db, db0, dbMag, 1e-4)
		}
	}
}
