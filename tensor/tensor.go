// Package tensor holds the plain dense float32 arrays that every other package
// of the project exchanges: image batches in (N, C, H, W) order, logits in
// (N, K) order, dictionaries and coefficient maps.
//
// A Tensor is a shape and a flat row-major (C order) slice. Hot loops work on
// Data directly with explicit strides; this package only adds construction,
// shape checks and a few whole-array helpers.
package tensor

import (
	"fmt"
	"math"
)

// Tensor is a dense float32 array in row-major order. The zero value is an
// empty tensor. Tensors are not safe for concurrent mutation.
type Tensor struct {
	Shape []int
	Data  []float32
}

// New allocates a zero-filled tensor of the given shape. It panics on a
// negative dimension, which is a programming error; use FromData for shapes
// that come from user input.
func New(shape ...int) *Tensor {
	n, err := numel(shape)
	if err != nil {
		panic(err)
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, n)}
}

// FromData wraps data (without copying) in a tensor of the given shape. It
// returns a *ShapeError when the shape does not describe len(data) values.
func FromData(data []float32, shape ...int) (*Tensor, error) {
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	if n != len(data) {
		return nil, &ShapeError{Op: "tensor.FromData", Want: shape, Got: []int{len(data)}}
	}
	return &Tensor{Shape: append([]int(nil), shape...), Data: data}, nil
}

func numel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor: negative dimension in shape %v", shape)
		}
		n *= d
	}
	return n, nil
}

// Len returns the number of elements, the product of Shape.
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// NCHW returns the four dimensions of an image batch. It returns a
// *ShapeError when t is not four-dimensional.
func (t *Tensor) NCHW() (n, c, h, w int, err error) {
	if len(t.Shape) != 4 {
		return 0, 0, 0, 0, &ShapeError{Op: "tensor.NCHW", Want: []int{-1, -1, -1, -1}, Got: t.Shape}
	}
	return t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3], nil
}

// Sample returns a view (sharing Data) of the i-th entry along the first
// dimension, with the first dimension kept as 1. It panics when i is out of
// range, an internal invariant.
func (t *Tensor) Sample(i int) *Tensor {
	if len(t.Shape) == 0 || i < 0 || i >= t.Shape[0] {
		panic(fmt.Sprintf("tensor: sample %d out of range for shape %v", i, t.Shape))
	}
	return t.Batch(i, i+1)
}

// Batch returns a view (sharing Data, so writes go to t) of entries lo to
// hi-1 along the first dimension: shape (hi-lo, Shape[1:]...). It is how a
// large batch is processed in chunks: x.Batch(lo, hi) as the input,
// copy(out.Batch(lo, hi).Data, y.Data) to store the result. It allocates
// only the new Shape. It panics unless 0 <= lo <= hi <= Shape[0], an
// internal invariant.
func (t *Tensor) Batch(lo, hi int) *Tensor {
	if len(t.Shape) == 0 || lo < 0 || lo > hi || hi > t.Shape[0] {
		panic(fmt.Sprintf("tensor: batch [%d, %d) out of range for shape %v", lo, hi, t.Shape))
	}
	per := 1
	for _, d := range t.Shape[1:] {
		per *= d
	}
	shape := append([]int{hi - lo}, t.Shape[1:]...)
	return &Tensor{Shape: shape, Data: t.Data[lo*per : hi*per]}
}

// Argmax returns the index of the largest value of v, the first one on
// ties, or -1 when v is empty. NaN values are never chosen over an earlier
// number (v[0] is chosen when it is NaN).
func Argmax(v []float32) int {
	if len(v) == 0 {
		return -1
	}
	best := 0
	for j := 1; j < len(v); j++ {
		if v[j] > v[best] {
			best = j
		}
	}
	return best
}

// ArgmaxRows returns Argmax of each row of t read as (N, K) rows of K =
// Shape[len(Shape)-1] values (logits to predicted classes). It writes into
// dst when it has room for N values and allocates otherwise.
func (t *Tensor) ArgmaxRows(dst []int) []int {
	if len(t.Shape) == 0 {
		return dst[:0]
	}
	k := t.Shape[len(t.Shape)-1]
	n := 0
	if k > 0 {
		n = len(t.Data) / k
	}
	if cap(dst) < n {
		dst = make([]int, n)
	}
	dst = dst[:n]
	for i := range dst {
		dst[i] = Argmax(t.Data[i*k : (i+1)*k])
	}
	return dst
}

// Validate checks that Shape describes exactly len(Data) values and that
// every value is finite. It returns a *ShapeError or a *NonFiniteError.
func (t *Tensor) Validate() error {
	n, err := numel(t.Shape)
	if err != nil {
		return err
	}
	if n != len(t.Data) {
		return &ShapeError{Op: "tensor.Validate", Want: t.Shape, Got: []int{len(t.Data)}}
	}
	return CheckFinite(t.Data)
}

// SameShape reports whether a and b have identical shapes.
func SameShape(a, b *Tensor) bool {
	if len(a.Shape) != len(b.Shape) {
		return false
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return false
		}
	}
	return true
}

// CheckFinite returns a *NonFiniteError naming the first NaN or infinite
// value in data, or nil.
func CheckFinite(data []float32) error {
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return &NonFiniteError{Index: i, Value: v}
		}
	}
	return nil
}

// Clip limits every value of data to [lo, hi] in place.
func Clip(data []float32, lo, hi float32) {
	for i, v := range data {
		if v < lo {
			data[i] = lo
		} else if v > hi {
			data[i] = hi
		}
	}
}

// ShapeError reports an array whose shape is not the one an operation needs.
// A -1 in Want stands for any size.
type ShapeError struct {
	Op        string
	Want, Got []int
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("%s: shape mismatch: want %v, got %v", e.Op, e.Want, e.Got)
}

// NonFiniteError reports a NaN or infinite value at a flat index.
type NonFiniteError struct {
	Index int
	Value float32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("non-finite value %v at flat index %d", e.Value, e.Index)
}
