package fft

import (
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

type testImpl struct {
	name string
	new  func(h, w int) (RealPlan2D, error)
}

// testImpls lists every implementation compiled into this build; the
// conformance suite below runs on each.
var testImpls = []testImpl{
	{"gonum", func(h, w int) (RealPlan2D, error) { return NewGoPlan(h, w) }},
}

var sizes = []struct{ h, w int }{
	{1, 1}, {1, 8}, {5, 1}, {2, 2}, {3, 5}, {4, 7}, {8, 8}, {7, 6}, {32, 32}, {17, 40},
}

func randReal(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// naiveDFT is the definition, in float64.
func naiveDFT(s []float32, h, w int) []complex128 {
	wc := w/2 + 1
	out := make([]complex128, h*wc)
	for k := 0; k < h; k++ {
		for l := 0; l < wc; l++ {
			var acc complex128
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					ph := -2 * math.Pi * (float64(k*y)/float64(h) + float64(l*x)/float64(w))
					acc += complex(float64(s[y*w+x]), 0) * cmplx.Exp(complex(0, ph))
				}
			}
			out[k*wc+l] = acc
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	for _, im := range testImpls {
		for _, sz := range sizes {
			t.Run(fmt.Sprintf("%s/%dx%d", im.name, sz.h, sz.w), func(t *testing.T) {
				p, err := im.new(sz.h, sz.w)
				if err != nil {
					t.Fatal(err)
				}
				if h, w := p.Size(); h != sz.h || w != sz.w {
					t.Fatalf("Size() = %d,%d", h, w)
				}
				rng := rand.New(rand.NewPCG(1, uint64(sz.h*100+sz.w)))
				s := randReal(rng, sz.h*sz.w)
				orig := append([]float32(nil), s...)
				want := naiveDFT(s, sz.h, sz.w)
				got := p.Forward(nil, s)
				scale := math.Sqrt(float64(sz.h * sz.w))
				for i := range want {
					if d := cmplx.Abs(complex128(got[i]) - want[i]); d > 1e-5*scale {
						t.Fatalf("Forward[%d] = %v, want %v (diff %g)", i, got[i], want[i], d)
					}
				}
				// Unaligned destination and source take the copying path.
				s2 := make([]float32, len(s)+1)[1:]
				copy(s2, s)
				got2 := make([]complex64, len(got)+1)[1:]
				p.Forward(got2, s2)
				for i := range got {
					if cmplx.Abs(complex128(got2[i]-got[i])) > 1e-5*scale {
						t.Fatalf("unaligned Forward[%d] = %v, want %v", i, got2[i], got[i])
					}
				}
				spec := append([]complex64(nil), got...)
				back := p.Inverse(nil, got)
				for i := range s {
					if s[i] != orig[i] {
						t.Fatal("Forward modified its input")
					}
					if d := math.Abs(float64(back[i] - s[i])); d > 1e-5 {
						t.Fatalf("round trip [%d] = %v, want %v", i, back[i], s[i])
					}
				}
				for i := range got {
					if got[i] != spec[i] {
						t.Fatal("Inverse modified its input")
					}
				}
				back2 := make([]float32, len(s)+1)[1:]
				p.Inverse(back2, got)
				for i := range s {
					if d := math.Abs(float64(back2[i] - s[i])); d > 1e-5 {
						t.Fatalf("unaligned round trip [%d] = %v, want %v", i, back2[i], s[i])
					}
				}
			})
		}
	}
}

// TestLinearityAndDelta checks the normalization: the DFT of a unit delta at
// the origin is all ones, and Inverse of all ones is the delta.
func TestDelta(t *testing.T) {
	for _, im := range testImpls {
		p, err := im.new(6, 10)
		if err != nil {
			t.Fatal(err)
		}
		s := make([]float32, 60)
		s[0] = 1
		f := p.Forward(nil, s)
		for i, v := range f {
			if cmplx.Abs(complex128(v)-1) > 1e-6 {
				t.Fatalf("%s: delta spectrum[%d] = %v, want 1", im.name, i, v)
			}
		}
		b := p.Inverse(nil, f)
		for i, v := range b {
			want := float32(0)
			if i == 0 {
				want = 1
			}
			if math.Abs(float64(v-want)) > 1e-6 {
				t.Fatalf("%s: inverse[%d] = %v, want %v", im.name, i, v, want)
			}
		}
	}
}

// TestImplementationsAgree compares every implementation with the first.
func TestImplementationsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := randReal(rng, 32*24)
	ref, _ := testImpls[0].new(32, 24)
	want := ref.Forward(nil, s)
	for _, im := range testImpls[1:] {
		p, _ := im.new(32, 24)
		got := p.Forward(nil, s)
		for i := range want {
			if cmplx.Abs(complex128(got[i]-want[i])) > 1e-4 {
				t.Fatalf("%s vs %s at %d: %v vs %v", im.name, testImpls[0].name, i, got[i], want[i])
			}
		}
	}
}

// TestConcurrent runs many plans of one size from many goroutines; under
// -race this also checks the planner lock.
func TestConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := randReal(rng, 16*16)
	p0, err := New(16, 16)
	if err != nil {
		t.Fatal(err)
	}
	want := p0.Forward(nil, s)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := New(16, 16)
			if err != nil {
				errs <- err
				return
			}
			dst := MakeComplex64(ComplexLen(16, 16))
			for it := 0; it < 200; it++ {
				p.Forward(dst, s)
				for i := range dst {
					if dst[i] != want[i] {
						errs <- fmt.Errorf("goroutine result differs at %d", i)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestBadSize(t *testing.T) {
	for _, sz := range []struct{ h, w int }{{0, 4}, {4, 0}, {-1, 3}} {
		for _, im := range testImpls {
			_, err := im.new(sz.h, sz.w)
			var se *SizeError
			if !errors.As(err, &se) {
				t.Errorf("%s(%d,%d): err = %v, want *SizeError", im.name, sz.h, sz.w, err)
			}
		}
	}
}

func TestAlignedAlloc(t *testing.T) {
	for n := 1; n < 40; n++ {
		f := MakeFloat32(n)
		c := MakeComplex64(n)
		if len(f) != n || len(c) != n {
			t.Fatal("wrong length")
		}
		if uintptrOf(f)%Alignment != 0 || uintptrOfC(c)%Alignment != 0 {
			t.Fatalf("n=%d: not aligned", n)
		}
	}
}

func BenchmarkForward(b *testing.B) {
	for _, im := range testImpls {
		for _, n := range []int{32, 128} {
			b.Run(fmt.Sprintf("%s/%dx%d", im.name, n, n), func(b *testing.B) {
				p, _ := im.new(n, n)
				s := MakeFloat32(n * n)
				copy(s, randReal(rand.New(rand.NewPCG(1, 1)), n*n))
				dst := MakeComplex64(ComplexLen(n, n))
				b.ReportAllocs()
				for b.Loop() {
					p.Forward(dst, s)
				}
			})
		}
	}
}

func BenchmarkInverse(b *testing.B) {
	for _, im := range testImpls {
		for _, n := range []int{32, 128} {
			b.Run(fmt.Sprintf("%s/%dx%d", im.name, n, n), func(b *testing.B) {
				p, _ := im.new(n, n)
				s := MakeFloat32(n * n)
				copy(s, randReal(rand.New(rand.NewPCG(1, 1)), n*n))
				spec := p.Forward(nil, s)
				b.ReportAllocs()
				for b.Loop() {
					p.Inverse(s, spec)
				}
			})
		}
	}
}

// TestPow2MatchesGonum compares the radix-2 path of GoPlan with its gonum
// path on power-of-two sizes, both ways.
func TestPow2MatchesGonum(t *testing.T) {
	for _, sz := range []struct{ h, w int }{{1, 2}, {2, 4}, {8, 16}, {32, 32}, {64, 8}} {
		p, err := NewGoPlan(sz.h, sz.w)
		if err != nil || p.p2 == nil {
			t.Fatalf("%dx%d: radix-2 path not taken (%v)", sz.h, sz.w, err)
		}
		g, err := newGonumPlan(sz.h, sz.w)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(7, uint64(sz.h*sz.w)))
		s := randReal(rng, sz.h*sz.w)
		a, b := p.Forward(nil, s), g.Forward(nil, s)
		for i := range a {
			if cmplx.Abs(complex128(a[i]-b[i])) > 1e-5 {
				t.Fatalf("%dx%d: Forward[%d] %v vs gonum %v", sz.h, sz.w, i, a[i], b[i])
			}
		}
		x, y := p.Inverse(nil, a), g.Inverse(nil, a)
		for i := range x {
			if math.Abs(float64(x[i]-y[i])) > 1e-6 {
				t.Fatalf("%dx%d: Inverse[%d] %v vs gonum %v", sz.h, sz.w, i, x[i], y[i])
			}
		}
	}
}

// TestPlan64 checks the double-precision plan against the naive DFT, the
// round trip, allocation on nil destinations and that inputs are kept.
func TestPlan64(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.h, sz.w), func(t *testing.T) {
			p, err := NewPlan64(sz.h, sz.w)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(9, uint64(sz.h*100+sz.w)))
			s32 := randReal(rng, sz.h*sz.w)
			s := make([]float64, len(s32))
			for i, v := range s32 {
				s[i] = float64(v)
			}
			orig := slices.Clone(s)
			want := naiveDFT(s32, sz.h, sz.w)
			got := p.Forward(nil, s)
			for i := range want {
				if d := cmplx.Abs(got[i] - want[i]); d > 1e-9*float64(sz.h*sz.w) {
					t.Fatalf("Forward[%d] = %v, want %v", i, got[i], want[i])
				}
			}
			if !slices.Equal(s, orig) {
				t.Fatal("Forward modified its input")
			}
			spec := slices.Clone(got)
			back := make([]float64, len(s))
			if r := p.Inverse(back, got); &r[0] != &back[0] {
				t.Fatal("Inverse did not return its destination")
			}
			for i := range s {
				if math.Abs(back[i]-s[i]) > 1e-12 {
					t.Fatalf("round trip [%d] = %v, want %v", i, back[i], s[i])
				}
			}
			if !slices.Equal(got, spec) {
				t.Fatal("Inverse modified its input")
			}
			if h, w := p.Size(); h != sz.h || w != sz.w {
				t.Fatalf("Size() = %d,%d", h, w)
			}
		})
	}
	if _, err := NewPlan64(0, 4); err == nil {
		t.Error("NewPlan64(0, 4): no error")
	}
}
