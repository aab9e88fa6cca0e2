package fft_test

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/fft"
)

// A 2x4 real array, its half spectrum (2x3 values, unnormalized) and the
// round trip back.
func Example() {
	p, err := fft.New(2, 4)
	if err != nil {
		panic(err)
	}
	s := []float32{1, 2, 3, 4, 0, 0, 0, 1}
	spec := p.Forward(nil, s)
	fmt.Println(spec)
	back := p.Inverse(nil, spec)
	for i, v := range back {
		back[i] = float32(math.Round(float64(v)*1e4)/1e4) + 0 // rounding noise differs by implementation
	}
	fmt.Println(back)
	// Output:
	// [(11+0i) (-2+3i) (-3+0i) (9+0i) (-2+1i) (-1+0i)]
	// [1 2 3 4 0 0 0 1]
}
