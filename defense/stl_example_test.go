package defense_test

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/tensor"
)

// The universal STL projects a batch onto the span of one dictionary. Here
// the dictionary is three 1x1 delta filters (one per channel), so the
// projection keeps the smooth part of an image and soft-thresholds its
// detail by lambda: a flat image, which has no detail, comes out unchanged.
func ExampleNewSTL() {
	dict := &csc.Dictionary{M: 3, C: 3, R: 1, S: 1, Filters: make([]float32, 9)}
	for c := 0; c < 3; c++ {
		dict.Filters[c*3+c] = 1 // filter c is a delta on channel c
	}
	proj, err := defense.CSCProjector(dict, 0.2)
	if err != nil {
		fmt.Println(err)
		return
	}
	stl, _ := defense.NewSTL(proj)
	x := tensor.New(1, 3, 8, 8)
	for i := range x.Data {
		x.Data[i] = 0.25
	}
	y, err := stl.Apply(context.Background(), x)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %v -> %.3f\n", stl.Name(), y.Shape, y.Data[0])
	// Output: STL: [1 3 8 8] -> 0.250
}
