package graph

import (
	"context"
	"fmt"
	"sync"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// Model is a classifier computed by a Graph: inputs (N, C, H, W) of pixels
// in [0, 1] (any input normalization is part of the graph), outputs (N, K)
// logits. It satisfies attack.Model. Its methods are safe for concurrent
// use (serialized by a mutex).
type Model struct {
	mu      sync.Mutex
	g       *Graph
	c, h, w int
	k       int
}

// NewModel checks g on one zero image of shape (c, h, w) and returns the
// classifier it computes. It returns an error naming the node whose shapes
// do not fit, or when the output is not one vector of logits per image.
func NewModel(g *Graph, c, h, w int) (*Model, error) {
	if c < 1 || h < 1 || w < 1 {
		return nil, fmt.Errorf("graph: input shape %dx%dx%d: want positive sizes", c, h, w)
	}
	y, err := g.Forward(tensor.New(1, c, h, w))
	if err != nil {
		return nil, err
	}
	k := y.Len()
	if len(y.Shape) < 2 || y.Shape[0] != 1 || k != y.Shape[len(y.Shape)-1] || k < 2 {
		return nil, fmt.Errorf("graph: output %q has shape %v for one image, want (1, K) logits with K >= 2", g.names[g.output], y.Shape)
	}
	return &Model{g: g, c: c, h: h, w: w, k: k}, nil
}

// Graph returns the model's graph (not safe to use concurrently with the
// model's methods).
func (m *Model) Graph() *Graph { return m.g }

// InputShape implements attack.Model.
func (m *Model) InputShape() (c, h, w int) { return m.c, m.h, m.w }

// NumClasses implements attack.Model.
func (m *Model) NumClasses() int { return m.k }

// SetThreads sets the goroutines of every op that has kernels.
func (m *Model) SetThreads(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.g.SetThreads(max(n, 1))
}

func (m *Model) check(op string, x *tensor.Tensor) error {
	if x == nil {
		return fmt.Errorf("%s: nil input", op)
	}
	if len(x.Shape) != 4 || x.Shape[0] < 1 || x.Shape[1] != m.c || x.Shape[2] != m.h || x.Shape[3] != m.w {
		return &tensor.ShapeError{Op: op, Want: []int{-1, m.c, m.h, m.w}, Got: x.Shape}
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// forward runs one chunk and returns its (n, K) logits (owned by the graph).
func (m *Model) forward(x *tensor.Tensor) (*tensor.Tensor, error) {
	y, err := m.g.Forward(x)
	if err != nil {
		return nil, err
	}
	if y.Len() != x.Shape[0]*m.k {
		return nil, fmt.Errorf("graph: output has shape %v for %d images, want (%d, %d)", y.Shape, x.Shape[0], x.Shape[0], m.k)
	}
	return y, nil
}

// chunks calls fn on [lo, hi) chunks of n images of at most nn.ChunkSize,
// checking ctx before each.
func chunks(ctx context.Context, n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += nn.ChunkSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(lo, min(lo+nn.ChunkSize, n)); err != nil {
			return err
		}
	}
	return nil
}

// Logits implements attack.Model: the (N, K) logits of x, computed in
// chunks of nn.ChunkSize images, newly allocated. It returns a
// *tensor.ShapeError for a wrong input shape and ctx's error when cancelled
// between chunks.
func (m *Model) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := m.check("graph.Model.Logits", x); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := tensor.New(x.Shape[0], m.k)
	err := chunks(ctx, x.Shape[0], func(lo, hi int) error {
		y, err := m.forward(x.Batch(lo, hi))
		if err == nil {
			copy(out.Batch(lo, hi).Data, y.Data)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// InputGrad implements attack.Model: the logits of x, seed's dL/dlogits,
// and dL/dx by one backward pass through the graph. Batches larger than
// nn.ChunkSize are forwarded once in chunks for all logits, then each chunk
// again and backpropagated. Both results are newly allocated.
func (m *Model) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (logits, grad *tensor.Tensor, err error) {
	if err := m.check("graph.Model.InputGrad", x); err != nil {
		return nil, nil, err
	}
	if seed == nil {
		return nil, nil, fmt.Errorf("graph.Model.InputGrad: nil seed")
	}
	n := x.Shape[0]
	g := tensor.New(n, m.k)
	grad = tensor.New(x.Shape...)
	one := n <= nn.ChunkSize
	if !one {
		if logits, err = m.Logits(ctx, x); err != nil {
			return nil, nil, err
		}
		seed(logits, g)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	err = chunks(ctx, n, func(lo, hi int) error {
		y, err := m.forward(x.Batch(lo, hi))
		if err != nil {
			return err
		}
		if one {
			logits = &tensor.Tensor{Shape: []int{n, m.k}, Data: append([]float32(nil), y.Data...)}
			seed(logits, g)
		}
		dx, err := m.g.Backward(&tensor.Tensor{Shape: y.Shape, Data: g.Batch(lo, hi).Data})
		if err == nil {
			copy(grad.Batch(lo, hi).Data, dx.Data)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return logits, grad, nil
}
