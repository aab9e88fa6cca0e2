package attack

import (
	"context"

	"github.com/stl-defense/stl/tensor"
)

// Model is the classifier under attack: logits for a batch and the gradient
// of a function of the logits with respect to the input. Input normalization
// lives inside the model, so attacks work on pixels in [0,1].
//
// The classifiers of package nn satisfy Model; so does any user model that
// provides these methods.
type Model interface {
	// InputShape returns the (C, H, W) shape of one input image.
	InputShape() (c, h, w int)
	// NumClasses returns K, the number of logits per image.
	NumClasses() int
	// Logits returns the (N, K) logits of the batch x of shape (N, C, H, W)
	// in inference mode. It does not modify x.
	Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error)
	// InputGrad runs one forward and one backward pass in inference mode. It
	// computes the logits of x, calls seed(logits, g) which must fill g (same
	// (N, K) shape, zeroed) with dL/dlogits for the attacker's loss L, and
	// returns the logits and dL/dx = sum_{n,k} g[n,k] d logits[n,k] / dx, of
	// the shape of x. Cross-entropy, the CW margin loss and DeepFool's
	// per-class gradients are all expressed through seed.
	InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (logits, grad *tensor.Tensor, err error)
}
