package graph

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

func randn(rng *rand.Rand, scale float32, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64()) * scale
	}
	return v
}

// testGraph builds a DAG exercising what the ONNX fixtures do not:
// asymmetric padding, a grouped dilated convolution, average pooling that
// counts the padding, a product of two computed tensors with broadcasting
// (a squeeze-and-excitation gate), a shared value feeding three nodes and
// a concatenation.
func testGraph(t *testing.T) *Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var b Builder
	x := b.Input("x")
	mustOp := func(op Op, err error) Op {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
	c1 := b.Node("c1", "Conv", mustOp(NewConv(ConvSpec{Weight: randn(rng, 0.3, 4*3*3*2), Shape: [4]int{4, 3, 3, 2}, Bias: randn(rng, 0.1, 4),
		Strides: [2]int{1, 2}, Pads: [4]int{1, 0, 2, 1}}, 1)), "c1", x)
	s1 := b.Node("s1", "Sigmoid", Layer{&nn.Sigmoid{}}, "s1", c1)
	c2 := b.Node("c2", "Conv", mustOp(NewConv(ConvSpec{Weight: randn(rng, 0.3, 4*2*3*3), Shape: [4]int{4, 2, 3, 3}, Groups: 2,
		Dilations: [2]int{2, 1}, Pads: [4]int{2, 1, 2, 1}}, 1)), "c2", s1)
	gate := b.Node("gap", "GlobalAveragePool", &GlobalAvgPool{}, "gap", s1)
	gated := b.Node("mul", "Mul", &Binary{Op: Mul}, "mul", c2, gate)
	sum := b.Node("add", "Add", &Binary{Op: Add}, "add", gated, s1)
	cat := b.Node("cat", "Concat", &Concat{Axis: -3}, "cat", sum, s1)
	lr := b.Node("lrelu", "LeakyRelu", LeakyReLU(0.1), "lrelu", cat)
	avg := b.Node("avg", "AveragePool", mustOp(NewPool(PoolSpec{Kernel: [2]int{3, 2}, Strides: [2]int{2, 1}, Pads: [4]int{1, 1, 1, 0}, CountIncludePad: true}, false)), "avg", lr)
	div := b.Node("div", "Div", &Binary{Op: Div, ConstA: &tensor.Tensor{Shape: []int{1}, Data: []float32{1}}}, "div",
		b.Node("shift", "Add", &Binary{Op: Add, ConstB: &tensor.Tensor{Shape: []int{8, 1, 1}, Data: []float32{2, 3, 2, 3, 2, 3, 2, 3}}}, "shift", avg))
	flat := b.Node("flat", "Flatten", &Reshape{Axis: 1}, "flat", div)
	out := b.Node("fc", "Gemm", mustOp(NewLinear(randn(rng, 0.2, 3*8*4*4), 3, 8*4*4, randn(rng, 0.1, 3), 1)), "fc", flat)
	g, err := b.Build(out)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewModel(g, 3, 6, 7)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestInputGradCentralDifferences checks the executor's backward pass
// (summed gradients of shared values, every op's Backward) against
// central differences of the logits.
func TestInputGradCentralDifferences(t *testing.T) {
	m := testGraph(t)
	rng := rand.New(rand.NewPCG(5, 6))
	x := tensor.New(2, 3, 6, 7)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	w := randn(rng, 1, 2*3)
	seed := func(_, g *tensor.Tensor) { copy(g.Data, w) }
	loss := func(x *tensor.Tensor) float64 {
		y, err := m.Logits(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for i, v := range y.Data {
			s += float64(w[i] * v)
		}
		return s
	}
	_, grad, err := m.InputGrad(context.Background(), x, seed)
	if err != nil {
		t.Fatal(err)
	}
	const h = 1e-2
	var worst float64
	for i := range x.Data {
		v := x.Data[i]
		x.Data[i] = v + h
		up := loss(x)
		x.Data[i] = v - h
		down := loss(x)
		x.Data[i] = v
		fd := (up - down) / (2 * h)
		worst = math.Max(worst, math.Abs(fd-float64(grad.Data[i]))/(math.Abs(fd)+1e-2))
	}
	if worst > 1e-2 {
		t.Errorf("input gradient differs from central differences by %.3g (relative)", worst)
	}
}

func TestForwardErrors(t *testing.T) {
	m := testGraph(t)
	for _, tc := range []struct {
		name  string
		shape []int
	}{
		{"channels", []int{1, 4, 6, 7}},
		{"three dims", []int{3, 6, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.Logits(context.Background(), tensor.New(tc.shape...)); err == nil {
				t.Fatal("no error")
			}
		})
	}
	var b Builder
	x := b.Input("x")
	y := b.Node("conv", "Conv", &Concat{Axis: 0}, "y", x)
	g, err := b.Build(y)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewModel(g, 3, 4, 4); err == nil {
		t.Fatal("a graph whose node fails built a model")
	}
}

// TestChunks: a batch larger than nn.ChunkSize gives the logits and input
// gradients of its images taken one by one.
func TestChunks(t *testing.T) {
	m := testGraph(t)
	rng := rand.New(rand.NewPCG(7, 8))
	n := nn.ChunkSize + 3
	x := tensor.New(n, 3, 6, 7)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	ones := func(_, g *tensor.Tensor) {
		for i := range g.Data {
			g.Data[i] = float32(i%3) - 1
		}
	}
	ctx := context.Background()
	logits, grad, err := m.InputGrad(ctx, x, ones)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, nn.ChunkSize - 1, nn.ChunkSize, n - 1} {
		l1, g1, err := m.InputGrad(ctx, x.Sample(i), ones)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range l1.Data {
			if d := math.Abs(float64(v - logits.Sample(i).Data[j])); d > 1e-5 {
				t.Fatalf("image %d: logit %d differs by %g", i, j, d)
			}
		}
		for j, v := range g1.Data {
			if d := math.Abs(float64(v - grad.Sample(i).Data[j])); d > 1e-5 {
				t.Fatalf("image %d: gradient %d differs by %g", i, j, d)
			}
		}
	}
}
