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

// ErrNilInput is returned by Apply for a nil batch, by every defense here
// and in package baseline.
var ErrNilInput = errors.New("defense: nil input batch")
