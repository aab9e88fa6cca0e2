package dataset

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"os"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// BenchmarkReadBinary decodes the CIFAR-10 sample's 2,000 train records
// from memory (no gzip): the cost of the record decoder alone.
func BenchmarkReadBinary(b *testing.B) {
	train, _, err := Load("sample:cifar10")
	if err != nil {
		b.Fatal(err)
	}
	var raw bytes.Buffer
	if err := WriteBinary(&raw, train); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(raw.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ReadBinary(bytes.NewReader(raw.Bytes()), "mem", CIFARShape, CIFAR10Classes, train.Len()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadSample measures Load of each embedded sample (gunzip and
// decode of train and test).
func BenchmarkLoadSample(b *testing.B) {
	for _, spec := range Samples {
		b.Run(spec, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, _, err := Load(spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResizer measures crop + area-average resize of one image,
// for Imagenette-like inputs.
func BenchmarkResizer(b *testing.B) {
	for _, c := range []struct{ w, h, size int }{{213, 160, 64}, {224, 224, 64}, {500, 375, 128}, {32, 32, 0}} {
		img := image.NewYCbCr(image.Rect(0, 0, c.w, c.h), image.YCbCrSubsampleRatio420)
		for i := range img.Y {
			img.Y[i] = uint8(i * 7)
		}
		out := c.size
		if out == 0 {
			out = c.w
		}
		dst := make([]float32, 3*out*out)
		r := NewResizer(c.size)
		b.Run(fmt.Sprintf("%dx%d-to-%d", c.w, c.h, c.size), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := r.Convert(dst, img); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAugment measures crop+flip of a 128-image CIFAR batch.
func BenchmarkAugment(b *testing.B) {
	src := tensor.New(128, 3, 32, 32)
	dst := tensor.New(128, 3, 32, 32)
	a, _ := NewAugmenter(DefaultAugmentOptions(), 1)
	b.SetBytes(int64(4 * len(src.Data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Apply(dst, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadShared loads the full offline copies when present (by hand
// only, in the development setup); it skips on a user's clone.
func BenchmarkLoadShared(b *testing.B) {
	for _, dir := range []string{"/work/shared/data/cifar10", "/work/shared/data/imagenet10"} {
		b.Run(dir, func(b *testing.B) {
			if _, err := os.Stat(dir); err != nil {
				b.Skip("offline data copy not present")
			}
			for i := 0; i < b.N; i++ {
				if _, _, err := LoadContext(context.Background(), dir, DefaultLoadOptions()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
