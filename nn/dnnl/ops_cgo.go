//go:build cgo && !purego

package dnnl

/*
#include "dnnl.h"
*/
import "C"

import "unsafe"

// op wraps one C stl_op.
type op struct{ o *C.stl_op }

func (o op) exec(name string, ptrs ...[]float32) error {
	var p [8]unsafe.Pointer
	for i, s := range ptrs {
		if s != nil {
			p[i] = unsafe.Pointer(&s[0])
		}
	}
	if st := C.stl_op_exec(o.o, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]); st != 0 {
		return statusError(name, st)
	}
	return nil
}

func (o *op) destroy() {
	if o.o != nil {
		C.stl_op_destroy(o.o)
		o.o = nil
	}
}

func (o op) impl() string {
	if o.o == nil {
		return ""
	}
	return C.GoString(C.stl_op_impl(o.o))
}

// BatchNorm runs batch normalization on plain NCHW arrays through oneDNN,
// with the primitives for one shape built once. Statistics are the
// caller's; the only state kept between calls is, with FuseReLU, the ReLU
// mask of the latest ForwardTraining. Not safe for concurrent use.
type BatchNorm struct {
	p                  BatchNormParams
	nthr               int32
	train, infer, back op
	ss, dss            []float32 // (2, C): gamma and beta, and their gradients
}

