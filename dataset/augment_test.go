package dataset

import (
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// shifted is a naive reference: image (c, h, w) shifted by (dy, dx) with
// zero fill, then mirrored if flip.
func shifted(src []float32, c, h, w, dy, dx int, flip bool) []float32 {
	out := make([]float32, len(src))
	for ch := 0; ch < c; ch++ {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				xx := x
				if flip {
					xx = w - 1 - x
				}
				sy, sx := y+dy, xx+dx
				if sy >= 0 && sy < h && sx >= 0 && sx < w {
					out[(ch*h+y)*w+x] = src[(ch*h+sy)*w+sx]
				}
			}
		}
	}
	return out
}

func TestAugmenter(t *testing.T) {
	const n, c, h, w = 200, 2, 5, 6
	src := tensor.New(n, c, h, w)
	for i := range src.Data {
		src.Data[i] = float32(i%97+1) / 100
	}
	a, err := NewAugmenter(AugmentOptions{Pad: 2, Flip: true}, 42)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := a.Apply(nil, src)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[3]int]int{}
	p := c * h * w
	for i := 0; i < n; i++ {
		img, out := src.Data[i*p:(i+1)*p], dst.Data[i*p:(i+1)*p]
		found := false
		for dy := -2; dy <= 2 && !found; dy++ {
			for dx := -2; dx <= 2 && !found; dx++ {
				for _, flip := range []bool{false, true} {
					if equalF32(out, shifted(img, c, h, w, dy, dx, flip)) {
						found = true
						f := 0
						if flip {
							f = 1
						}
						seen[[3]int{dy, dx, f}]++
						break
					}
				}
			}
		}
		if !found {
			t.Fatalf("image %d is no shift/flip of its source", i)
		}
	}
	if len(seen) < 40 { // 50 combinations, 200 draws
		t.Errorf("only %d of 50 shift/flip combinations drawn in %d images", len(seen), n)
	}
	// Same seed, same result; dst reuse.
	b, _ := NewAugmenter(AugmentOptions{Pad: 2, Flip: true}, 42)
	again, err := b.Apply(tensor.New(n, c, h, w), src)
	if err != nil || !equalF32(again.Data, dst.Data) {
		t.Errorf("same seed gave a different batch (err %v)", err)
	}
	// Pad 0 without flip is the identity.
	id, _ := NewAugmenter(AugmentOptions{}, 1)
	out, _ := id.Apply(nil, src)
	if !equalF32(out.Data, src.Data) {
		t.Error("Pad 0, no flip changed the batch")
	}
	if _, err := a.Apply(tensor.New(1, 1, 1, 1), src); err == nil {
		t.Error("wrong dst shape: no error")
	}
	if _, err := NewAugmenter(AugmentOptions{Pad: -1}, 1); err == nil {
		t.Error("negative pad accepted")
	}
}
