package onnx

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// handModel returns a model written node by node: a convolution with
// asymmetric padding, Relu, AveragePool counting the padding, Flatten and
// MatMul; with extra set, Identity, Dropout, a Constant and a Clip with
// attribute bounds (opset 10) that change nothing are inserted.
func handModel(extra bool) *ModelProto {
	rng := rand.New(rand.NewPCG(11, 12))
	floats := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * 0.3
		}
		return v
	}
	ints := func(name string, v ...int64) *AttributeProto {
		return &AttributeProto{Name: name, Type: AttrInts, Ints: v}
	}
	g := &GraphProto{
		Inputs:  []*ValueInfoProto{{Name: "x", ElemType: TypeFloat, Dims: []Dim{{Param: "N"}, {Value: 2}, {Value: 5}, {Value: 5}}}},
		Outputs: []*ValueInfoProto{{Name: "y", ElemType: TypeFloat}},
		Initializers: []*TensorProto{
			{Name: "w", Dims: []int64{3, 2, 2, 2}, DataType: TypeFloat, Floats: floats(24)},
			{Name: "m", Dims: []int64{3 * 3 * 3, 4}, DataType: TypeFloat, Floats: floats(108)},
		},
	}
	in := "x"
	node := func(op string, attrs []*AttributeProto, inputs ...string) {
		out := op + "_out"
		g.Nodes = append(g.Nodes, &NodeProto{Name: op, OpType: op, Inputs: append([]string{in}, inputs...), Outputs: []string{out}, Attributes: attrs})
		in = out
	}
	if extra {
		node("Identity", nil)
		node("Dropout", []*AttributeProto{{Name: "ratio", Type: AttrFloat, F: 0.5}})
		g.Nodes = append(g.Nodes, &NodeProto{Name: "one", OpType: "Constant", Outputs: []string{"one"}, Attributes: []*AttributeProto{{Name: "value_float", Type: AttrFloat, F: 1}}})
		node("Mul", nil, "one")
		node("Clip", []*AttributeProto{{Name: "min", Type: AttrFloat, F: -10}, {Name: "max", Type: AttrFloat, F: 10}})
	}
	node("Conv", []*AttributeProto{ints("pads", 0, 1, 1, 0)}, "w")
	node("Relu", nil)
	node("AveragePool", []*AttributeProto{ints("kernel_shape", 3, 3), ints("strides", 2, 2), ints("pads", 1, 1, 1, 1), {Name: "count_include_pad", Type: AttrInt, I: 1}})
	node("Flatten", nil)
	node("MatMul", nil, "m")
	g.Nodes[len(g.Nodes)-1].Outputs[0] = "y"
	return &ModelProto{IRVersion: 5, Opsets: map[string]int64{"": 10}, Graph: g}
}

// TestPassThroughOps: Identity, Dropout, a Constant operand and a Clip
// with attribute bounds import as no-ops, through an encode-decode round.
func TestPassThroughOps(t *testing.T) {
	var ys []*tensor.Tensor
	x := tensor.New(3, 2, 5, 5)
	for i := range x.Data {
		x.Data[i] = float32(i%7) / 7
	}
	for _, extra := range []bool{false, true} {
		p, err := Unmarshal(Marshal(handModel(extra)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Import(p, 1)
		if err != nil {
			t.Fatal(err)
		}
		if m.NumClasses() != 4 {
			t.Fatalf("%d classes, want 4", m.NumClasses())
		}
		y, err := m.Logits(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		ys = append(ys, y)
	}
	for i, v := range ys[0].Data {
		if ys[1].Data[i] != v {
			t.Fatalf("logit %d: %g with the pass-through nodes, %g without", i, ys[1].Data[i], v)
		}
	}
}
