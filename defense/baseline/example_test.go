package baseline_test

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/tensor"
)

func ExampleNames() {
	for _, name := range baseline.Names() {
		fmt.Println(name)
	}
	// Output:
	// jpeg
	// tvm
	// quilt
	// tvm-quilt
	// crop-ens
	// crop-tvm-quilt
	// deflect
	// pd-ens
	// squeeze
	// bitdepth
	// median
	// magnet
	// d3
}

func ExampleNew() {
	cfg := baseline.DefaultConfig() // the published parameters
	t, err := baseline.New("bitdepth", cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	x, _ := tensor.FromData([]float32{0.1, 0.5, 0.52, 0.9}, 1, 1, 2, 2)
	y, _ := t.Apply(context.Background(), x)
	fmt.Println(t.Name(), t.Randomized())
	fmt.Printf("%.4f\n", y.Data)

	_, err = baseline.New("quilt", cfg) // needs a patch database
	fmt.Println(err)
	// Output:
	// Bit depth (5 bits) false
	// [0.0968 0.5161 0.5161 0.9032]
	// baseline quilt: defense quilt: no patch database (build one with BuildPatchDB or load one with LoadPatchDB)
}

func ExampleNewChain() {
	// Feature squeezing as two separate steps, composed.
	bits, _ := baseline.NewSqueeze(baseline.SqueezeOptions{Bits: 1})
	med, _ := baseline.NewSqueeze(baseline.SqueezeOptions{Bits: 8, MedianSize: 3})
	c, _ := baseline.NewChain("", bits, med)
	x, _ := tensor.FromData([]float32{
		0.9, 0.9, 0.9,
		0.9, 0.1, 0.9,
		0.9, 0.9, 0.9,
	}, 1, 1, 3, 3)
	y, _ := c.Apply(context.Background(), x)
	fmt.Println(c.Name())
	fmt.Println(y.Data)
	// Output:
	// Bit depth (1 bits)+Median 3x3
	// [1 1 1 1 1 1 1 1 1]
}
