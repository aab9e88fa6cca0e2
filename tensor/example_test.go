package tensor_test

import (
	"fmt"

	"github.com/stl-defense/stl/tensor"
)

// Process a batch of five two-value entries in chunks of two, writing each
// chunk's result into the matching rows of the output.
func ExampleTensor_Batch() {
	x := tensor.New(5, 2)
	for i := range x.Data {
		x.Data[i] = float32(i)
	}
	out := tensor.New(5, 2)
	for lo := 0; lo < 5; lo += 2 {
		hi := min(lo+2, 5)
		in := x.Batch(lo, hi)
		for i, v := range in.Data {
			out.Batch(lo, hi).Data[i] = 10 * v
		}
		fmt.Println(in.Shape)
	}
	fmt.Println(out.Data)
	fmt.Println(out.ArgmaxRows(nil))
	// Output:
	// [2 2]
	// [2 2]
	// [1 2]
	// [0 10 20 30 40 50 60 70 80 90]
	// [1 1 1 1 1]
}
