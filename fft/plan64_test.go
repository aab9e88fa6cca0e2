package fft

import (
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPlan64 checks the double-precision plan against the naive DFT, the
// round trip, allocation on nil destinations and that inputs are kept.
func TestPlan64(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.h, sz.w), func(t *testing.T) {
			p, err := NewPlan64(sz.h, sz.w)
			if err != nil {
				t.Fatal(err)
			}
			if h, w := p.Size(); h != sz.h || w != sz.w {
				t.Fatalf("Size() = %d,%d", h, w)
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
		})
	}
	if _, err := NewPlan64(0, 4); err == nil {
		t.Error("NewPlan64(0, 4): no error")
	}
}
