package graph

import (
	"fmt"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// Op is one differentiable operation of a graph on batches: every input and
// the output have the batch as their first dimension. Weights and other
// constants are part of the op, not inputs.
//
// Forward computes the output of the inputs; it checks their shapes and
// returns a *tensor.ShapeError (or another error naming the problem) when
// they do not fit, never panics on them. The output is owned by the op and
// overwritten by its next Forward; it may share storage with an input
// (reshapes). Forward does not modify its inputs.
//
// Backward takes dL/dy for the last Forward and returns dL/dx for every
// input, in order. It may consume dy (compute in place in its storage), and
// the returned tensors may be owned by the op or alias dy: the executor
// adds them into its own buffers at once. Ops are not safe for concurrent
// use.
type Op interface {
	Forward(in []*tensor.Tensor) (*tensor.Tensor, error)
	Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error)
}

// Threaded is implemented by ops whose kernels take a goroutine count.
type Threaded interface{ SetThreads(n int) }

// Value is the index of a tensor of a graph: the input or a node's output.
type Value int

// Node is one op applied to computed values.
type Node struct {
	Name string // the name in the source (ONNX node name or layer path)
	Kind string // the op type, for messages ("Conv", "Relu")
	Op   Op
	In   []Value
	Out  Value
}

// Graph is a directed acyclic graph of ops from one input (an image batch
// of shape (N, C, H, W)) to one output. Build it with a Builder; its nodes
// are kept in topological order and only those the output depends on are
// kept. A Graph is not safe for concurrent use (Model serializes it).
type Graph struct {
	names  []string // of every value
	nodes  []Node
	input  Value
	output Value
	vals   []*tensor.Tensor // forward values of the last Forward
	acc    []*tensor.Tensor // gradient buffers, one per value
	seen   []bool           // acc[v] holds a gradient of this Backward
}

// Builder assembles a Graph. Values are created by Input and Node;
// Build checks and sorts the result.
type Builder struct {
	names []string
	nodes []Node
	input Value
	has   bool
}

// Input declares the graph's input value.
func (b *Builder) Input(name string) Value {
	b.input, b.has = b.value(name), true
	return b.input
}

func (b *Builder) value(name string) Value {
	b.names = append(b.names, name)
	return Value(len(b.names) - 1)
}

// Node adds op applied to in and returns its output value, named out.
func (b *Builder) Node(name, kind string, op Op, out string, in ...Value) Value {
	v := b.value(out)
	b.nodes = append(b.nodes, Node{Name: name, Kind: kind, Op: op, In: slices.Clone(in), Out: v})
	return v
}

// Name returns the name of value v.
func (b *Builder) Name(v Value) string { return b.names[v] }

// Build returns the graph computing output from the input: the nodes the
// output depends on in topological order. It returns an error when no input
// was declared or the output does not depend on it.
func (b *Builder) Build(output Value) (*Graph, error) {
	if !b.has {
		return nil, fmt.Errorf("graph: no input declared")
	}
	producer := make(map[Value]int, len(b.nodes))
	for i, n := range b.nodes {
		producer[n.Out] = i
	}
	// Depth-first from the output: post-order is a topological order.
	state := make([]uint8, len(b.nodes)) // 0 new, 1 on the stack, 2 done
	var order []Node
	var visit func(v Value) error
	visit = func(v Value) error {
		if v == b.input {
			return nil
		}
		i, ok := producer[v]
		if !ok {
			return fmt.Errorf("graph: value %q is computed by no node", b.names[v])
		}
		switch state[i] {
		case 1:
			return fmt.Errorf("graph: cycle through node %q", b.nodes[i].Name)
		case 2:
			return nil
		}
		state[i] = 1
		for _, in := range b.nodes[i].In {
			if err := visit(in); err != nil {
				return err
			}
		}
		state[i] = 2
		order = append(order, b.nodes[i])
		return nil
	}
	if err := visit(output); err != nil {
		return nil, err
	}
	if output == b.input {
		return nil, fmt.Errorf("graph: the output is the input")
	}
	n := len(b.names)
	return &Graph{names: slices.Clone(b.names), nodes: order, input: b.input, output: output,
		vals: make([]*tensor.Tensor, n), acc: make([]*tensor.Tensor, n), seen: make([]bool, n)}, nil
}

// Nodes returns the graph's nodes in execution order (shared, read only).
func (g *Graph) Nodes() []Node { return g.nodes }

// SetThreads sets the goroutine count of every op that has one.
func (g *Graph) SetThreads(n int) {
	for _, nd := range g.nodes {
		if t, ok := nd.Op.(Threaded); ok {
			t.SetThreads(n)
		}
	}
}

// Forward runs the graph on x and returns the output, owned by the graph
// (overwritten by the next Forward). Errors name the node that failed.
func (g *Graph) Forward(x *tensor.Tensor) (*tensor.Tensor, error) {
	clear(g.vals)
	g.vals[g.input] = x
	var in []*tensor.Tensor
	for _, nd := range g.nodes {
		in = in[:0]
		for _, v := range nd.In {
			in = append(in, g.vals[v])
		}
		y, err := nd.Op.Forward(in)
		if err != nil {
			return nil, fmt.Errorf("graph: node %q (%s): %w", nd.Name, nd.Kind, err)
		}
		g.vals[nd.Out] = y
	}
	return g.vals[g.output], nil
}

// Backward takes dL/dy for the output of the last Forward (not modified)
// and returns dL/dx for its input, owned by the graph. Gradients reaching
// a value along several paths (residual additions, concatenations) are
// summed.
func (g *Graph) Backward(dy *tensor.Tensor) (*tensor.Tensor, error) {
	clear(g.seen)
	if !slices.Equal(dy.Shape, g.vals[g.output].Shape) {
		return nil, &tensor.ShapeError{Op: "graph.Backward", Want: g.vals[g.output].Shape, Got: dy.Shape}
	}
	g.add(g.output, dy)
	for i := len(g.nodes) - 1; i >= 0; i-- {
		nd := g.nodes[i]
		if !g.seen[nd.Out] {
			continue // no gradient flows through this node
		}
		dx, err := nd.Op.Backward(g.acc[nd.Out])
		if err != nil {
			return nil, fmt.Errorf("graph: node %q (%s) backward: %w", nd.Name, nd.Kind, err)
		}
		for j, v := range nd.In {
			g.add(v, dx[j])
		}
	}
	if !g.seen[g.input] {
		// The output does not depend on the input numerically (cannot
		// happen after Build, which keeps only dependent nodes).
		g.acc[g.input] = ensure(g.acc[g.input], g.vals[g.input].Shape)
		clear(g.acc[g.input].Data)
	}
	return g.acc[g.input], nil
}

// add accumulates d into the gradient buffer of v.
func (g *Graph) add(v Value, d *tensor.Tensor) {
	if !g.seen[v] {
		g.acc[v] = ensure(g.acc[v], d.Shape)
		copy(g.acc[v].Data, d.Data)
		g.seen[v] = true
		return
	}
	a := g.acc[v].Data
	for i, x := range d.Data[:len(a)] {
		a[i] += x
	}
}

// ensure returns t when it has the given shape, else a new zero tensor.
func ensure(t *tensor.Tensor, shape []int) *tensor.Tensor {
	if t != nil && slices.Equal(t.Shape, shape) {
		return t
	}
	return tensor.New(shape...)
}
