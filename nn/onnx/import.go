package onnx

import (
	"fmt"
	"math"
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
		return im.arith(n, x, xc)
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

func (im *importer) arith(n *NodeProto, x graph.Value, xc *constant) error {
	y, yc, ok, err := im.input(n, 1)
	if err != nil {
		return err
	}
	if !ok {
		return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "second operand missing"}
	}
	if (xc != nil && xc.t == nil) || (yc != nil && yc.t == nil) {
		return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "operand of an unsupported data type"}
	}
	op := graph.Arith(map[string]byte{"Add": '+', "Sub": '-', "Mul": '*', "Div": '/'}[n.OpType])
	if xc != nil && yc != nil {
		t, err := graph.Eval(op, xc.t, yc.t)
		if err != nil {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: err.Error()}
		}
		im.consts[n.Outputs[0]] = &constant{t: t}
		return nil
	}
	b := &graph.Binary{Op: op}
	var in []graph.Value
	if xc != nil {
		b.ConstA = xc.t
	} else {
		in = append(in, x)
	}
	if yc != nil {
		b.ConstB = yc.t
	} else {
		in = append(in, y)
	}
	im.add(n, b, in...)
	return nil
}

func (im *importer) reshape(n *NodeProto, a attrs, x graph.Value, xc *constant) error {
	r := &graph.Reshape{Batch: im.batch}
	if n.OpType == "Flatten" {
		axis := int(a.int("axis", 1))
		if axis < 1 {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: fmt.Sprintf("axis %d merges the batch dimension", axis)}
		}
		r.Axis = axis
	} else {
		_, sc, ok, err := im.input(n, 1)
		if err != nil {
			return err
		}
		if !ok || sc == nil || sc.ints == nil {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "the target shape must be an integer constant (export with a static shape, or use torch.flatten)"}
		}
		if a.int("allowzero", 0) != 0 {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "allowzero=1"}
		}
		for _, d := range sc.ints {
			r.Target = append(r.Target, int(d))
		}
	}
	if xc != nil {
		r.Batch = 0
		shape, err := r.Shape(xc.t.Shape)
		if err != nil {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: err.Error()}
		}
		im.consts[n.Outputs[0]] = &constant{t: &tensor.Tensor{Shape: shape, Data: xc.t.Data}, ints: xc.ints}
		return nil
	}
	im.add(n, r, x)
	return nil
}

func (im *importer) clip(n *NodeProto, a attrs) (graph.Op, error) {
	lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
	if im.opset < 11 {
		return graph.Clip(a.float("min", lo), a.float("max", hi)), nil
	}
	for i, dst := range []*float32{&lo, &hi} {
		if i+1 >= len(n.Inputs) || n.Inputs[i+1] == "" {
			continue
		}
		t, err := im.floatsIn(n, i+1, "min/max")
		if err != nil {
			return nil, err
		}
		if len(t.Data) != 1 {
			return nil, fmt.Errorf("min/max of %d values, want a scalar", len(t.Data))
		}
		*dst = t.Data[0]
	}
	return graph.Clip(lo, hi), nil
}

func autoPad(a attrs) error {
	if v, ok := a["auto_pad"]; ok {
		if s := string(v.S); s != "NOTSET" && s != "VALID" && s != "" {
			return fmt.Errorf("auto_pad %s (export with explicit pads)", s)
		}
	}
	return nil
}

// conv returns the convolution of node n (index i); when a batch norm is
// folded into it, *out becomes that node's output.
func (im *importer) conv(i int, n *NodeProto, a attrs, out *string) (graph.Op, error) {
	w, err := im.floatsIn(n, 1, "the weight")
	if err != nil {
		return nil, err
	}
	if len(w.Shape) != 4 {
		return nil, fmt.Errorf("weight of shape %v: only 2-D convolutions are supported", w.Shape)
	}
	if err := autoPad(a); err != nil {
		return nil, err
	}
	s := graph.ConvSpec{Weight: w.Data, Shape: [4]int(w.Shape), Groups: int(a.int("group", 1))}
	if len(n.Inputs) > 2 && n.Inputs[2] != "" {
		b, err := im.floatsIn(n, 2, "the bias")
		if err != nil {
			return nil, err
		}
		s.Bias = b.Data
	}
	if s.Strides, err = a.pair("strides", 1); err != nil {
		return nil, err
	}
	if s.Dilations, err = a.pair("dilations", 1); err != nil {
		return nil, err
	}
	if s.Pads, err = a.pads(); err != nil {
		return nil, err
	}
	if k, err := a.pair("kernel_shape", 0); err == nil && k != [2]int{} && k != [2]int{w.Shape[2], w.Shape[3]} {
		return nil, fmt.Errorf("kernel_shape %v differs from the weight's %v", k, w.Shape[2:])
	}
	if bn := im.foldable(i, n); bn != nil {
		scale, offset, mean, vr, eps, err := im.bnParams(bn)
		if err != nil {
			return nil, err
		}
		if s, err = s.FoldBatchNorm(scale, offset, mean, vr, eps); err != nil {
			return nil, err
		}
		im.skip[bn] = true
		*out = bn.Outputs[0]
	}
	return graph.NewConv(s, im.threads)
}

