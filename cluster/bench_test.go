package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

func randomCodes(n, d int, seed uint64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := tensor.New(n, d)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

// BenchmarkKNNVote measures the cluster vote of 256 queries against N
// training codes of 128 dimensions (CIFAR-10's 40,000 at the largest).
func BenchmarkKNNVote(b *testing.B) {
	for _, n := range []int{2000, 40000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ref := randomCodes(n, 128, 1)
			labels := make([]int, n)
			for i := range labels {
				labels[i] = i % 4
			}
			v, err := NewKNN(ref, labels, DefaultKNNOptions())
			if err != nil {
				b.Fatal(err)
			}
			q := randomCodes(256, 128, 2)
			dst := make([]int, 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Vote(dst, q); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(256*b.N)/b.Elapsed().Seconds(), "queries/s")
		})
	}
}

// BenchmarkFit measures PCA from 512 to 128 dimensions and k-means++ with
// 4 clusters and one restart on N codes.
func BenchmarkFit(b *testing.B) {
	for _, n := range []int{2000, 10000} {
		raw := randomCodes(n, 512, 3)
		b.Run(fmt.Sprintf("PCA/N=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := FitPCA(context.Background(), raw, DefaultPCAOptions()); err != nil {
					b.Fatal(err)
				}
			}
		})
		codes := randomCodes(n, 128, 4)
		b.Run(fmt.Sprintf("KMeans/N=%d", n), func(b *testing.B) {
			opt := DefaultKMeansOptions()
			opt.Restarts = 1
			for i := 0; i < b.N; i++ {
				if _, err := FitKMeans(context.Background(), codes, opt, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
