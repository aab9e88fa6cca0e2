package onnx

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/stl-defense/stl/nn/graph"
	"github.com/stl-defense/stl/tensor"
)

// The builders of the operators that take attributes or constant inputs.

// perChannel returns the values of a constant of shape (1, C, 1, 1) or
// (C, 1, 1), or nil.
func perChannel(c *constant) []float32 {
	if c == nil || c.t == nil {
		return nil
	}
	s := c.t.Shape
	if len(s) == 4 && s[0] == 1 {
		s = s[1:]
	}
	if len(s) != 3 || s[1] != 1 || s[2] != 1 {
		return nil
	}
	return c.t.Data
}

// normalization maps Sub(x, mean) followed by Div(., std), both per-channel
// constants and the Div the Sub's only consumer, to one graph.Normalize
// (nn's input normalization). It reports whether it did.
func (im *importer) normalization(i int, n *NodeProto, x graph.Value, yc *constant) (bool, error) {
	mean := perChannel(yc)
	o := n.Outputs[0]
	if n.OpType != "Sub" || mean == nil || im.uses[o] != 1 {
		return false, nil
	}
	for _, m := range im.nodes[i+1:] {
		if !slices.Contains(m.Inputs, o) {
			continue
		}
		if m.OpType != "Div" || len(m.Inputs) != 2 || m.Inputs[0] != o || m.Domain != "" && m.Domain != "ai.onnx" {
			return false, nil
		}
		std := perChannel(im.consts[m.Inputs[1]])
		if len(std) != len(mean) {
			return false, nil
		}
		op, err := graph.NewNormalize(mean, std, im.threads)
		if err != nil {
			return false, &UnsupportedError{Op: m.OpType, Node: m.Name, Reason: err.Error()}
		}
		im.skip[m] = true
		im.vals[m.Outputs[0]] = im.b.Node(n.Name, "Sub+Div", op, m.Outputs[0], x)
		return true, nil
	}
	return false, nil
}

func (im *importer) arith(i int, n *NodeProto, x graph.Value, xc *constant) error {
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
	if xc == nil {
		if done, err := im.normalization(i, n, x, yc); done || err != nil {
			return err
		}
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
	return v[0], v[1], v[2], v[3], decimal(a.float("epsilon", 1e-5)), nil
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

// decimal returns the float64 of the shortest decimal that rounds to f: the
// value an exporter meant when it stored 1e-5 as a float32 attribute.
func decimal(f float32) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		return float64(f)
	}
	return v
}
