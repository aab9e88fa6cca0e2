package nn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/internal/cputime"
)

// BenchmarkNetworks reports train, inference and input-gradient images/s
// of the two classifiers at batch 128 (the speed targets), per
// convolution backend and thread count. Run by hand:
//
//	go test -run XXX -bench Networks -benchtime 1x ./nn
func BenchmarkNetworks(b *testing.B) {
	for _, arch := range []string{ArchVGGSmall, ArchResNet20} {
		for _, backend := range ConvBackends() {
			if backend == "im2col-gonum" {
				continue
			}
			for _, th := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/%s/threads=%d", arch, backend, th), func(b *testing.B) {
					o := DefaultBenchOptions()
					o.Arch, o.Threads, o.Backend, o.Iters = arch, th, backend, 3
					for i := 0; i < b.N; i++ {
						r, err := Bench(context.Background(), o)
						if err != nil {
							b.Fatal(err)
						}
						b.ReportMetric(r.TrainImgS, "train_img/s")
						b.ReportMetric(r.InferImgS, "infer_img/s")
						b.ReportMetric(r.InputGradImgS, "grad_img/s")
					}
				})
			}
		}
	}
}

func TestBenchSmall(t *testing.T) {
	o := DefaultBenchOptions()
	o.Arch, o.Size, o.Batch, o.Iters = ArchResNet20, 8, 4, 1
	r, err := Bench(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !(r.TrainImgS > 0 && r.InferImgS > 0 && r.InputGradImgS > 0) {
		t.Errorf("%+v", r)
	}
	o.Batch = 1
	if _, err := Bench(context.Background(), o); err == nil {
		t.Error("batch 1 accepted")
	}
}

// BenchmarkConv times forward, backward-data and backward-weights of the
// vgg-small convolution shapes at batch 128 for every backend (GFLOP/s of
// the forward pass: 2*N*K*C*R*S*OH*OW per call).
func BenchmarkConv(b *testing.B) {
	shapes := []ConvParams{
		{N: 128, C: 3, H: 32, W: 32, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 128, C: 32, H: 32, W: 32, K: 32, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 128, C: 64, H: 16, W: 16, K: 64, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
		{N: 128, C: 128, H: 8, W: 8, K: 128, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1},
	}
	for _, name := range ConvBackends() {
		for _, p := range shapes {
			for _, pass := range []string{"fwd", "bwd-data", "bwd-weights"} {
				b.Run(fmt.Sprintf("%s/C%d-K%d-%dpx/%s", name, p.C, p.K, p.H, pass), func(b *testing.B) {
					k, err := newConvKernel(name, p, 1, nil)
					if err != nil {
						b.Skip(err)
					}
					defer k.Close()
					oh, ow := p.OutHW()
					src := make([]float32, p.N*p.C*p.H*p.W)
					dst := make([]float32, p.N*p.K*oh*ow)
					w := make([]float32, p.K*p.C*p.R*p.S)
					db := make([]float32, p.K)
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						switch pass {
						case "fwd":
							err = k.Forward(dst, src, w, nil)
						case "bwd-data":
							err = k.BackwardData(src, dst, w)
						default:
							err = k.BackwardWeights(w, db, src, dst)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					flop := 2.0 * float64(p.N*p.K*p.C*p.R*p.S*oh*ow)
					b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// BenchmarkLayers times the memory-bound layers of the classifiers (batch
// norm with its fused ReLU in training mode, eval-mode batch norm, 2x2 max
// pooling, the residual add) at batch 128 on one thread, reporting GB/s
// of one read and one write of the activation and the process CPU time per
// operation.
//
//	go test -run '^$' -bench Layers ./nn
func BenchmarkLayers(b *testing.B) {
	acts := []struct{ c, hw int }{{16, 32}, {32, 32}, {64, 16}, {128, 8}}
	for _, a := range acts {
		rng := rand.New(rand.NewPCG(1, 2))
		x := randTensor(rng, 128, a.c, a.hw, a.hw)
		dy := randTensor(rng, 128, a.c, a.hw, a.hw)
		bytes := 8 * float64(len(x.Data))
		bn := NewBatchNorm2D(a.c, 1)
		bn.ReLU = true
		pool := &MaxPool2D{K: 2, Stride: 2, Threads: 1}
		res := &Residual{Body: &ReLU{}, ReLU: true}
		cases := []struct {
			name string
			f    func()
		}{
			{"bn-relu-train-fwd", func() { bn.Forward(x, true) }},
			{"bn-relu-train-bwd", func() {
				bn.Forward(x, true)
				copy(dy.Data, x.Data)
				bn.Backward(dy, GradMode{Input: true, Params: true})
			}},
			{"bn-relu-eval-fwd", func() { bn.Forward(x, false) }},
			{"maxpool-fwd", func() { pool.Forward(x, false) }},
			{"maxpool-bwd", func() {
				y := pool.Forward(x, false)
				pool.Backward(y, GradMode{Input: true})
			}},
			{"residual-fwd", func() { res.Forward(x, true) }},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s/%dx%d@%d", c.name, a.c, a.hw, a.hw), func(b *testing.B) {
				c.f()
				b.ReportAllocs()
				b.ResetTimer()
				c0 := cputime.Process()
				for i := 0; i < b.N; i++ {
					c.f()
				}
				b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
				// CPU time is less disturbed by other jobs than wall time.
				b.ReportMetric(float64(cputime.Process()-c0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
