//go:build !cgo || purego

package dnnl

// Available reports whether oneDNN can be used; in this build (purego or no
// cgo) it cannot.
func Available() bool { return false }

// SetThreads does nothing in this build.
func SetThreads(n int) {}

// Threads returns 1 in this build.
func Threads() int { return 1 }

// ActivationLayout returns NCHW in this build.
func ActivationLayout() Layout { return NCHW }

// Workspace is memory Convs share; in this build (purego or no cgo) there
// is none.
type Workspace struct{}

// NewWorkspace returns ErrUnavailable in this build.
func NewWorkspace() (*Workspace, error) { return nil, ErrUnavailable }

// Bytes returns 0 in this build.
func (w *Workspace) Bytes() int { return 0 }

// Close does nothing in this build.
func (w *Workspace) Close() {}

// Conv is a convolution of one shape. In this build (purego or no cgo)
// NewConv never returns one and its methods return ErrUnavailable.
type Conv struct{ p ConvParams }

// NewConv returns a *ParamError when p is invalid and ErrUnavailable
// otherwise: this build has no oneDNN.
func NewConv(p ConvParams) (*Conv, error) { return NewConvWith(p, DefaultConvOptions()) }

// NewConvWith returns a *ParamError or *OptionError for invalid input and
// ErrUnavailable otherwise.
func NewConvWith(p ConvParams, o ConvOptions) (*Conv, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrUnavailable
}

// Options returns the zero ConvOptions in this build.
func (c *Conv) Options() ConvOptions { return ConvOptions{} }

// Params returns the shape c was built for.
func (c *Conv) Params() ConvParams {
	if c == nil {
		return ConvParams{}
	}
	return c.p
}

// Forward returns a *LengthError for wrong lengths, else ErrUnavailable.
func (c *Conv) Forward(dst, src, weight, bias []float32) error {
	if c == nil {
		return ErrUnavailable
	}
	if err := c.p.checkForward(ConvOptions{}, dst, src, weight, bias); err != nil {
		return err
	}
	return ErrUnavailable
}

// BackwardData returns a *LengthError for wrong lengths, else ErrUnavailable.
func (c *Conv) BackwardData(dsrc, ddst, weight []float32) error {
	if c == nil {
		return ErrUnavailable
	}
	if err := c.p.checkBackwardData(dsrc, ddst, weight); err != nil {
		return err
	}
	return ErrUnavailable
}

// BackwardWeights returns a *LengthError for wrong lengths, else
// ErrUnavailable.
func (c *Conv) BackwardWeights(dweight, dbias, src, ddst []float32) error {
	if c == nil {
		return ErrUnavailable
	}
	if err := c.p.checkBackwardWeights(dweight, dbias, src, ddst); err != nil {
		return err
	}
	return ErrUnavailable
}

// Impl returns empty names in this build.
func (c *Conv) Impl() (fwd, bwdData, bwdWeights string) { return "", "", "" }

// Close does nothing in this build.
func (c *Conv) Close() {}

func (c *Conv) workspaceBytes() int { return 0 }

// Backward returns ErrBiasWithoutWeights or a *LengthError for bad
// arguments, else ErrUnavailable.
func (c *Conv) Backward(dsrc, dweight, dbias, src, ddst, weight []float32) error {
	if c == nil {
		return ErrUnavailable
	}
	if err := c.p.checkBackward(dsrc, dweight, dbias, src, ddst, weight); err != nil {
		return err
	}
	return ErrUnavailable
}

func (c *Conv) sharesDiffDst() bool { return false }
