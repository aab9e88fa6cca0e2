package onnx

import (
	"fmt"
	"os"
	"slices"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/nn/graph"
	"github.com/stl-defense/stl/tensor"
)

// UnsupportedError reports a node the importer cannot run: an operator
// outside the covered set, or a covered one with an attribute or input
// combination it does not implement.
type UnsupportedError struct {
	Op, Node string
	Reason   string // empty for an operator that is not covered at all
}

func (e *UnsupportedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("onnx: node %q: operator %s is not supported (see docs/models.md for the covered operators)", e.Node, e.Op)
	}
	return fmt.Sprintf("onnx: node %q (%s): %s", e.Node, e.Op, e.Reason)
}

// Load reads the ONNX model at path and builds it as a classifier with
// threads goroutines per kernel (Import).
func Load(path string, threads int) (*graph.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	defer f.Close()
	m, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	mod, err := Import(m, threads)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mod, nil
}

// Import builds the classifier of an ONNX model: one input of shape (N, C,
// H, W) with static C, H and W (pixels as the model expects them; the
// input normalization belongs in the graph) and one output of (N, K)
// logits. Constant subexpressions are folded, each batch normalization that
// follows a convolution is folded into it, and every other node becomes a
// graph.Op. An operator outside the covered set is an *UnsupportedError
// naming it and its node.
func Import(m *ModelProto, threads int) (*graph.Model, error) {
	if v, ok := m.Opsets[""]; !ok || v < 7 {
		return nil, fmt.Errorf("onnx: default operator set version %d: want 7 or later (models exported with opset 13 to 17 are tested)", v)
	}
	im := &importer{opset: m.Opsets[""], threads: max(threads, 1), consts: map[string]*constant{}, vals: map[string]graph.Value{}, uses: map[string]int{}, skip: map[*NodeProto]bool{}}
	g := m.Graph
	for _, t := range g.Initializers {
		c, err := fromProto(t)
		if err != nil {
			return nil, err
		}
		im.consts[t.Name] = c
	}
	var input *ValueInfoProto
	for _, in := range g.Inputs {
		if _, ok := im.consts[in.Name]; ok {
			continue
		}
		if input != nil {
			return nil, fmt.Errorf("onnx: graph has inputs %q and %q; a classifier takes one image batch", input.Name, in.Name)
		}
		input = in
	}
	if input == nil {
		return nil, fmt.Errorf("onnx: graph has no input")
	}
	if len(g.Outputs) != 1 {
		return nil, fmt.Errorf("onnx: graph has %d outputs; a classifier has one, the logits", len(g.Outputs))
	}
	d := input.Dims
	if input.ElemType != TypeFloat || len(d) != 4 || d[1].Value < 1 || d[2].Value < 1 || d[3].Value < 1 {
		return nil, fmt.Errorf("onnx: input %q: want float32 (N, C, H, W) with static C, H, W; got element type %d, dims %v", input.Name, input.ElemType, d)
	}
	if d[1].Value*d[2].Value*d[3].Value > maxImage {
		return nil, fmt.Errorf("onnx: input %q of %dx%dx%d values per image: more than %d", input.Name, d[1].Value, d[2].Value, d[3].Value, maxImage)
	}
	im.batch = int(d[0].Value)
	im.vals[input.Name] = im.b.Input(input.Name)
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			im.uses[in]++
		}
	}
	for _, o := range g.Outputs {
		im.uses[o.Name]++
	}
	im.nodes = g.Nodes
	for i, n := range g.Nodes {
		if im.skip[n] {
			continue
		}
		if n.Domain != "" && n.Domain != "ai.onnx" {
			return nil, &UnsupportedError{Op: n.Domain + "." + n.OpType, Node: n.Name}
		}
		if err := im.node(i, n); err != nil {
			return nil, err
		}
	}
	out, ok := im.vals[g.Outputs[0].Name]
	if !ok {
		return nil, fmt.Errorf("onnx: output %q is not computed from the input", g.Outputs[0].Name)
	}
	gr, err := im.b.Build(out)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return graph.NewModel(gr, int(d[1].Value), int(d[2].Value), int(d[3].Value))
}

