//go:build cgo && !purego

package dnnl

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The batch-norm and pooling shapes of vgg-small at batch 128.
var vggActs = []struct{ c, hw int }{{32, 32}, {64, 16}, {128, 8}}

// goBatchNormTrain is a plain single-threaded Go batch norm (two passes for
// the statistics, one to normalize), the baseline the oneDNN one is compared
// with.
func goBatchNormTrain(p BatchNormParams, dst, mean, variance, src, gamma, beta []float32) {
	hw, m := p.H*p.W, float64(p.N*p.H*p.W)
	for c := 0; c < p.C; c++ {
		var s float64
		for n := 0; n < p.N; n++ {
			for _, v := range src[(n*p.C+c)*hw : (n*p.C+c+1)*hw] {
				s += float64(v)
			}
		}
		mu := float32(s / m)
		var q float64
		for n := 0; n < p.N; n++ {
			for _, v := range src[(n*p.C+c)*hw : (n*p.C+c+1)*hw] {
				d := v - mu
				q += float64(d * d)
			}
		}
		mean[c], variance[c] = mu, float32(q/m)
		a := gamma[c] / float32(math.Sqrt(q/m+float64(p.Epsilon)))
		b := beta[c] - a*mu
		for n := 0; n < p.N; n++ {
			o := (n*p.C + c) * hw
			d, s := dst[o:o+hw], src[o:o+hw]
			for i := range d {
				d[i] = a*s[i] + b
			}
		}
	}
}

// BenchmarkBatchNorm times oneDNN's batch norm on plain NCHW (training
// forward and backward) against goBatchNormTrain, reporting GB/s of the
// data array read and written (2 x 4 bytes per element forward, 3 x 4
// backward).
//
//	go test -run '^$' -bench BatchNorm ./nn/dnnl
func BenchmarkBatchNorm(b *testing.B) {
	defer SetThreads(Threads())
	for _, a := range vggActs {
		p := BatchNormParams{N: benchBatch, C: a.c, H: a.hw, W: a.hw, Epsilon: DefaultBatchNormEpsilon}
		n := p.N * p.C * p.H * p.W
		rng := rand.New(rand.NewPCG(1, 1))
		x, dy, y, dx := randSlice(rng, n), randSlice(rng, n), make([]float32, n), make([]float32, n)
		g, be, mean, vr, dg, db := randSlice(rng, p.C), randSlice(rng, p.C), make([]float32, p.C), make([]float32, p.C), make([]float32, p.C), make([]float32, p.C)
		for _, threads := range []int{1, 2} {
			SetThreads(threads)
			bn, err := NewBatchNorm(p)
			if err != nil {
				b.Fatal(err)
			}
			run := func(name string, bytes float64, f func() error) {
				b.Run(fmt.Sprintf("%dx%d@%d/%s/t%d", a.c, a.hw, a.hw, name, threads), func(b *testing.B) {
					b.ReportAllocs()
					if err := f(); err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if err := f(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
				})
			}
			run("fwd_train/dnnl", 8*float64(n), func() error { return bn.ForwardTraining(y, mean, vr, x, g, be) })
			run("bwd/dnnl", 12*float64(n), func() error { return bn.Backward(dx, dg, db, x, dy, mean, vr, g) })
			pr := p
			pr.FuseReLU = true
			bnr, err := NewBatchNorm(pr)
			if err != nil {
				b.Fatal(err)
			}
			run("fwd_train_relu/dnnl", 8*float64(n), func() error { return bnr.ForwardTraining(y, mean, vr, x, g, be) })
			run("bwd_relu/dnnl", 12*float64(n), func() error { return bnr.Backward(dx, dg, db, x, dy, mean, vr, g) })
			bnr.Close()
			if threads == 1 {
				run("fwd_train/go", 8*float64(n), func() error { goBatchNormTrain(p, y, mean, vr, x, g, be); return nil })
			}
			bn.Close()
		}
	}
}

// BenchmarkMaxPool times oneDNN's 2x2 stride-2 max pooling of the vgg-small
// activations, reporting GB/s of the input read (forward) or written
// (backward).
func BenchmarkMaxPool(b *testing.B) {
	defer SetThreads(Threads())
	for _, a := range vggActs {
		p := PoolParams{N: benchBatch, C: a.c, H: a.hw, W: a.hw, R: 2, S: 2, StrideH: 2, StrideW: 2}
		rng := rand.New(rand.NewPCG(1, 1))
		x, dx, y, dy := randSlice(rng, p.srcLen()), make([]float32, p.srcLen()), make([]float32, p.dstLen()), randSlice(rng, p.dstLen())
		for _, threads := range []int{1, 2} {
			SetThreads(threads)
			q, err := NewPool(p)
			if err != nil {
				b.Fatal(err)
			}
			for _, pass := range []struct {
				name string
				f    func() error
			}{{"fwd", func() error { return q.Forward(y, x) }}, {"bwd", func() error { return q.Backward(dx, dy) }}} {
				b.Run(fmt.Sprintf("%dx%d@%d/%s/t%d", a.c, a.hw, a.hw, pass.name, threads), func(b *testing.B) {
					b.ReportAllocs()
					if err := q.Forward(y, x); err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if err := pass.f(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(4*float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
				})
			}
			q.Close()
		}
	}
}
