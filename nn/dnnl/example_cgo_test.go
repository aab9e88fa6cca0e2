//go:build cgo && !purego

package dnnl_test

import (
	"fmt"

	"github.com/stl-defense/stl/nn/dnnl"
)

// A 2x2 box filter over a 3x3 image, and the gradient of the sum of its
// outputs with respect to the image: how many windows see each pixel.
func ExampleConv() {
	p := dnnl.ConvParams{N: 1, C: 1, H: 3, W: 3, K: 1, R: 2, S: 2, StrideH: 1, StrideW: 1}
	c, err := dnnl.NewConv(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	oh, ow := p.OutHW()
	src := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	weight := []float32{1, 1, 1, 1}
	dst := make([]float32, oh*ow)
	if err := c.Forward(dst, src, weight, []float32{0.5}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(dst)
	dsrc := make([]float32, len(src))
	if err := c.BackwardData(dsrc, []float32{1, 1, 1, 1}, weight); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(dsrc)
	// Output:
	// [12.5 16.5 24.5 28.5]
	// [1 2 1 2 4 2 1 2 1]
}

// Lengths are checked before oneDNN is called.
func ExampleConv_Forward_lengthError() {
	p := dnnl.ConvParams{N: 2, C: 3, H: 8, W: 8, K: 4, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	c, err := dnnl.NewConv(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	err = c.Forward(make([]float32, 2*4*8*8), make([]float32, 10), make([]float32, 4*3*3*3), nil)
	fmt.Println(err)
	// Output: dnnl: Conv.Forward: len(src) = 10, want 384
}
