package csc

import (
	"bytes"
	_ "embed"
	"fmt"

	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// The shipped sample (testdata/README.md): SPORCO's reference dictionary
// (the paper's CIFAR-10 dictionary, 64 filters 8x8x3) and two crops of the
// Kodak image kodim23 with their Tikhonov highpass parts, embedded so that
// the command line's demo and benchmarks need no files.
var (
	//go:embed testdata/dict.npy
	sampleDict []byte
	//go:embed testdata/img32.npy
	sampleImg32 []byte
	//go:embed testdata/img32_hi.npy
	sampleImg32Hi []byte
	//go:embed testdata/img128.npy
	sampleImg128 []byte
	//go:embed testdata/img128_hi.npy
	sampleImg128Hi []byte
)

// SampleDictionary returns a new copy of the shipped dictionary (64 filters
// of 8x8x3, each channel zero-mean, each filter unit norm).
func SampleDictionary() *Dictionary {
	d, err := DecodeDictionary(bytes.NewReader(sampleDict))
	if err != nil {
		panic(fmt.Sprintf("csc: embedded sample dictionary: %v", err)) // the embedded file is fixed
	}
	return d
}

// SampleImage returns a new (1, 3, H, W) copy of a shipped image: "img32"
// or "img128" (pixels in [0, 1], channels B, G, R), or their highpass parts
// "img32_hi" and "img128_hi". It returns an error for another name.
func SampleImage(name string) (*tensor.Tensor, error) {
	var b []byte
	switch name {
	case "img32":
		b = sampleImg32
	case "img32_hi":
		b = sampleImg32Hi
	case "img128":
		b = sampleImg128
	case "img128_hi":
		b = sampleImg128Hi
	default:
		return nil, fmt.Errorf("csc: no sample image %q (have img32, img32_hi, img128, img128_hi)", name)
	}
	t, err := npy.Read(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return ImagesFromSPORCO(t)
}

// cutTiles cuts n size×size tiles from the first image of img at offsets
// drawn from a generator seeded with seed.
func cutTiles(img *tensor.Tensor, n, size int, seed uint64) *tensor.Tensor {
	_, c, h, w, _ := img.NCHW()
	out := tensor.New(n, c, size, size)
	st := seed*0x9E3779B97F4A7C15 + 1
	next := func(k int) int {
		st ^= st << 13
		st ^= st >> 7
		st ^= st << 17
		return int(st % uint64(k))
	}
	for i := 0; i < n; i++ {
		oy, ox := next(h-size+1), next(w-size+1)
		for ch := 0; ch < c; ch++ {
			for y := 0; y < size; y++ {
				copy(out.Data[((i*c+ch)*size+y)*size:][:size], img.Data[(ch*h+oy+y)*w+ox:][:size])
			}
		}
	}
	return out
}

// perturbSign returns x plus eps times a seeded random sign per value,
// clipped to [0, 1]: an attacked image's stand-in (an L-inf perturbation
// of size eps at every pixel, as FGSM's) for the warm-start tests and
// benchmarks.
func perturbSign(x *tensor.Tensor, eps float32, seed uint64) *tensor.Tensor {
	y := x.Clone()
	st := seed*0x9E3779B97F4A7C15 + 1
	for i, v := range y.Data {
		st ^= st << 13
		st ^= st >> 7
		st ^= st << 17
		s := eps
		if st&1 == 0 {
			s = -eps
		}
		y.Data[i] = min(1, max(0, v+s))
	}
	return y
}
