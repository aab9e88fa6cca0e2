package attack

import (
	"context"
	"encoding/json"

	"github.com/stl-defense/stl/tensor"
)

// attackOptions is what holder needs of an attack's options struct.
type attackOptions interface {
	Validate() error
	budget() Budget
	targeted() bool
}

// holder gives an attack its validated options and the accessors every
// attack has: Budget, Targeted and MarshalJSON (Options stays with each
// attack, so that its documentation names the options type).
type holder[O attackOptions] struct{ opts O }

// newHolder validates o.
func newHolder[O attackOptions](o O) (holder[O], error) {
	return holder[O]{opts: o}, o.Validate()
}

// Budget returns the options' budget.
func (h *holder[O]) Budget() Budget { return h.opts.budget() }

// Targeted reports whether the attack is targeted.
func (h *holder[O]) Targeted() bool { return h.opts.targeted() }

// MarshalJSON encodes the options.
func (h *holder[O]) MarshalJSON() ([]byte, error) { return json.Marshal(h.opts) }

// cleanPass checks the context and returns the logits of the clean batch
// and their predictions.
func cleanPass(ctx context.Context, b batch, m Model, x *tensor.Tensor) (*tensor.Tensor, []int, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	z, err := b.logits(ctx, m, x)
	if err != nil {
		return nil, nil, err
	}
	return z, z.ArgmaxRows(nil), nil
}
