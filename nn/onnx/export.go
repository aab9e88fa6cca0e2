package onnx

import (
	"fmt"
	"io"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/nn"
)

// ExportOpset is the ai.onnx operator set version of exported models.
const ExportOpset = 13

// Export writes the classifier m as an ONNX model (IR version 8, opset
// ExportOpset) to w: input "x" of shape (N, C, H, W) with a symbolic batch
// N, pixels in [0, 1], the input normalization as Sub and Div by
// constants; output "logits" (N, K). Batch norms are exported as
// BatchNormalization nodes with the running statistics, ReLUs fused into
// them or into residual blocks as Relu nodes, option-A shortcuts as 1x1
// convolutions with 0/1 weights (the same values: subsampling and zero
// channels). It returns an error naming a layer it cannot express.
func Export(w io.Writer, m *nn.Classifier) error {
	p, err := Build(m)
	if err != nil {
		return err
	}
	return Encode(w, p)
}

// Build returns the ModelProto Export writes.
func Build(m *nn.Classifier) (*ModelProto, error) {
	c, h, wd := m.InputShape()
	e := &exporter{g: &GraphProto{Name: "stl"}}
	e.g.Inputs = []*ValueInfoProto{{Name: "x", ElemType: TypeFloat, Dims: []Dim{{Param: "N"}, {Value: int64(c)}, {Value: int64(h)}, {Value: int64(wd)}}}}
	out, err := e.layer(m.Network(), "x", "")
	if err != nil {
		return nil, err
	}
	// The last node's output is renamed to "logits".
	last := e.g.Nodes[len(e.g.Nodes)-1]
	if last.Outputs[0] != out {
		return nil, fmt.Errorf("onnx: export: the network ends in no node")
	}
	last.Outputs[0] = "logits"
	e.g.Outputs = []*ValueInfoProto{{Name: "logits", ElemType: TypeFloat, Dims: []Dim{{Param: "N"}, {Value: int64(m.NumClasses())}}}}
	return &ModelProto{IRVersion: 8, Producer: "stl", Opsets: map[string]int64{"": ExportOpset}, Graph: e.g}, nil
}

type exporter struct {
	g *GraphProto
	n int // values named so far
}

// node appends a node of op on inputs and returns its output's name.
func (e *exporter) node(op, name string, attrs []*AttributeProto, in ...string) string {
	e.n++
	out := fmt.Sprintf("v%d", e.n)
	e.g.Nodes = append(e.g.Nodes, &NodeProto{Name: name, OpType: op, Inputs: in, Outputs: []string{out}, Attributes: attrs})
	return out
}

// tensor adds an initializer and returns its name.
func (e *exporter) tensor(name string, data []float32, dims ...int) string {
	d := make([]int64, len(dims))
	for i, v := range dims {
		d[i] = int64(v)
	}
	e.g.Initializers = append(e.g.Initializers, &TensorProto{Name: name, Dims: d, DataType: TypeFloat, Floats: data})
	return name
}

func ints(name string, v ...int) *AttributeProto {
	a := &AttributeProto{Name: name, Type: AttrInts}
	for _, x := range v {
		a.Ints = append(a.Ints, int64(x))
	}
	return a
}

