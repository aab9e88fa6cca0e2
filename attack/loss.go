package attack

import (
	"math"

	"github.com/stl-defense/stl/tensor"
)

// crossEntropySeed returns a Model.InputGrad seed that fills g with dL/dz
// for the loss the attacker ascends: L = CE(softmax(z), y) untargeted, or
// L = -CE(softmax(z), t) targeted, summed over the batch. dCE/dz is
// softmax(z) - onehot(y), computed in float64 with the maximum logit
// subtracted for stability.
func crossEntropySeed(labels []int, k int, targeted bool) func(z, g *tensor.Tensor) {
	sign := 1.0
	if targeted {
		sign = -1
	}
	p := make([]float64, k)
	return func(z, g *tensor.Tensor) {
		for i, y := range labels {
			row := z.Data[i*k : (i+1)*k]
			softmax(p, row)
			out := g.Data[i*k : (i+1)*k]
			for j := range out {
				d := p[j]
				if j == y {
					d--
				}
				out[j] = float32(sign * d)
			}
		}
	}
}

// softmax writes softmax(z) to p.
func softmax(p []float64, z []float32) {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for j, v := range z {
		p[j] = math.Exp(float64(v) - m)
		s += p[j]
	}
	for j := range p {
		p[j] /= s
	}
}

// bestOther returns the index and value of the largest logit of row other
// than class y.
func bestOther(row []float32, y int) (int, float32) {
	best := -1
	var bv float32
	for j, v := range row {
		if j == y {
			continue
		}
		if best < 0 || v > bv {
			best, bv = j, v
		}
	}
	return best, bv
}
