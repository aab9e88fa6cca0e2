package onnx

import (
	"bytes"
	"context"
	"testing"

	"github.com/stl-defense/stl/internal/torchparity"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// BenchmarkExported compares stl's classifiers run natively and exported
// to ONNX and imported (one thread, 32 images of 32 x 32): the cost of the
// graph executor against nn's fused layers.
func BenchmarkExported(b *testing.B) {
	x := tensor.New(32, 3, 32, 32)
	for i := range x.Data {
		x.Data[i] = float32(i%251) / 251
	}
	labels := make([]int, 32)
	seed := torchparity.CrossEntropySeed(labels)
	for _, arch := range []string{nn.ArchVGGSmall, nn.ArchResNet20} {
		cfg := nn.DefaultClassifierConfig()
		cfg.Arch, cfg.Threads = arch, 1
		native, err := nn.NewClassifier(cfg)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		if err := Export(&buf, native); err != nil {
			b.Fatal(err)
		}
		p, err := Decode(&buf)
		if err != nil {
			b.Fatal(err)
		}
		imported, err := Import(p, 1)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range []struct {
			name  string
			model torchparity.Model
		}{{"native", native}, {"onnx", imported}} {
			b.Run(arch+"/"+m.name+"/inputgrad", func(b *testing.B) {
				for b.Loop() {
					if _, _, err := m.model.InputGrad(context.Background(), x, seed); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(32*b.N)/b.Elapsed().Seconds(), "images/s")
			})
		}
	}
}