// maxImage bounds the values of one input image (3 x 2048 x 2048).
const maxImage = 3 << 22

// constant is a folded value: floats (with shape) or integers.
type constant struct {
	t    *tensor.Tensor
	ints []int64
}

func fromProto(t *TensorProto) (*constant, error) {
	if t.External {
		return nil, &UnsupportedError{Op: "initializer", Node: t.Name, Reason: "tensor data stored outside the .onnx file (external data); save the model as one file"}
	}
	shape := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		shape[i] = int(d)
	}
	switch {
	case t.Floats != nil || (t.DataType == TypeFloat || t.DataType == TypeDouble):
		data := t.Floats
		if data == nil {
			data = []float32{}
		}
		return &constant{t: &tensor.Tensor{Shape: shape, Data: data}}, nil
	case t.Ints != nil || t.DataType == TypeInt32 || t.DataType == TypeInt64:
		return &constant{ints: t.Ints, t: &tensor.Tensor{Shape: shape, Data: toFloats(t.Ints)}}, nil
	}
	return &constant{}, nil // a type we do not compute with: an error if used
}

func toFloats(v []int64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

type importer struct {
	b       graph.Builder
	opset   int64
	threads int
	batch   int // the input's static batch size, 0 when symbolic
	consts  map[string]*constant
	vals    map[string]graph.Value
	uses    map[string]int
	nodes   []*NodeProto
	skip    map[*NodeProto]bool // batch norms folded into convolutions
}

// attrs indexes a node's attributes by name.
type attrs map[string]*AttributeProto

func (a attrs) int(name string, def int64) int64 {
	if v, ok := a[name]; ok {
		return v.I
	}
	return def
}

func (a attrs) float(name string, def float32) float32 {
	if v, ok := a[name]; ok {
		return v.F
	}
	return def
}

func (a attrs) ints(name string, def ...int64) []int64 {
	if v, ok := a[name]; ok {
		return v.Ints
	}
	return def
}

// pair reads a 2-element attribute (strides, dilations, kernel_shape).
func (a attrs) pair(name string, def int) ([2]int, error) {
	v := a.ints(name, int64(def), int64(def))
	if len(v) != 2 {
		return [2]int{}, fmt.Errorf("attribute %s = %v: want 2 values (2-D images)", name, v)
	}
	return [2]int{int(v[0]), int(v[1])}, nil
}

func (a attrs) pads() ([4]int, error) {
	v := a.ints("pads", 0, 0, 0, 0)
	if len(v) != 4 {
		return [4]int{}, fmt.Errorf("attribute pads = %v: want 4 values", v)
	}
	return [4]int{int(v[0]), int(v[1]), int(v[2]), int(v[3])}, nil
}

// input returns the dynamic value or the constant named by input i of n
// (exactly one is set); an absent optional input gives neither.
func (im *importer) input(n *NodeProto, i int) (graph.Value, *constant, bool, error) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return 0, nil, false, nil
	}
	name := n.Inputs[i]
	if c, ok := im.consts[name]; ok {
		return 0, c, true, nil
	}
	if v, ok := im.vals[name]; ok {
		return v, nil, true, nil
	}
	return 0, nil, false, fmt.Errorf("onnx: node %q (%s) reads %q, which no earlier node computes (nodes must be in topological order)", n.Name, n.OpType, name)
}

// floatsIn returns constant input i as floats, or an error naming it.
func (im *importer) floatsIn(n *NodeProto, i int, what string) (*tensor.Tensor, error) {
	_, c, ok, err := im.input(n, i)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: what + " is missing"}
	case c == nil || c.t == nil:
		return nil, &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: what + " must be a constant (an initializer)"}
	}
	return c.t, nil
}

