package fft

import (
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"slices"
	"testing"
)

type testBatchImpl struct {
	name string
	new  func(h, w, n int) (BatchPlan2D, error)
}

var testBatchImpls = []testBatchImpl{
	{"gonum", func(h, w, n int) (BatchPlan2D, error) { return NewGoBatchPlan(h, w, n) }},
}

// TestBatchConformance checks every batch implementation against single
// transforms of the first single implementation, with aligned and
// unaligned arrays.
func TestBatchConformance(t *testing.T) {
	for _, im := range testBatchImpls {
		for _, sz := range []struct{ h, w, n int }{{1, 1, 1}, {4, 7, 3}, {8, 8, 5}, {5, 6, 2}, {32, 32, 4}} {
			t.Run(fmt.Sprintf("%s/%dx%dx%d", im.name, sz.h, sz.w, sz.n), func(t *testing.T) {
				b, err := im.new(sz.h, sz.w, sz.n)
				if err != nil {
					t.Fatal(err)
				}
				if h, w, n := b.Size(); h != sz.h || w != sz.w || n != sz.n {
					t.Fatalf("Size() = %d,%d,%d", h, w, n)
				}
				ref, _ := testImpls[0].new(sz.h, sz.w)
				hw, f := sz.h*sz.w, ComplexLen(sz.h, sz.w)
				rng := rand.New(rand.NewPCG(11, uint64(sz.n)))
				for _, offset := range []int{0, 1} {
					src := make([]float32, sz.n*hw+offset)[offset:]
					copy(src, randReal(rng, sz.n*hw))
					orig := append([]float32(nil), src...)
					dst := make([]complex64, sz.n*f+offset)[offset:]
					b.Forward(dst, src)
					for i := 0; i < sz.n; i++ {
						want := ref.Forward(nil, orig[i*hw:(i+1)*hw])
						for k := range want {
							if cmplx.Abs(complex128(dst[i*f+k]-want[k])) > 1e-4 {
								t.Fatalf("offset %d: array %d bin %d: %v, want %v", offset, i, k, dst[i*f+k], want[k])
							}
						}
					}
					for i := range src {
						if src[i] != orig[i] {
							t.Fatal("Forward modified its input")
						}
					}
					if got := b.Forward(nil, src); !slices.Equal(got, dst) {
						t.Fatal("Forward into a nil destination differs")
					}
					spec := slices.Clone(dst)
					back := make([]float32, sz.n*hw+offset)[offset:]
					if r := b.InverseUnnormalized(back, dst); &r[0] != &back[0] {
						t.Fatal("InverseUnnormalized did not return its destination")
					}
					for i := range back {
						if d := math.Abs(float64(back[i])/float64(hw) - float64(orig[i])); d > 1e-5 {
							t.Fatalf("offset %d: round trip [%d] = %v, want %v", offset, i, back[i]/float32(hw), orig[i])
						}
					}
					if got := b.InverseUnnormalized(nil, spec); !slices.Equal(got, back) {
						t.Fatal("InverseUnnormalized into a nil destination differs")
					}
				}
			})
		}
	}
}

func BenchmarkBatch(b *testing.B) {
	for _, im := range testBatchImpls {
		for _, n := range []int{32, 128} {
			b.Run(fmt.Sprintf("%s/64x%dx%d", im.name, n, n), func(b *testing.B) {
				p, _ := im.new(n, n, 64)
				s := MakeFloat32(64 * n * n)
				copy(s, randReal(rand.New(rand.NewPCG(1, 1)), len(s)))
				c := MakeComplex64(64 * ComplexLen(n, n))
				b.ReportAllocs()
				for b.Loop() {
					p.Forward(c, s)
					p.InverseUnnormalized(s, c)
				}
			})
		}
	}
}