// foldable returns the batch norm that alone consumes the output of the
// convolution n (index i) and whose statistics are constants, or nil.
func (im *importer) foldable(i int, n *NodeProto) *NodeProto {
	o := n.Outputs[0]
	if im.uses[o] != 1 {
		return nil
	}
	for _, m := range im.nodes[i+1:] {
		if !slices.Contains(m.Inputs, o) {
			continue
		}
		if m.OpType != "BatchNormalization" || m.Inputs[0] != o || m.Domain != "" && m.Domain != "ai.onnx" {
			return nil
		}
		if _, _, _, _, _, err := im.bnParams(m); err != nil {
			return nil
		}
		return m
	}
	return nil
}

// bnParams returns the constants of a batch normalization node.
func (im *importer) bnParams(n *NodeProto) (scale, offset, mean, variance []float32, eps float64, err error) {
	a := attrs{}
	for _, at := range n.Attributes {
		a[at.Name] = at
	}
	if a.int("training_mode", 0) != 0 {
		return nil, nil, nil, nil, 0, fmt.Errorf("training_mode=1 (export the model in eval mode)")
	}
	for _, o := range n.Outputs[1:] {
		if o != "" && im.uses[o] > 0 {
			return nil, nil, nil, nil, 0, fmt.Errorf("its running statistics outputs are used")
		}
	}
	var v [4][]float32
	for k, what := range []string{"scale", "bias", "mean", "var"} {
		t, err := im.floatsIn(n, k+1, what)
		if err != nil {
			return nil, nil, nil, nil, 0, err
		}
		v[k] = t.Data
	}
	return v[0], v[1], v[2], v[3], float64(a.float("epsilon", 1e-5)), nil
}

func (im *importer) batchNorm(n *NodeProto) (graph.Op, error) {
	scale, offset, mean, vr, eps, err := im.bnParams(n)
	if err != nil {
		return nil, err
	}
	return graph.NewBatchNorm(scale, offset, mean, vr, eps, im.threads)
}

func (im *importer) pool(n *NodeProto, a attrs) (graph.Op, error) {
	if err := autoPad(a); err != nil {
		return nil, err
	}
	var s graph.PoolSpec
	var err error
	if s.Kernel, err = a.pair("kernel_shape", 0); err != nil {
		return nil, err
	}
	if s.Strides, err = a.pair("strides", 1); err != nil {
		return nil, err
	}
	if s.Pads, err = a.pads(); err != nil {
		return nil, err
	}
	if d, err := a.pair("dilations", 1); err != nil || d != [2]int{1, 1} {
		return nil, fmt.Errorf("dilations %v (only 1)", a.ints("dilations"))
	}
	s.CeilMode = a.int("ceil_mode", 0) != 0
	s.CountIncludePad = a.int("count_include_pad", 0) != 0
	return graph.NewPool(s, n.OpType == "MaxPool")
}

func (im *importer) linear(n *NodeProto, a attrs) (graph.Op, error) {
	b, err := im.floatsIn(n, 1, "the right operand")
	if err != nil {
		return nil, err
	}
	if len(b.Shape) != 2 {
		return nil, fmt.Errorf("right operand of shape %v, want a matrix", b.Shape)
	}
	k, m := b.Shape[0], b.Shape[1]
	trans := n.OpType == "Gemm" && a.int("transB", 0) != 0
	if n.OpType == "Gemm" && a.int("transA", 0) != 0 {
		return nil, fmt.Errorf("transA=1")
	}
	if trans {
		k, m = m, k
	}
	alpha := a.float("alpha", 1)
	w := make([]float32, m*k) // (out, in)
	for o := range m {
		for i := range k {
			v := b.Data[i*m+o]
			if trans {
				v = b.Data[o*k+i]
			}
			w[o*k+i] = alpha * v
		}
	}
	var bias []float32
	if n.OpType == "Gemm" && len(n.Inputs) > 2 && n.Inputs[2] != "" {
		c, err := im.floatsIn(n, 2, "C")
		if err != nil {
			return nil, err
		}
		beta := a.float("beta", 1)
		bias = make([]float32, m)
		switch len(c.Data) {
		case 1, m:
			for o := range bias {
				bias[o] = beta * c.Data[o%len(c.Data)]
			}
		default:
			return nil, fmt.Errorf("C of shape %v, want %d values (one per output)", c.Shape, m)
		}
	}
	return graph.NewLinear(w, m, k, bias, im.threads)
}

func (im *importer) concat(n *NodeProto, a attrs) error {
	var in []graph.Value
	for i := range n.Inputs {
		v, c, ok, err := im.input(n, i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if c != nil {
			return &UnsupportedError{Op: n.OpType, Node: n.Name, Reason: "a constant joined to computed tensors"}
		}
		in = append(in, v)
	}
	im.add(n, &graph.Concat{Axis: int(a.int("axis", 1))}, in...)
	return nil
}
