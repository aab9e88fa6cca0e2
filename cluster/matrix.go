package cluster

import (
	"fmt"

	"github.com/stl-defense/stl/tensor"
)

// rows checks that x is a finite (N, D) matrix with N >= minRows and D >= 1
// and returns its dimensions.
func rows(op string, x *tensor.Tensor, minRows int) (n, d int, err error) {
	if x == nil {
		return 0, 0, &DataError{Op: op, Reason: "nil matrix"}
	}
	if len(x.Shape) != 2 {
		return 0, 0, &tensor.ShapeError{Op: "cluster." + op, Want: []int{-1, -1}, Got: x.Shape}
	}
	if err := x.Validate(); err != nil {
		return 0, 0, fmt.Errorf("cluster.%s: %w", op, err)
	}
	n, d = x.Shape[0], x.Shape[1]
	if d < 1 {
		return 0, 0, &DataError{Op: op, Reason: "rows have zero width"}
	}
	if n < minRows {
		return 0, 0, &DataError{Op: op, Reason: fmt.Sprintf("need at least %d rows, got %d", minRows, n)}
	}
	return n, d, nil
}

// sqDist returns the squared Euclidean distance between a and b (same length).
func sqDist(a []float32, b []float64) float64 {
	var s float64
	for i, v := range a {
		t := float64(v) - b[i]
		s += t * t
	}
	return s
}
