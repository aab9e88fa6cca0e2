package nn

import (
	"math/rand/v2"

	"github.com/stl-defense/stl/internal/augment"
	"github.com/stl-defense/stl/tensor"
)

// augmentInto copies images idx of src into dst (len(idx), C, H, W),
// applying a random crop of the zero-padded image (pad pixels each side)
// and a random horizontal flip when flip is set. For each image, in
// order, it draws the vertical then the horizontal shift in [-pad, pad]
// (no draw when pad is 0) and then, when flip is set, a coin.
func augmentInto(dst []float32, src *tensor.Tensor, idx []int, pad int, flip bool, rng *rand.Rand) {
	c, h, w := src.Shape[1], src.Shape[2], src.Shape[3]
	per := c * h * w
	for i, j := range idx {
		dy, dx := 0, 0
		if pad > 0 {
			dy, dx = rng.IntN(2*pad+1)-pad, rng.IntN(2*pad+1)-pad
		}
		fl := flip && rng.IntN(2) == 1
		augment.ShiftFlip(dst[i*per:(i+1)*per], src.Data[j*per:(j+1)*per], c, h, w, dy, dx, fl)
	}
}

// cutoutInto sets, in each image of the batch x (shape N, C, H, W), a
// size x size square centred at a uniformly random pixel to 0.5 in every
// channel; the square is clipped at the image borders.
func cutoutInto(x []float32, shape []int, size int, rng *rand.Rand) {
	n, c, h, w := shape[0], shape[1], shape[2], shape[3]
	per := c * h * w
	for i := 0; i < n; i++ {
		cy, cx := rng.IntN(h), rng.IntN(w)
		y0, y1 := max(cy-size/2, 0), min(cy-size/2+size, h)
		x0, x1 := max(cx-size/2, 0), min(cx-size/2+size, w)
		img := x[i*per : (i+1)*per]
		for ch := 0; ch < c; ch++ {
			for y := y0; y < y1; y++ {
				row := img[(ch*h+y)*w : (ch*h+y+1)*w]
				for xx := x0; xx < x1; xx++ {
					row[xx] = 0.5
				}
			}
		}
	}
}
