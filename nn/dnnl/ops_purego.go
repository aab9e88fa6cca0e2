//go:build !cgo || purego

package dnnl

// BatchNorm is batch normalization through oneDNN; in this build (purego or
// no cgo) NewBatchNorm never returns one and its methods return
// ErrUnavailable.
type BatchNorm struct{ p BatchNormParams }

// NewBatchNorm returns a *ParamError for invalid p, else ErrUnavailable.
func NewBatchNorm(p BatchNormParams) (*BatchNorm, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrUnavailable
}

// ForwardTraining returns ErrUnavailable in this build.
func (b *BatchNorm) ForwardTraining(dst, mean, variance, src, gamma, beta []float32) error {
	return ErrUnavailable
}

// ForwardInference returns ErrUnavailable in this build.
func (b *BatchNorm) ForwardInference(dst, src, mean, variance, gamma, beta []float32) error {
	return ErrUnavailable
}

// Backward returns ErrUnavailable in this build.
func (b *BatchNorm) Backward(dsrc, dgamma, dbeta, src, ddst, mean, variance, gamma []float32) error {
	return ErrUnavailable
}

// Impl returns empty names in this build.
func (b *BatchNorm) Impl() (train, infer, backward string) { return "", "", "" }

// Close does nothing in this build.
func (b *BatchNorm) Close() {}

// Pool is pooling through oneDNN; unavailable in this build.
type Pool struct{ p PoolParams }

// NewPool returns a *ParamError for invalid p, else ErrUnavailable.
func NewPool(p PoolParams) (*Pool, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrUnavailable
}

// Forward returns ErrUnavailable in this build.
func (q *Pool) Forward(dst, src []float32) error { return ErrUnavailable }

// Backward returns ErrUnavailable in this build.
func (q *Pool) Backward(dsrc, ddst []float32) error { return ErrUnavailable }

// Impl returns empty names in this build.
func (q *Pool) Impl() (fwd, bwd string) { return "", "" }

// Close does nothing in this build.
func (q *Pool) Close() {}
