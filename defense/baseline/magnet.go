package baseline

import (
	"context"
	"errors"
	"fmt"

	"github.com/stl-defense/stl/tensor"
)

// Reformer is the denoising auto-encoder behind MagNet's reformer (Meng and
// Chen 2017): it maps a batch (N, C, H, W) in [0,1] to its reconstruction,
// of the same shape, in [0,1]. It must not modify x.
type Reformer interface {
	Reconstruct(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error)
}

// ErrNoGradient is returned by MagNet.VJP when its Reformer does not
// provide one.
var ErrNoGradient = errors.New("defense magnet: the auto-encoder provides no vector-jacobian product")

// ErrNoReformer is returned when MagNet is built without a trained
// auto-encoder.
var ErrNoReformer = errors.New("defense magnet: no trained auto-encoder")

// MagNet is MagNet's reformer used as an input transformation: T(x) is the
// auto-encoder's reconstruction of x, which moves inputs towards the
// manifold of clean training images. It is deterministic; it is safe for
// concurrent use when its Reformer is.
type MagNet struct{ dae Reformer }

// NewMagNet returns the reformer transform around a trained auto-encoder.
// It returns ErrNoReformer for a nil dae.
func NewMagNet(dae Reformer) (*MagNet, error) {
	if dae == nil {
		return nil, ErrNoReformer
	}
	return &MagNet{dae: dae}, nil
}

// Name implements defense.Transform.
func (m *MagNet) Name() string { return "MagNet" }

// Randomized implements defense.Transform: the reformer is deterministic.
func (m *MagNet) Randomized() bool { return false }

// Apply implements defense.Transform.
func (m *MagNet) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	in, _, _, _, _, err := baselineInput("magnet", x)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	y, err := m.dae.Reconstruct(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("defense magnet: %w", err)
	}
	if !tensor.SameShape(y, in) || len(y.Data) != len(in.Data) {
		return nil, &tensor.ShapeError{Op: "baseline.MagNet", Want: in.Shape, Got: y.Shape}
	}
	if err := tensor.CheckFinite(y.Data); err != nil {
		return nil, fmt.Errorf("defense magnet: reconstruction: %w", err)
	}
	tensor.Clip(y.Data, 0, 1)
	return y, nil
}

// VJP returns the vector-jacobian product (dT/dx)^T gy of the reformer at
// x, so that BPDA can differentiate through MagNet exactly instead of
// treating it as the identity (it satisfies attack.Approx). It returns
// ErrNoGradient when the Reformer has no VJP method (a *MagNetDAE has one).
// The final clipping to [0,1] is ignored: the auto-encoder's sigmoid output
// never reaches it.
func (m *MagNet) VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error) {
	v, ok := m.dae.(interface {
		VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error)
	})
	if !ok {
		return nil, ErrNoGradient
	}
	return v.VJP(ctx, x, gy)
}
