package graph

import (
	"fmt"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// Reshape gives its input a new shape without copying, as ONNX's Reshape
// with a constant shape: 0 copies the input's dimension, -1 is inferred.
// The batch stays the first dimension: a first entry equal to Batch (the
// batch size the model was exported with, 0 when unknown) is read as the
// batch of the input at hand.
//
// With Axis > 0 it is ONNX's Flatten instead: the 2-D view (d0*...*d(Axis-1),
// dAxis*...), which keeps the batch first.
type Reshape struct {
	Target []int
	Batch  int
	Axis   int
	in     []int
	y, dx  tensor.Tensor
}

// Shape returns the output shape for an input of shape in.
func (l *Reshape) Shape(in []int) ([]int, error) {
	if l.Axis > 0 {
		if l.Axis > len(in) {
			return nil, fmt.Errorf("flatten axis %d of shape %v", l.Axis, in)
		}
		a, b := 1, 1
		for _, d := range in[:l.Axis] {
			a *= d
		}
		for _, d := range in[l.Axis:] {
			b *= d
		}
		return []int{a, b}, nil
	}
	out := slices.Clone(l.Target)
	if len(out) > 0 && l.Batch > 0 && out[0] == l.Batch && len(in) > 0 {
		out[0] = in[0]
	}
	total, known, infer := 1, 1, -1
	for _, d := range in {
		total *= d
	}
	for i, d := range out {
		switch {
		case d == 0 && i < len(in):
			out[i] = in[i]
		case d == -1 && infer < 0:
			infer = i
			continue
		case d < 1 || d > total:
			return nil, fmt.Errorf("reshape %v to %v: bad target", in, l.Target)
		}
		known *= out[i]
	}
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("reshape %v to %v: %d values do not fit", in, l.Target, total)
		}
		out[infer] = total / known
		known *= out[infer]
	}
	if known != total {
		return nil, fmt.Errorf("reshape %v to %v: %d values, the target holds %d", in, l.Target, total, known)
	}
	return out, nil
}

// Forward implements Op.
func (l *Reshape) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	out, err := l.Shape(in[0].Shape)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 || out[0] != in[0].Shape[0] {
		return nil, fmt.Errorf("reshape %v to %v changes the batch dimension", in[0].Shape, out)
	}
	l.in = append(l.in[:0], in[0].Shape...)
	l.y = tensor.Tensor{Shape: out, Data: in[0].Data}
	return &l.y, nil
}

// Backward implements Op.
func (l *Reshape) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	l.dx = tensor.Tensor{Shape: l.in, Data: dy.Data}
	return []*tensor.Tensor{&l.dx}, nil
}

// Concat joins its inputs along Axis (>= 1, the batch is dimension 0;
// negative counts from the last dimension).
type Concat struct {
	Axis  int
	ax    int // Axis resolved for the last Forward
	y     *tensor.Tensor
	dx    []*tensor.Tensor
	sizes []int // each input's extent along Axis
}

// Forward implements Op.
func (l *Concat) Forward(in []*tensor.Tensor) (*tensor.Tensor, error) {
	ref := in[0].Shape
	l.ax = l.Axis
	if l.ax < 0 {
		l.ax += len(ref)
	}
	if l.ax < 1 || l.ax >= len(ref) {
		return nil, fmt.Errorf("concat axis %d of a %d-dimensional tensor (the batch, 0, cannot be joined)", l.Axis, len(ref))
	}
	out := slices.Clone(ref)
	out[l.ax] = 0
	l.sizes = l.sizes[:0]
	for _, x := range in {
		s := x.Shape
		if len(s) != len(ref) || !slices.Equal(s[:l.ax], ref[:l.ax]) || !slices.Equal(s[l.ax+1:], ref[l.ax+1:]) {
			return nil, fmt.Errorf("concat of shapes %v and %v along axis %d", ref, s, l.ax)
		}
		out[l.ax] += s[l.ax]
		l.sizes = append(l.sizes, s[l.ax])
	}
	l.y = ensure(l.y, out)
	outer, inner := l.blocks(out)
	off := 0
	for i, x := range in {
		m := l.sizes[i] * inner
		for o := range outer {
			copy(l.y.Data[o*out[l.ax]*inner+off:][:m], x.Data[o*m:(o+1)*m])
		}
		off += m
	}
	return l.y, nil
}

// blocks returns the number of blocks before Axis and the values per unit
// of Axis.
func (l *Concat) blocks(shape []int) (outer, inner int) {
	outer, inner = 1, 1
	for _, d := range shape[:l.ax] {
		outer *= d
	}
	for _, d := range shape[l.ax+1:] {
		inner *= d
	}
	return outer, inner
}

// Backward implements Op.
func (l *Concat) Backward(dy *tensor.Tensor) ([]*tensor.Tensor, error) {
	outer, inner := l.blocks(dy.Shape)
	if len(l.dx) != len(l.sizes) {
		l.dx = make([]*tensor.Tensor, len(l.sizes))
	}
	off := 0
	for i, sz := range l.sizes {
		shape := slices.Clone(dy.Shape)
		shape[l.ax] = sz
		l.dx[i] = ensure(l.dx[i], shape)
		m := sz * inner
		for o := range outer {
			copy(l.dx[i].Data[o*m:(o+1)*m], dy.Data[o*dy.Shape[l.ax]*inner+off:][:m])
		}
		off += m
	}
	return l.dx, nil
}
