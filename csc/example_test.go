package csc_test

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

// With a one-pixel identity filter, CBPDN is soft thresholding: values
// within lambda of zero vanish, the others shrink by lambda.
func ExampleCoder_Solve() {
	d, err := csc.NewDictionary(&tensor.Tensor{Shape: []int{1, 1, 1, 1}, Data: []float32{1}})
	if err != nil {
		panic(err)
	}
	opt := csc.DefaultOptions()
	opt.Lambda = 0.5
	opt.ADMM.RelStopTol = 1e-5
	opt.ADMM.MaxIter = 500
	coder, err := csc.NewCoder(d, opt)
	if err != nil {
		panic(err)
	}
	img := &tensor.Tensor{Shape: []int{1, 2, 3}, Data: []float32{2, 0.3, -1, 0, -0.4, 0.75}}
	r, err := coder.Solve(context.Background(), img, nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%.3f\n", r.X.Data)
	fmt.Printf("converged %v, objective %.4f\n", r.Converged, r.Objective)
	// Output:
	// [1.500 0.000 -0.500 0.000 0.000 0.250]
	// converged true, objective 1.6250
}

// The STL projection of the embedded 32x32 sample image on the embedded
// dictionary.
func ExampleProjection_Project() {
	p, err := csc.NewProjection(csc.SampleDictionary(), csc.DefaultProjectOptions())
	if err != nil {
		panic(err)
	}
	img, err := csc.SampleImage("img32")
	if err != nil {
		panic(err)
	}
	out := tensor.New(img.Shape...)
	if err := p.Project(context.Background(), out, img); err != nil {
		panic(err)
	}
	var mse float64
	for i, v := range out.Data {
		e := float64(v - img.Data[i])
		mse += e * e
	}
	fmt.Printf("shape %v, mean squared change %.5f\n", out.Shape, mse/float64(len(out.Data)))
	// Output:
	// shape [1 3 32 32], mean squared change 0.00033
}
