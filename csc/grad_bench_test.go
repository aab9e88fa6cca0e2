package csc

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkProjectionVJP measures one VJP per method on the 32x32
// reference image (64 filters 8x8x3, the projection's defaults, one
// worker) against one forward projection ("project"); each VJP includes
// its own forward solve. cpu-ns/op is the process's CPU time, which does
// not count the time a loaded machine keeps the benchmark waiting.
func BenchmarkProjectionVJP(b *testing.B) {
	ctx := context.Background()
	x := loadImage(b, "img32")
	opt := DefaultProjectOptions()
	opt.CSC.Workers = 1
	p, err := NewProjection(loadDict(b), opt)
	if err != nil {
		b.Fatal(err)
	}
	gy := randTensor(rand.New(rand.NewPCG(1, 1)), x.Shape...)
	b.Run("project", func(b *testing.B) {
		dst := x.Clone()
		c0 := cpuTime()
		for i := 0; i < b.N; i++ {
			if err := p.Project(ctx, dst, x); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, c0)
	})
	for _, m := range []GradMethod{GradImplicit, GradUnrolled} {
		b.Run(m.String(), func(b *testing.B) {
			gopt := DefaultGradOptions()
			gopt.Method = m
			dst := x.Clone()
			b.ReportAllocs()
			var st []GradStats
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, st, err = p.VJP(ctx, dst, x, gy, gopt); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, c0)
			b.ReportMetric(float64(st[0].Iterations), "admm-iters")
			b.ReportMetric(float64(st[0].CGIterations), "cg-iters")
		})
	}
}
