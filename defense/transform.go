// Package defense holds the Sparse Transformation Layer (STL) with one
// universal dictionary and the stratified STL of the paper (sections
// 3.2-3.5), their training and their saved artifact. Every defense is a
// Transform; the baselines STL is compared with are in package
// defense/baseline.
package defense

import (
	"context"
	"errors"

	"github.com/stl-defense/stl/tensor"
)

// Transform maps a batch of images of shape (N, C, H, W), pixels in [0,1],
// to a batch of the same shape, pixels in [0,1].
type Transform interface {
	// Name is a short human-readable name used in reports, e.g. "STL (cluster)".
	Name() string
	// Apply returns T(x) in a newly allocated tensor; x is not modified.
	// Long transforms check ctx once per image.
	Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error)
	// Randomized reports whether Apply draws random numbers, in which case
	// white-box evaluation uses EOT. A randomized transform draws from its
	// own seeded source, so a sequence of calls is deterministic.
	Randomized() bool
}

// Skipper is implemented by randomized transforms whose random numbers can
// be skipped. Skip advances the transform's random source as if Apply had
// transformed n images, so that a computation resumed from saved batches
// draws, for the batches it still computes, the numbers an uninterrupted
// one would. It returns false, skipping nothing, when some part of the
// transform cannot skip.
type Skipper interface {
	Skip(n int) bool
}

// CanResume reports whether a computation applying t batch by batch may
// reload saved batches instead of recomputing them: t is deterministic, or
// it is a Skipper that can skip.
func CanResume(t Transform) bool {
	if !t.Randomized() {
		return true
	}
	s, ok := t.(Skipper)
	return ok && s.Skip(0)
}

// ErrNilInput is returned by Apply for a nil batch, by every defense here
// and in package baseline.
var ErrNilInput = errors.New("defense: nil input batch")