// layer exports l (path names it) applied to value x and returns its
// output.
func (e *exporter) layer(l nn.Layer, x, path string) (string, error) {
	switch v := l.(type) {
	case *nn.Sequential:
		var err error
		for i, c := range v.Layers {
			if x, err = e.layer(c, x, fmt.Sprintf("%s%d.", path, i)); err != nil {
				return "", err
			}
		}
		return x, nil
	case *nn.Normalize:
		c := len(v.Mean)
		x = e.node("Sub", path+"sub", nil, x, e.tensor(path+"mean", v.Mean, 1, c, 1, 1))
		return e.node("Div", path+"div", nil, x, e.tensor(path+"std", v.Std, 1, c, 1, 1)), nil
	case *nn.Conv2D:
		p := v.P
		in := []string{x, e.tensor(path+"weight", v.Weight.W, p.K, p.C, p.R, p.S)}
		if v.Bias != nil {
			in = append(in, e.tensor(path+"bias", v.Bias.W, p.K))
		}
		return e.node("Conv", path+"conv", []*AttributeProto{ints("kernel_shape", p.R, p.S), ints("strides", p.StrideH, p.StrideW),
			ints("pads", p.PadH, p.PadW, p.PadH, p.PadW)}, in...), nil
	case *nn.BatchNorm2D:
		c := len(v.Gamma.W)
		x = e.node("BatchNormalization", path+"bn", []*AttributeProto{{Name: "epsilon", Type: AttrFloat, F: float32(v.Eps)}}, x,
			e.tensor(path+"weight", v.Gamma.W, c), e.tensor(path+"bias", v.Beta.W, c),
			e.tensor(path+"running_mean", v.RunMean.W, c), e.tensor(path+"running_var", v.RunVar.W, c))
		if v.ReLU {
			x = e.node("Relu", path+"relu", nil, x)
		}
		return x, nil
	case *nn.ReLU:
		return e.node("Relu", path+"relu", nil, x), nil
	case *nn.Sigmoid:
		return e.node("Sigmoid", path+"sigmoid", nil, x), nil
	case *nn.Dropout:
		return x, nil // the identity in inference
	case *nn.MaxPool2D:
		return e.node("MaxPool", path+"maxpool", []*AttributeProto{ints("kernel_shape", v.K, v.K), ints("strides", v.Stride, v.Stride)}, x), nil
	case *nn.AvgPool2D:
		return e.node("AveragePool", path+"avgpool", []*AttributeProto{ints("kernel_shape", v.K, v.K), ints("strides", v.Stride, v.Stride)}, x), nil
	case *nn.GlobalAvgPool:
		x = e.node("GlobalAveragePool", path+"gap", nil, x)
		return e.node("Flatten", path+"flatten", nil, x), nil
	case *nn.Flatten:
		return e.node("Flatten", path+"flatten", nil, x), nil
	case *nn.Dense:
		return e.node("Gemm", path+"gemm", []*AttributeProto{{Name: "transB", Type: AttrInt, I: 1}}, x,
			e.tensor(path+"weight", v.Weight.W, v.Out, v.In), e.tensor(path+"bias", v.Bias.W, v.Out)), nil
	case *nn.Residual:
		body, err := e.layer(v.Body, x, path+"body.")
		if err != nil {
			return "", err
		}
		short := x
		if v.Shortcut != nil {
			if short, err = e.layer(v.Shortcut, x, path+"shortcut."); err != nil {
				return "", err
			}
		}
		y := e.node("Add", path+"add", nil, body, short)
		if v.ReLU {
			y = e.node("Relu", path+"relu", nil, y)
		}
		return y, nil
	case *nn.ShortcutA:
		// Subsampling by Stride and zero channels on both sides: a 1x1
		// convolution whose weights pick input channel c for output
		// channel c + pad.
		w := make([]float32, v.Out*v.In)
		pad := (v.Out - v.In) / 2
		for c := range v.In {
			w[(c+pad)*v.In+c] = 1
		}
		return e.node("Conv", path+"conv", []*AttributeProto{ints("kernel_shape", 1, 1), ints("strides", v.Stride, v.Stride)},
			x, e.tensor(path+"weight", w, v.Out, v.In, 1, 1)), nil
	}
	return "", fmt.Errorf("onnx: export: layer %s%T has no ONNX equivalent here", path, l)
}

// WriteFile exports m to path atomically (a temporary file renamed into
// place once complete).
func WriteFile(path string, m *nn.Classifier) error {
	p, err := Build(m)
	if err != nil {
		return err
	}
	return safefile.WriteBytes(path, Marshal(p))
}
