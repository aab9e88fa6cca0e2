package nn_test

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

func ExampleNewClassifier() {
	cfg := nn.DefaultClassifierConfig() // vgg-small, 3x32x32, 10 classes
	cfg.Threads = 1
	m, err := nn.NewClassifier(cfg)
	if err != nil {
		panic(err)
	}
	x := tensor.New(4, 3, 32, 32) // pixels in [0,1]
	logits, err := m.Logits(context.Background(), x)
	if err != nil {
		panic(err)
	}
	// The gradient of the summed logit of class 3 with respect to the input.
	_, grad, err := m.InputGrad(context.Background(), x, func(logits, g *tensor.Tensor) {
		for i := 0; i < g.Shape[0]; i++ {
			g.Data[i*g.Shape[1]+3] = 1
		}
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(logits.Shape, grad.Shape)
	// Output: [4 10] [4 3 32 32]
}

func ExampleDAE_Encode() {
	cfg := nn.DefaultDAEConfig() // 3x32x32, 32 filters, 3 levels
	cfg.Threads = 1
	d, err := nn.NewDAE(cfg)
	if err != nil {
		panic(err)
	}
	codes, err := d.Encode(context.Background(), tensor.New(5, 3, 32, 32))
	if err != nil {
		panic(err)
	}
	fmt.Println(codes.Shape, "= 5 images x 4x4x32")
	// Output: [5 512] = 5 images x 4x4x32
}

func ExampleSoftmaxCrossEntropy() {
	logits := tensor.New(2, 10) // uniform predictions
	grad := tensor.New(2, 10)
	loss, correct, err := nn.SoftmaxCrossEntropy(logits, []int{0, 7}, 0, grad)
	if err != nil {
		panic(err)
	}
	fmt.Printf("loss %.4f (log 10), correct %d, dL/dlogit[0,0] %.3f\n", loss, correct, grad.Data[0])
	// Output: loss 2.3026 (log 10), correct 1, dL/dlogit[0,0] -0.450
}

func ExampleOneCycle() {
	s := nn.DefaultOneCycle(0.05)
	for _, step := range []int{0, 299, 999} {
		fmt.Printf("step %d: %.6f\n", step, s.LR(step, 1000))
	}
	// Output:
	// step 0: 0.002000
	// step 299: 0.050000
	// step 999: 0.000000
}
