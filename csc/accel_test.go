package csc

import (
	"context"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// TestAcceleratedObjective checks that the accelerated solver, stopped by
// the same rule, reaches the plain solver's objective within 1e-4 relative
// on every image (the reference problems and seeded 32x32 and 64x64 tiles)
// and on average, in fewer iterations on the 32x32 problems (at 64x64 and
// 128x128 the gain is smaller and not asserted; see docs/csc.md).
func TestAcceleratedObjective(t *testing.T) {
	d := loadDict(t)
	img128 := loadImage(t, "img128_hi")
	cases := []struct {
		name  string
		imgs  *tensor.Tensor
		fewer bool // the accelerated solver must take fewer iterations
		slow  bool
	}{
		{"img32_hi", loadImage(t, "img32_hi"), true, false},
		{"tiles32", cutTiles(img128, 12, 32, 7), true, false},
		{"tiles64", cutTiles(img128, 3, 64, 7), false, false},
		{"img128_hi", img128, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.slow && testing.Short() {
				t.Skip("slow in -short mode")
			}
			plain, _ := NewCoder(d, DefaultOptions())
			acc, err := NewCoder(d, DefaultOptions().Accelerated())
			if err != nil {
				t.Fatal(err)
			}
			rp, err := plain.SolveBatch(context.Background(), c.imgs, nil)
			if err != nil {
				t.Fatal(err)
			}
			ra, err := acc.SolveBatch(context.Background(), c.imgs, nil)
			if err != nil {
				t.Fatal(err)
			}
			var op, oa float64
			var ip, ia int
			for i := range rp {
				p, a := rp[i], ra[i]
				if a.Objective > p.Objective*(1+1e-4) {
					t.Errorf("image %d: accelerated objective %.8f, plain %.8f (rel %.2g > 1e-4)",
						i, a.Objective, p.Objective, (a.Objective-p.Objective)/p.Objective)
				}
				op, oa, ip, ia = op+p.Objective, oa+a.Objective, ip+p.Iterations, ia+a.Iterations
			}
			t.Logf("%d images: plain %d iterations objective %.6f, accelerated %d iterations objective %.6f",
				len(rp), ip, op, ia, oa)
			if oa > op*(1+1e-4) {
				t.Errorf("mean objective %.8f, plain %.8f", oa/float64(len(rp)), op/float64(len(rp)))
			}
			if c.fewer && ia >= ip {
				t.Errorf("accelerated %d iterations, plain %d: no fewer", ia, ip)
			}
		})
	}
}
