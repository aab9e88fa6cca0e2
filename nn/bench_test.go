package nn

import (
	"context"
	"fmt"
	"testing"
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
