package attack

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkAttacks measures the per-image cost of each attack with the
// paper's settings on the small test MLP (8x8 grey images, batch of 60);
// the ns/image metric is what to compare. The cost on a real classifier is
// dominated by its forward and backward passes: see `stl bench attack`.
func BenchmarkAttacks(b *testing.B) {
	f := getFixture(b)
	pgdL2 := DefaultPGDOptions()
	pgdL2.Budget = Budget{Norm: L2Rel, Eps: 0.04}
	mk := func(a Attack, err error) Attack {
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	cases := []Attack{
		mk(NewFGSM(DefaultFGSMOptions())),
		mk(NewBIM(DefaultBIMOptions())),
		mk(NewPGD(DefaultPGDOptions())),
		mk(NewPGD(pgdL2)),
		mk(NewDeepFool(DefaultDeepFoolOptions())),
		mk(NewCW(DefaultCWOptions())),
	}
	for _, a := range cases {
		b.Run(a.Name(), func(b *testing.B) {
			b.ReportAllocs()
			passes := 0
			for b.Loop() {
				r, err := a.Run(context.Background(), f.m, f.x, f.labels)
				if err != nil {
					b.Fatal(err)
				}
				passes += r.Passes
			}
			n := float64(b.N * len(f.labels))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/image")
			b.ReportMetric(float64(passes)/float64(b.N), "passes/batch")
		})
	}
}

// BenchmarkProject measures the projection onto the L2 and L-infinity
// balls of a 32x32 RGB batch of 64 images.
func BenchmarkProject(b *testing.B) {
	const n, d = 64, 3 * 32 * 32
	rng := rand.New(rand.NewPCG(1, 2))
	x0 := make([]float32, n*d)
	for i := range x0 {
		x0[i] = rng.Float32()
	}
	adv := make([]float32, n*d)
	for _, bud := range []Budget{{Norm: L2Rel, Eps: 0.04}, {Norm: LInf, Eps: 0.031}} {
		r := radii(bud, x0, n, d)
		b.Run(bud.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for i := range adv {
					adv[i] = x0[i] + 0.1*(rng.Float32()-0.5)
				}
				b.StartTimer()
				project(bud, adv, x0, r, d)
			}
		})
	}
}
