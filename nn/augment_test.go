package nn

import (
	"math/rand/v2"
	"testing"
)

// TestCutoutInto checks that cutout grays exactly one clipped square per
// image, the same in every channel, and leaves every other pixel alone.
func TestCutoutInto(t *testing.T) {
	const n, c, h, w = 50, 3, 9, 7
	for _, size := range []int{1, 3, 4, 20} {
		x := make([]float32, n*c*h*w)
		for i := range x {
			x[i] = -1
		}
		cutoutInto(x, []int{n, c, h, w}, size, rand.New(rand.NewPCG(1, 2)))
		for i := 0; i < n; i++ {
			var ys, xs []int
			for y := 0; y < h; y++ {
				for xx := 0; xx < w; xx++ {
					g := x[((i*c)+0)*h*w+y*w+xx]
					for ch := 1; ch < c; ch++ {
						if x[((i*c)+ch)*h*w+y*w+xx] != g {
							t.Fatalf("size %d image %d: channels differ at (%d,%d)", size, i, y, xx)
						}
					}
					switch g {
					case 0.5:
						ys, xs = append(ys, y), append(xs, xx)
					case -1:
					default:
						t.Fatalf("size %d: unexpected value %g", size, g)
					}
				}
			}
			if len(ys) == 0 {
				t.Fatalf("size %d image %d: nothing cut", size, i)
			}
			y0, y1, x0, x1 := ys[0], ys[len(ys)-1], xs[0], xs[0]
			for _, v := range xs {
				x0, x1 = min(x0, v), max(x1, v)
			}
			if got := (y1 - y0 + 1) * (x1 - x0 + 1); got != len(ys) {
				t.Fatalf("size %d image %d: cut region of %d pixels is not a rectangle", size, i, len(ys))
			}
			if y1-y0+1 > size || x1-x0+1 > size {
				t.Fatalf("size %d image %d: cut %dx%d", size, i, y1-y0+1, x1-x0+1)
			}
			if size <= min(h, w)/2 && y0 > 0 && y1 < h-1 && x0 > 0 && x1 < w-1 && (y1-y0+1 != size || x1-x0+1 != size) {
				t.Fatalf("size %d image %d: interior cut is %dx%d", size, i, y1-y0+1, x1-x0+1)
			}
		}
	}
}
