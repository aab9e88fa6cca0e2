package baseline

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// BenchmarkBaselines measures the per-image cost of each baseline on one
// 32x32x3 CIFAR-10 image (b.N images, one Apply per image, so ns/op is the
// per-image cost). Quilting uses a database of BenchQuiltPatches patches
// built from the training fixtures (the default 100,000 needs a training
// set; see BenchmarkQuiltDBSize), D3 a dictionary of its default 10,000
// atoms from them.
func BenchmarkBaselines(b *testing.B) {
	x := loadBaselineStrip(b, "cifar4.png")
	one := &tensor.Tensor{Shape: []int{1, 3, 32, 32}, Data: x.Data[:3*32*32]}
	cfg := DefaultConfig()
	cfg.QuiltDB = testPatchDB(b)
	dae, err := NewMagNetDAE(DefaultMagNetDAEOptions())
	if err != nil {
		b.Fatal(err)
	}
	cfg.Reformer = dae
	ctx := context.Background()
	// D3 at its default 10,000 atoms: every 8x8 patch of the 16
	// training fixtures.
	do := DefaultD3DictionaryOptions()
	if cfg.D3Dict, err = BuildD3Dictionary(ctx, loadBaselineStrip(b, "cifar-train16.png"), do); err != nil {
		b.Fatal(err)
	}
	for _, name := range Names() {
		t, err := New(name, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := t.Apply(ctx, one); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQuiltDBSize measures quilting one 32x32x3 image against
// databases of growing size, from the CIFAR-10 training set in
// ../shared/data when present (skipped otherwise), else from the fixtures.
func BenchmarkQuiltDBSize(b *testing.B) {
	train := loadBaselineStrip(b, "cifar-train16.png")
	if _, err := os.Stat(sharedCIFARTrain); err == nil {
		if t, err := readCIFARBatch(sharedCIFARTrain, 2000); err == nil {
			train = t
		}
	}
	x := loadBaselineStrip(b, "cifar4.png")
	one := &tensor.Tensor{Shape: []int{1, 3, 32, 32}, Data: x.Data[:3*32*32]}
	ctx := context.Background()
	for _, size := range []int{10000, 100000, 1000000} {
		o := DefaultPatchDBOptions()
		o.MaxPatches = size
		db, err := BuildPatchDB(ctx, train, o)
		if err != nil {
			b.Fatal(err)
		}
		if db.Len() < size {
			continue // not enough training images for this size
		}
		q, _ := NewQuilting(db, DefaultQuiltOptions())
		b.Run(fmt.Sprintf("patches=%d", size), func(b *testing.B) {
			for b.Loop() {
				if _, err := q.Apply(ctx, one); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// sharedCIFARTrain is the CIFAR-10 training batch of the development
// machine; benchmarks use it when present and fall back to the fixtures.
const sharedCIFARTrain = "../../shared/data/cifar10/data_batch_1.bin.gz"

// readCIFARBatch reads the first n images of a gzipped CIFAR-10 binary batch.
func readCIFARBatch(path string, n int) (*tensor.Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	x := tensor.New(n, 3, 32, 32)
	rec := make([]byte, 3073)
	for i := 0; i < n; i++ {
		if _, err := io.ReadFull(zr, rec); err != nil {
			return nil, err
		}
		for k, v := range rec[1:] {
			x.Data[i*3072+k] = float32(v) / 255
		}
	}
	return x, nil
}
