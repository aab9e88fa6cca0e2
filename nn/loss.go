package nn

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/tensor"
)

// SoftmaxCrossEntropy returns the mean over the batch of the cross-entropy
// between softmax(logits) (N, K) and the integer labels, with optional label
// smoothing eps (target (1-eps) on the label plus eps/K everywhere), the
// number of correct arg-max predictions, and fills grad (N, K), when not
// nil, with d loss / d logits = (softmax - target) / N. Labels outside [0, K)
// return an error.
func SoftmaxCrossEntropy(logits *tensor.Tensor, labels []int, smoothing float64, grad *tensor.Tensor) (loss float64, correct int, err error) {
	if len(logits.Shape) != 2 || logits.Shape[0] != len(labels) {
		return 0, 0, &tensor.ShapeError{Op: "nn.SoftmaxCrossEntropy", Want: []int{len(labels), -1}, Got: logits.Shape}
	}
	n, k := logits.Shape[0], logits.Shape[1]
	if grad != nil && !tensor.SameShape(grad, logits) {
		return 0, 0, &tensor.ShapeError{Op: "nn.SoftmaxCrossEntropy grad", Want: logits.Shape, Got: grad.Shape}
	}
	p := make([]float64, k)
	for i := 0; i < n; i++ {
		y := labels[i]
		if y < 0 || y >= k {
			return 0, 0, fmt.Errorf("nn: label %d of example %d outside [0, %d)", y, i, k)
		}
		row := logits.Data[i*k : (i+1)*k]
		am := tensor.Argmax(row)
		mx := float64(row[am])
		if am == y {
			correct++
		}
		var z float64
		for j, v := range row {
			p[j] = math.Exp(float64(v) - mx)
			z += p[j]
		}
		logz := math.Log(z) + mx
		for j, v := range row {
			t := smoothing / float64(k)
			if j == y {
				t += 1 - smoothing
			}
			loss -= t * (float64(v) - logz)
			if grad != nil {
				grad.Data[i*k+j] = float32((p[j]/z - t) / float64(n))
			}
		}
	}
	return loss / float64(n), correct, nil
}

// BCEWithLogits returns the mean over all values of the binary
// cross-entropy between sigmoid(logits) and targets in [0, 1],
// -[t log s + (1-t) log(1-s)], computed stably from the logits, and fills
// grad (same shape), when not nil, with (sigmoid(x) - t) / numel.
func BCEWithLogits(logits, targets, grad *tensor.Tensor) (float64, error) {
	if !tensor.SameShape(logits, targets) {
		return 0, &tensor.ShapeError{Op: "nn.BCEWithLogits", Want: logits.Shape, Got: targets.Shape}
	}
	if grad != nil && !tensor.SameShape(grad, logits) {
		return 0, &tensor.ShapeError{Op: "nn.BCEWithLogits grad", Want: logits.Shape, Got: grad.Shape}
	}
	var loss float64
	inv := 1 / float64(len(logits.Data))
	for i, v := range logits.Data {
		x, t := float64(v), float64(targets.Data[i])
		// max(x,0) - x t + log(1 + exp(-|x|))
		loss += math.Max(x, 0) - x*t + math.Log1p(math.Exp(-math.Abs(x)))
		if grad != nil {
			grad.Data[i] = float32((1/(1+math.Exp(-x)) - t) * inv)
		}
	}
	return loss * inv, nil
}

// BCE returns the mean binary cross-entropy between probabilities p (for
// example a Sigmoid layer's output) and targets t, with p clamped to
// [1e-7, 1-1e-7], and fills grad with d loss / d p. Prefer BCEWithLogits
// for training.
func BCE(p, targets, grad *tensor.Tensor) (float64, error) {
	if !tensor.SameShape(p, targets) {
		return 0, &tensor.ShapeError{Op: "nn.BCE", Want: p.Shape, Got: targets.Shape}
	}
	if grad != nil && !tensor.SameShape(grad, p) {
		return 0, &tensor.ShapeError{Op: "nn.BCE grad", Want: p.Shape, Got: grad.Shape}
	}
	const eps = 1e-7
	var loss float64
	inv := 1 / float64(len(p.Data))
	for i, v := range p.Data {
		q := math.Min(math.Max(float64(v), eps), 1-eps)
		t := float64(targets.Data[i])
		loss -= t*math.Log(q) + (1-t)*math.Log(1-q)
		if grad != nil {
			grad.Data[i] = float32((q - t) / (q * (1 - q)) * inv)
		}
	}
	return loss * inv, nil
}

// MSE returns the mean over all values of (y - t)^2 and fills grad with
// 2 (y - t) / numel.
func MSE(y, targets, grad *tensor.Tensor) (float64, error) {
	if !tensor.SameShape(y, targets) {
		return 0, &tensor.ShapeError{Op: "nn.MSE", Want: y.Shape, Got: targets.Shape}
	}
	if grad != nil && !tensor.SameShape(grad, y) {
		return 0, &tensor.ShapeError{Op: "nn.MSE grad", Want: y.Shape, Got: grad.Shape}
	}
	var loss float64
	inv := 1 / float64(len(y.Data))
	for i, v := range y.Data {
		d := float64(v) - float64(targets.Data[i])
		loss += d * d
		if grad != nil {
			grad.Data[i] = float32(2 * d * inv)
		}
	}
	return loss * inv, nil
}
