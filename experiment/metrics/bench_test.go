package metrics

import (
	"fmt"
	"testing"
)

func BenchmarkMeanPSNR(b *testing.B) {
	for _, n := range []int{100, 1000} {
		per := 3 * 32 * 32
		x, ref := make([]float32, n*per), make([]float32, n*per)
		for i := range x {
			x[i], ref[i] = float32(i%251)/251, float32(i%241)/241
		}
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(8 * len(x)))
			for i := 0; i < b.N; i++ {
				if _, err := MeanPSNR(x, ref, per); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBalancedSubset(b *testing.B) {
	for _, n := range []int{10000, 50000} {
		labels := make([]int, n)
		for i := range labels {
			labels[i] = i % 10
		}
		b.Run(fmt.Sprintf("labels=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := BalancedSubset(labels, 10, 1000, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