// NewBatchNorm builds the primitives for p under the current thread count.
// It returns a *ParamError for invalid p, ErrUnavailable without oneDNN and
// an *Error when oneDNN fails.
func NewBatchNorm(p BatchNormParams) (*BatchNorm, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := initEngine(); err != nil {
		return nil, err
	}
	b := &BatchNorm{p: p, ss: make([]float32, 2*p.C), dss: make([]float32, 2*p.C)}
	if err := b.build(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *BatchNorm) build() error {
	dims := [4]C.int64_t{C.int64_t(b.p.N), C.int64_t(b.p.C), C.int64_t(b.p.H), C.int64_t(b.p.W)}
	nthr := threads.Load()
	var t, i, k *C.stl_op
	relu := C.int(0)
	if b.p.FuseReLU {
		relu = 1
	}
	if st := C.stl_bn_create(&t, &i, &k, &dims[0], C.float(b.p.Epsilon), relu, C.int(nthr)); st != 0 {
		return statusError("NewBatchNorm", st)
	}
	b.train, b.infer, b.back, b.nthr = op{t}, op{i}, op{k}, nthr
	return nil
}

func (b *BatchNorm) ready() error {
	if b == nil || b.train.o == nil {
		return ErrClosed
	}
	if threads.Load() == b.nthr {
		return nil
	}
	b.destroy()
	return b.build()
}

// destroy frees backward first: with FuseReLU it reads training's workspace.
func (b *BatchNorm) destroy() {
	b.back.destroy()
	b.train.destroy()
	b.infer.destroy()
}

// ForwardTraining normalizes src (N,C,H,W) into dst with the batch's
// statistics, which it writes to mean and variance (C values each; variance
// biased, divided by N*H*W) for Backward and for the caller's running
// averages. gamma and beta (C) scale and shift; with FuseReLU dst gets
// max(0, y). dst may be src (in place).
func (b *BatchNorm) ForwardTraining(dst, mean, variance, src, gamma, beta []float32) error {
	if b == nil {
		return ErrClosed
	}
	if err := b.p.checkTraining(dst, mean, variance, src, gamma, beta); err != nil {
		return err
	}
	if err := b.ready(); err != nil {
		return err
	}
	copy(b.ss, gamma)
	copy(b.ss[b.p.C:], beta)
	return b.train.exec("BatchNorm.ForwardTraining", src, b.ss, dst, mean, variance)
}

// ForwardInference normalizes src into dst with the given statistics (the
// running mean and biased variance). dst may be src.
func (b *BatchNorm) ForwardInference(dst, src, mean, variance, gamma, beta []float32) error {
	if b == nil {
		return ErrClosed
	}
	if err := b.p.checkInference(dst, src, mean, variance, gamma, beta); err != nil {
		return err
	}
	if err := b.ready(); err != nil {
		return err
	}
	copy(b.ss, gamma)
	copy(b.ss[b.p.C:], beta)
	return b.infer.exec("BatchNorm.ForwardInference", src, mean, variance, b.ss, dst)
}

// Backward computes, for a ForwardTraining with statistics mean and
// variance, the input gradient dsrc (overwritten) and the parameter
// gradients dgamma and dbeta (overwritten; either may be nil) from the output
// gradient ddst. The statistics' own dependence on src is included (the full
// training-mode gradient). With FuseReLU, ddst is the gradient with respect
// to the ReLU's output, and the ReLU mask comes from the latest
// ForwardTraining (an *Error if the thread count changed since). dsrc may be
// ddst (in place).
func (b *BatchNorm) Backward(dsrc, dgamma, dbeta, src, ddst, mean, variance, gamma []float32) error {
	if b == nil {
		return ErrClosed
	}
	if err := b.p.checkBackward(dsrc, dgamma, dbeta, src, ddst, mean, variance, gamma); err != nil {
		return err
	}
	if b.p.FuseReLU && b.train.o != nil && threads.Load() != b.nthr {
		return &Error{Op: "BatchNorm.Backward", Msg: "thread count changed since ForwardTraining (FuseReLU)"}
	}
	if err := b.ready(); err != nil {
		return err
	}
	copy(b.ss, gamma) // beta is not read
	if err := b.back.exec("BatchNorm.Backward", src, mean, variance, ddst, b.ss, dsrc, b.dss); err != nil {
		return err
	}
	copy(dgamma, b.dss[:b.p.C])
	copy(dbeta, b.dss[b.p.C:])
	return nil
}

// Impl returns oneDNN's names for the training, inference and backward
// implementations.
func (b *BatchNorm) Impl() (train, infer, backward string) {
	if b == nil {
		return "", "", ""
	}
	return b.train.impl(), b.infer.impl(), b.back.impl()
}

// Close releases the C memory; later calls return ErrClosed.
func (b *BatchNorm) Close() {
	if b != nil {
		b.destroy()
	}
}

// Pool runs max or average pooling on plain NCHW arrays through oneDNN.
// For max pooling it keeps the positions of the maxima of the latest Forward,
// which Backward uses: call Backward after the Forward it belongs to, with no
// other Forward in between. Not safe for concurrent use.
type Pool struct {
	p         PoolParams
	nthr      int32
	fwd, back op
}

// NewPool builds the primitives for p under the current thread count. It
// returns a *ParamError for invalid p, ErrUnavailable without oneDNN and an
// *Error when oneDNN fails.
func NewPool(p PoolParams) (*Pool, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := initEngine(); err != nil {
		return nil, err
	}
	q := &Pool{p: p}
	if err := q.build(); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *Pool) build() error {
	p := q.p
	oh, ow := p.OutHW()
	dims := [12]C.int64_t{C.int64_t(p.N), C.int64_t(p.C), C.int64_t(p.H), C.int64_t(p.W), C.int64_t(p.R), C.int64_t(p.S),
		C.int64_t(p.StrideH), C.int64_t(p.StrideW), C.int64_t(p.PadH), C.int64_t(p.PadW), C.int64_t(oh), C.int64_t(ow)}
	nthr := threads.Load()
	var f, b *C.stl_op
	if st := C.stl_pool_create(&f, &b, &dims[0], C.int(p.Algorithm), C.int(nthr)); st != 0 {
		return statusError("NewPool", st)
	}
	q.fwd, q.back, q.nthr = op{f}, op{b}, nthr
	return nil
}

func (q *Pool) ready() error {
	if q == nil || q.fwd.o == nil {
		return ErrClosed
	}
	if threads.Load() == q.nthr {
		return nil
	}
	q.destroy()
	return q.build()
}

// destroy frees backward first: it reads forward's workspace.
func (q *Pool) destroy() {
	q.back.destroy()
	q.fwd.destroy()
}

// Forward pools src (N,C,H,W) into dst (N,C,OH,OW).
func (q *Pool) Forward(dst, src []float32) error {
	if q == nil {
		return ErrClosed
	}
	if err := q.p.checkForward(dst, src); err != nil {
		return err
	}
	if err := q.ready(); err != nil {
		return err
	}
	return q.fwd.exec("Pool.Forward", src, dst)
}

// Backward overwrites dsrc with the input gradient of the latest Forward for
// the output gradient ddst.
func (q *Pool) Backward(dsrc, ddst []float32) error {
	if q == nil {
		return ErrClosed
	}
	if err := q.p.checkBackward(dsrc, ddst); err != nil {
		return err
	}
	if q.fwd.o == nil {
		return ErrClosed
	}
	if threads.Load() != q.nthr {
		// A rebuild would lose the maxima of the latest Forward.
		return &Error{Op: "Pool.Backward", Msg: "thread count changed since Forward"}
	}
	return q.back.exec("Pool.Backward", ddst, dsrc)
}

// Impl returns oneDNN's names for the forward and backward implementations.
func (q *Pool) Impl() (fwd, bwd string) {
	if q == nil {
		return "", ""
	}
	return q.fwd.impl(), q.back.impl()
}

// Close releases the C memory; later calls return ErrClosed.
func (q *Pool) Close() {
	if q != nil {
		q.destroy()
	}
}