func (im *importer) add(n *NodeProto, op graph.Op, in ...graph.Value) {
	im.vals[n.Outputs[0]] = im.b.Node(n.Name, n.OpType, op, n.Outputs[0], in...)
}

// node adds node n (index i) to the graph or folds it.
func (im *importer) node(i int, n *NodeProto) error {
	a := attrs{}
	for _, at := range n.Attributes {
		if at.Graph {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "graph-valued attributes (control flow)"}
		}
		a[at.Name] = at
	}
	if len(n.Outputs) == 0 {
		return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "no outputs"}
	}
	for _, o := range n.Outputs[1:] {
		if o != "" && im.uses[o] > 0 {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: fmt.Sprintf("its output %q beyond the first is used", o)}
		}
	}
	unsupported := func(format string, args ...any) error {
		return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: fmt.Sprintf(format, args...)}
	}
	if n.OpType == "Constant" {
		return im.constantNode(n, a)
	}
	x, xc, ok, err := im.input(n, 0)
	if err != nil {
		return err
	}
	if !ok {
		return unsupported("no input")
	}
	switch n.OpType {
	case "Identity", "Dropout":
		if xc != nil {
			im.consts[n.Outputs[0]] = xc
		} else {
			im.vals[n.Outputs[0]] = x
		}
		return nil
	case "Add", "Sub", "Mul", "Div":
		return im.arith(i, n, x, xc)
	case "Reshape", "Flatten":
		return im.reshape(n, a, x, xc)
	}
	if xc != nil {
		return unsupported("constant input %q (only Add, Sub, Mul, Div, Reshape, Flatten, Identity are folded)", n.Inputs[0])
	}
	var op graph.Op
	switch n.OpType {
	case "Relu":
		op = graph.Layer{L: &nn.ReLU{}}
	case "Sigmoid":
		op = graph.Layer{L: &nn.Sigmoid{}}
	case "LeakyRelu":
		op = graph.LeakyReLU(a.float("alpha", 0.01))
	case "Clip":
		op, err = im.clip(n, a)
	case "Conv":
		out := n.Outputs[0]
		if op, err = im.conv(i, n, a, &out); err == nil {
			im.vals[out] = im.b.Node(n.Name, n.OpType, op, out, x)
			return nil
		}
	case "BatchNormalization":
		op, err = im.batchNorm(n)
	case "MaxPool", "AveragePool":
		op, err = im.pool(n, a)
	case "GlobalAveragePool":
		op = &graph.GlobalAvgPool{}
	case "Gemm", "MatMul":
		op, err = im.linear(n, a)
	case "Concat":
		return im.concat(n, a)
	default:
		return &UnsupportedError{Op: n.OpType, Node: n.Name}
	}
	if err != nil {
		if _, ok := err.(*UnsupportedError); ok {
			return err
		}
		return unsupported("%v", err)
	}
	im.add(n, op, x)
	return nil
}

func (im *importer) constantNode(n *NodeProto, a attrs) error {
	var c *constant
	switch {
	case a["value"] != nil && a["value"].T != nil:
		var err error
		if c, err = fromProto(a["value"].T); err != nil {
			return err
		}
	case a["value_float"] != nil:
		v := a["value_float"].F
		c = &constant{t: &tensor.Tensor{Shape: []int{}, Data: []float32{v}}}
	case a["value_floats"] != nil:
		v := slices.Clone(a["value_floats"].Floats)
		c = &constant{t: &tensor.Tensor{Shape: []int{len(v)}, Data: v}}
	case a["value_int"] != nil:
		v := []int64{a["value_int"].I}
		c = &constant{ints: v, t: &tensor.Tensor{Shape: []int{}, Data: toFloats(v)}}
	case a["value_ints"] != nil:
		v := a["value_ints"].Ints
		c = &constant{ints: v, t: &tensor.Tensor{Shape: []int{len(v)}, Data: toFloats(v)}}
	default:
		return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "no value, value_float(s) or value_int(s) attribute"}
	}
	im.consts[n.Outputs[0]] = c
	return nil
}
