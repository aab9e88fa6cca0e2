package evaluate

import (
	"context"
	"slices"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/tensor"
)

// earlyPGD is untargeted PGD that stops attacking an image at its first
// misclassified iterate, which becomes its result (as APGD's StopEarly
// does; attack.PGD alone returns the last iterate). It runs attack.PGD
// against a stopModel, which freezes each image at its first success: the
// frozen image gets a zero gradient, so that PGD's sign or normalized step
// leaves it where it is, and its rows are no longer passed to the model,
// which saves their forward and backward passes.
type earlyPGD struct{ *attack.PGD }

// Run implements attack.Attack.
func (a earlyPGD) Run(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int) (*attack.Result, error) {
	if m == nil || x == nil || len(x.Shape) == 0 {
		return a.PGD.Run(ctx, m, x, labels) // its own input errors
	}
	return a.PGD.Run(ctx, newStopModel(m, x.Shape[0], len(x.Data)/max(x.Shape[0], 1), labels), x, labels)
}

// stopModel wraps the model PGD attacks for one batch of n images (rows
// are images: PGD always passes its whole batch, in order). Once the
// logits of row i misclassify it, the row's input is remembered with its
// logits; afterwards a call whose row i equals that input returns the
// remembered logits and a zero gradient without passing the row to the
// model. Calls of another batch size go straight to the model.
type stopModel struct {
	attack.Model
	n, d   int
	labels []int
	point  [][]float32 // the frozen input of each image, nil while attacked
	logits [][]float32 // its logits
}

func newStopModel(m attack.Model, n, d int, labels []int) *stopModel {
	return &stopModel{Model: m, n: n, d: d, labels: labels, point: make([][]float32, n), logits: make([][]float32, n)}
}

// split returns the rows of x still attacked; ok is false when x is not a
// batch of this model's n images.
func (s *stopModel) split(x *tensor.Tensor) (active []int, ok bool) {
	if x == nil || len(x.Shape) == 0 || x.Shape[0] != s.n || len(x.Data) != s.n*s.d {
		return nil, false
	}
	for i := 0; i < s.n; i++ {
		if s.point[i] == nil || !slices.Equal(s.point[i], x.Data[i*s.d:(i+1)*s.d]) {
			active = append(active, i)
		}
	}
	return active, true
}

// gather returns the rows idx of t (rows of width w).
func gather(t *tensor.Tensor, idx []int, w int) *tensor.Tensor {
	shape := append([]int{len(idx)}, t.Shape[1:]...)
	out := &tensor.Tensor{Shape: shape, Data: make([]float32, len(idx)*w)}
	for a, i := range idx {
		copy(out.Data[a*w:(a+1)*w], t.Data[i*w:(i+1)*w])
	}
	return out
}

// full returns the (n, k) logits of the whole batch: those of sub for the
// rows idx, the frozen ones elsewhere.
func (s *stopModel) full(sub *tensor.Tensor, idx []int) *tensor.Tensor {
	k := s.NumClasses()
	z := tensor.New(s.n, k)
	for i := range s.logits {
		if s.logits[i] != nil {
			copy(z.Data[i*k:(i+1)*k], s.logits[i])
		}
	}
	for a, i := range idx {
		copy(z.Data[i*k:(i+1)*k], sub.Data[a*k:(a+1)*k])
	}
	return z
}

// freeze remembers, among the rows idx of x with logits sub, those
// misclassified, and returns their positions in idx.
func (s *stopModel) freeze(x, sub *tensor.Tensor, idx []int) []int {
	k := s.NumClasses()
	var frozen []int
	for a, i := range idx {
		row := sub.Data[a*k : (a+1)*k]
		if s.point[i] == nil && len(row) == k && tensor.Argmax(row) != s.labels[i] {
			s.point[i] = append([]float32(nil), x.Data[i*s.d:(i+1)*s.d]...)
			s.logits[i] = append([]float32(nil), row...)
			frozen = append(frozen, a)
		}
	}
	return frozen
}

// Logits returns the logits of the rows still attacked and the remembered
// ones of the frozen rows.
func (s *stopModel) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	idx, ok := s.split(x)
	if !ok {
		return s.Model.Logits(ctx, x)
	}
	if len(idx) == 0 {
		return s.full(nil, nil), nil
	}
	z, err := s.Model.Logits(ctx, gather(x, idx, s.d))
	if err != nil || z == nil || len(z.Data) != len(idx)*s.NumClasses() {
		return z, err // the attack reports the shape error
	}
	s.freeze(x, z, idx)
	return s.full(z, idx), nil
}

// InputGrad returns the gradient of the rows still attacked, zero for the
// frozen rows and for those that freeze at this call. seed sees the logits
// of the whole batch (the frozen rows' remembered ones), as the losses of
// package attack seed each row from its own logits.
func (s *stopModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	idx, ok := s.split(x)
	if !ok {
		return s.Model.InputGrad(ctx, x, seed)
	}
	if len(idx) == 0 {
		return s.full(nil, nil), tensor.New(x.Shape...), nil
	}
	k := s.NumClasses()
	subSeed := func(z, g *tensor.Tensor) {
		zf, gf := s.full(z, idx), tensor.New(s.n, k)
		seed(zf, gf)
		for a, i := range idx {
			copy(g.Data[a*k:(a+1)*k], gf.Data[i*k:(i+1)*k])
		}
	}
	z, g, err := s.Model.InputGrad(ctx, gather(x, idx, s.d), subSeed)
	if err != nil || z == nil || g == nil || len(z.Data) != len(idx)*k || len(g.Data) != len(idx)*s.d {
		return z, g, err
	}
	for _, a := range s.freeze(x, z, idx) {
		clear(g.Data[a*s.d : (a+1)*s.d])
	}
	gf := tensor.New(x.Shape...)
	for a, i := range idx {
		copy(gf.Data[i*s.d:(i+1)*s.d], g.Data[a*s.d:(a+1)*s.d])
	}
	return s.full(z, idx), gf, nil
}
