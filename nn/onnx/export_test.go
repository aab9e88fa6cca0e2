package onnx

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stl-defense/stl/internal/torchparity"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// randomClassifier returns a classifier of arch whose batch norms have
// random affine parameters and running statistics, so that exporting them
// is checked.
func randomClassifier(t *testing.T, arch string) *nn.Classifier {
	t.Helper()
	cfg := nn.DefaultClassifierConfig()
	cfg.Arch, cfg.Threads = arch, 1
	m, err := nn.NewClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, p := range m.Params() {
		if len(p.Shape) != 1 {
			continue
		}
		for i := range p.W {
			switch {
			case strings.HasSuffix(p.Name, "running_var"), strings.HasSuffix(p.Name, "weight"):
				p.W[i] = 0.5 + rng.Float32()
			default:
				p.W[i] = float32(rng.NormFloat64()) * 0.1
			}
		}
	}
	return m
}

// TestExportRoundTrip exports stl's classifiers to ONNX, imports them
// back and compares logits and input gradients with the originals.
func TestExportRoundTrip(t *testing.T) {
	for _, arch := range []string{nn.ArchVGGSmall, nn.ArchResNet20} {
		t.Run(arch, func(t *testing.T) {
			m := randomClassifier(t, arch)
			var buf bytes.Buffer
			if err := Export(&buf, m); err != nil {
				t.Fatal(err)
			}
			p, err := Decode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Import(p, 1)
			if err != nil {
				t.Fatal(err)
			}
			if c, h, w := back.InputShape(); c != 3 || h != 32 || w != 32 || back.NumClasses() != 10 {
				t.Fatalf("imported input %dx%dx%d, %d classes", c, h, w, back.NumClasses())
			}
			rng := rand.New(rand.NewPCG(9, 10))
			x := tensor.New(5, 3, 32, 32)
			for i := range x.Data {
				x.Data[i] = rng.Float32()
			}
			labels := []int{0, 3, 9, 1, 4}
			want := torchparity.Reference{X: x, Labels: labels}
			if want.Logits, want.Grad, err = m.InputGrad(context.Background(), x, torchparity.CrossEntropySeed(labels)); err != nil {
				t.Fatal(err)
			}
			torchparity.Check(t, back, want, 1e-5)
		})
	}
}

// TestEncodeDecode checks that Decode reads back what Encode writes.
func TestEncodeDecode(t *testing.T) {
	m, err := Unmarshal(readModel(t, "residual"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Unmarshal(Marshal(m))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Marshal(again), Marshal(m)) {
		t.Fatal("Marshal(Unmarshal(Marshal(m))) differs from Marshal(m)")
	}
	if len(again.Graph.Nodes) != len(m.Graph.Nodes) || len(again.Graph.Initializers) != len(m.Graph.Initializers) {
		t.Fatalf("%d nodes, %d initializers; want %d, %d", len(again.Graph.Nodes), len(again.Graph.Initializers), len(m.Graph.Nodes), len(m.Graph.Initializers))
	}
}
