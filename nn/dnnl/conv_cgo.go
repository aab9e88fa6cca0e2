//go:build cgo && !purego

package dnnl

/*
#cgo LDFLAGS: -ldnnl -lgomp
#include "dnnl.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

var (
	engineOnce sync.Once
	engineErr  error
	threads    atomic.Int32
)

func init() { threads.Store(int32(C.stl_max_threads())) }

func initEngine() error {
	engineOnce.Do(func() {
		if st := C.stl_engine_init(); st != 0 {
			engineErr = statusError("engine create", st)
		}
	})
	return engineErr
}

func statusError(op string, st C.int) error {
	return &Error{Op: op, Status: int(st), Msg: C.GoString(C.stl_status_str(st))}
}

// Available reports whether oneDNN can be used: the package was built with
// cgo and without the purego tag, and a CPU engine could be created.
func Available() bool { return initEngine() == nil }

// SetThreads sets the number of OpenMP threads that later calls of every
// Conv, BatchNorm and Pool use (n < 1 means 1). An object built under another
// count rebuilds its primitives on its next call, which costs about as much
// as its constructor (a Pool's Backward cannot: it returns an *Error if the
// count changed since its Forward). It is safe for concurrent use but meant
// to be called once, at start-up.
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	threads.Store(int32(n))
}

// Threads returns the thread count set by SetThreads, or OpenMP's default
// (OMP_NUM_THREADS, else the number of CPUs) before any call.
func Threads() int { return int(threads.Load()) }

// Workspace is memory that Convs built with it (ConvOptions.Workspace) share
// for their internal buffers. Convs sharing a Workspace must not run
// concurrently: use one Workspace per goroutine. Its memory is C memory,
// freed when the Workspace and every Conv built with it are closed.
type Workspace struct{ w *C.stl_ws }

// NewWorkspace returns an empty Workspace; it grows as Convs are built with
// it. It returns ErrUnavailable in builds without oneDNN.
func NewWorkspace() (*Workspace, error) {
	if err := initEngine(); err != nil {
		return nil, err
	}
	w := C.stl_ws_new()
	if w == nil {
		return nil, &Error{Op: "NewWorkspace", Msg: "out of memory", Status: 1}
	}
	return &Workspace{w: w}, nil
}

// Bytes returns the size of the Workspace's buffers.
func (w *Workspace) Bytes() int {
	if w == nil || w.w == nil {
		return 0
	}
	return int(C.stl_ws_bytes(w.w))
}

// Close drops the caller's reference; the memory is freed once the Convs
// built with w are closed too. Building a Conv with a closed Workspace
// returns ErrClosed. Close is safe to call more than once.
func (w *Workspace) Close() {
	if w != nil && w.w != nil {
		C.stl_ws_release(w.w)
		w.w = nil
	}
}

// Conv is a convolution of one shape with its oneDNN primitives, reorders
// and buffers. Build it with NewConv and release it with Close; its C memory
// is not managed by the Go garbage collector.
//
// A Conv is not safe for concurrent use: its internal buffers are shared by
// its three passes (and, with ConvOptions.Workspace, by other Convs). Use one
// Conv per goroutine (or per layer and worker).
type Conv struct {
	p    ConvParams
	o    ConvOptions
	nthr int32
	c    *C.stl_conv
}

// NewConv builds the oneDNN primitives for convolutions of shape p under the
// current thread count (see SetThreads). It returns a *ParamError when p is
// invalid, ErrUnavailable without oneDNN, and an *Error when oneDNN fails (for
// example out of memory). The backward primitives are built on first use.
func NewConv(p ConvParams) (*Conv, error) { return NewConvWith(p, DefaultConvOptions()) }

// NewConvWith is NewConv with options; it also returns an *OptionError when
// o is invalid.
func NewConvWith(p ConvParams, o ConvOptions) (*Conv, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := initEngine(); err != nil {
		return nil, err
	}
	c := &Conv{p: p, o: o}
	if err := c.build(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Conv) build() error {
	p := c.p
	oh, ow := p.OutHW()
	params := [C.STL_NPARAM]C.int64_t{
		C.STL_N: C.int64_t(p.N), C.STL_C: C.int64_t(p.C), C.STL_H: C.int64_t(p.H), C.STL_W: C.int64_t(p.W),
		C.STL_K: C.int64_t(p.K), C.STL_R: C.int64_t(p.R), C.STL_S: C.int64_t(p.S),
		C.STL_SH: C.int64_t(p.StrideH), C.STL_SW: C.int64_t(p.StrideW),
		C.STL_PH: C.int64_t(p.PadH), C.STL_PW: C.int64_t(p.PadW),
		C.STL_OH: C.int64_t(oh), C.STL_OW: C.int64_t(ow),
	}
	nthr := threads.Load()
	var cc *C.stl_conv
	algs := passAlgorithms(p, c.o.Algorithm)
	var ws *C.stl_ws
	if c.o.Workspace != nil {
		if ws = c.o.Workspace.w; ws == nil {
			return ErrClosed
		}
	}
	fwd := C.stl_conv_fwd{relu: cbool(c.o.ForwardReLU), sum: cbool(c.o.ForwardSum),
		src_block: C.int(c.o.SrcLayout.Block()), dst_block: C.int(c.o.DstLayout.Block())}
	if st := C.stl_conv_create(&cc, &params[0], C.int(nthr), &algs[0], ws, &fwd); st != 0 {
		return statusError("NewConv", st)
	}
	c.c, c.nthr = cc, nthr
	return nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// ActivationLayout returns the layout in which oneDNN's forward
// convolution keeps activations on this CPU (Blocked(8) with AVX2,
// Blocked(16) with AVX-512), for ConvOptions.SrcLayout and DstLayout; NCHW
// when it keeps them in no nChw{4,8,16}c layout or oneDNN is unavailable.
// It is probed once and safe for concurrent use.
func ActivationLayout() Layout {
	layoutOnce.Do(func() {
		if initEngine() != nil {
			return
		}
		if b := int(C.stl_conv_block()); b > 0 {
			activationLayout = Blocked(b)
		}
	})
	return activationLayout
}

var (
	layoutOnce       sync.Once
	activationLayout Layout
)

// passAlgorithms maps an Algorithm to the oneDNN algorithm of each pass
// (forward, backward data, backward weights).
//
// One exception: backward data into an input of at most smallC channels (the
// first layer's, 3 for RGB) runs on plain layouts, because oneDNN's direct
// kernel pads the channels to its block of 16 and, measured at batch 128 on
// 32x32 images, takes 6.6 ms for C=3, K=32 against 3.5 ms on the GEMM path.
func passAlgorithms(p ConvParams, a Algorithm) [3]C.int {
	var algs [3]C.int
	switch a {
	case Winograd:
		algs = [3]C.int{C.STL_ALG_AUTO, C.STL_ALG_AUTO, C.STL_ALG_DIRECT}
		if p.C < winogradMinChannels || p.K < winogradMinChannels {
			// oneDNN 2.6 picks Winograd for the 3-channel first layer too,
			// padding the channels to 16: 4x slower than direct, with an
			// 84 MB scratchpad at batch 128.
			algs = [3]C.int{C.STL_ALG_DIRECT, C.STL_ALG_DIRECT, C.STL_ALG_DIRECT}
		}
	case Plain:
		algs = [3]C.int{C.STL_ALG_GEMM, C.STL_ALG_GEMM, C.STL_ALG_GEMM}
	default:
		algs = [3]C.int{C.STL_ALG_DIRECT, C.STL_ALG_DIRECT, C.STL_ALG_DIRECT}
	}
	if p.C <= smallC {
		algs[C.STL_BWD_DATA] = C.STL_ALG_GEMM
	}
	return algs
}

// winogradMinChannels is the smallest C and K for which Algorithm Winograd
// lets oneDNN choose Winograd. Measured at batch 128, one thread, oneDNN 2.6
// on AVX-512 (CPU ms, forward / backward data, direct against Winograd):
// C=K=16 at 32 px 5.5 / 4.3 against 7.3 / 7.0 (Winograd slower, though
// oneDNN picks it); C=K=32 at 16 px 3.4 / 3.5 against 2.9 / 2.8; C=K=64 at
// 16 px 11.8 / 12.0 against 7.5 / 7.4; C=K=128 at 8 px 10.8 / 10.8 against
// 6.9 / 6.4.
const winogradMinChannels = 32

// smallC is the channel count up to which backward data uses plain layouts.
const smallC = 4

// ready rebuilds the primitives when the thread count changed since they were
// built.
func (c *Conv) ready() error {
	if c.c == nil {
		return ErrClosed
	}
	if threads.Load() == c.nthr {
		return nil
	}
	C.stl_conv_destroy(c.c)
	c.c = nil
	return c.build()
}

// Options returns the options c was built with.
func (c *Conv) Options() ConvOptions {
	if c == nil {
		return ConvOptions{}
	}
	return c.o
}

// Params returns the shape c was built for.
func (c *Conv) Params() ConvParams {
	if c == nil {
		return ConvParams{}
	}
	return c.p
}

// Forward computes dst = conv(src, weight) + bias: src (N,C,H,W), weight
// (K,C,R,S), bias (K) or nil for none, dst (N,K,OH,OW), row-major or, for
// src and dst, in ConvOptions.SrcLayout and DstLayout. With
// ConvOptions.ForwardSum dst's previous contents are added; with
// ForwardReLU dst gets max(0, .) of the result. dst is overwritten and
// must not overlap the inputs. It returns a *LengthError, before touching
// any array, when a length is wrong.
func (c *Conv) Forward(dst, src, weight, bias []float32) error {
	if c == nil {
		return ErrClosed
	}
	if err := c.p.checkForward(c.o, dst, src, weight, bias); err != nil {
		return err
	}
	if err := c.ready(); err != nil {
		return err
	}
	var b *C.float
	if bias != nil {
		b = (*C.float)(unsafe.Pointer(&bias[0]))
	}
	if st := C.stl_conv_forward(c.c, fp(dst), fp(src), fp(weight), b); st != 0 {
		return statusError("Forward", st)
	}
	return nil
}

// BackwardData computes dsrc, the gradient with respect to the input, from
// ddst, the gradient with respect to the output (N,K,OH,OW), and weight
// (K,C,R,S): the adjoint of Forward without its bias. dsrc (N,C,H,W) is
// overwritten (not accumulated); input pixels no window reaches get 0.
func (c *Conv) BackwardData(dsrc, ddst, weight []float32) error {
	if c == nil {
		return ErrClosed
	}
	if c.o.forwardOnly() {
		return ErrForwardOnly
	}
	if err := c.p.checkBackwardData(dsrc, ddst, weight); err != nil {
		return err
	}
	if err := c.ready(); err != nil {
		return err
	}
	if st := C.stl_conv_backward_data(c.c, fp(dsrc), fp(ddst), fp(weight)); st != 0 {
		return statusError("BackwardData", st)
	}
	return nil
}

// BackwardWeights computes the weight gradient dweight (K,C,R,S) and, unless
// dbias is nil, the bias gradient dbias (K) = sum of ddst over N, OH and OW,
// from the forward input src and the output gradient ddst. Both are
// overwritten, not accumulated; callers that accumulate over batches add the
// result themselves.
func (c *Conv) BackwardWeights(dweight, dbias, src, ddst []float32) error {
	if c == nil {
		return ErrClosed
	}
	if c.o.forwardOnly() {
		return ErrForwardOnly
	}
	if err := c.p.checkBackwardWeights(dweight, dbias, src, ddst); err != nil {
		return err
	}
	if err := c.ready(); err != nil {
		return err
	}
	var db *C.float
	if dbias != nil {
		db = (*C.float)(unsafe.Pointer(&dbias[0]))
	}
	if st := C.stl_conv_backward_weights(c.c, fp(dweight), db, fp(src), fp(ddst)); st != 0 {
		return statusError("BackwardWeights", st)
	}
	return nil
}

// Backward does BackwardWeights and BackwardData in one call, reordering
// ddst into oneDNN's layout once instead of twice when both passes use the
// same layout (saving about 5% of the backward time on 32-channel 32x32
// layers). dsrc, or dweight with dbias, may be nil to skip that pass; src is
// read only for dweight, weight only for dsrc. Results equal those of the
// separate calls bit for bit.
func (c *Conv) Backward(dsrc, dweight, dbias, src, ddst, weight []float32) error {
	if c == nil {
		return ErrClosed
	}
	if c.o.forwardOnly() {
		return ErrForwardOnly
	}
	if err := c.p.checkBackward(dsrc, dweight, dbias, src, ddst, weight); err != nil {
		return err
	}
	if dsrc == nil && dweight == nil {
		return nil
	}
	if err := c.ready(); err != nil {
		return err
	}
	var dx, dw, db, x, w *C.float
	if dsrc != nil {
		dx, w = fp(dsrc), fp(weight)
	}
	if dweight != nil {
		dw, x = fp(dweight), fp(src)
		if dbias != nil {
			db = fp(dbias)
		}
	}
	if st := C.stl_conv_backward(c.c, dx, dw, db, x, fp(ddst), w); st != 0 {
		return statusError("Backward", st)
	}
	return nil
}

// sharesDiffDst reports whether Backward reorders ddst once for both passes.
func (c *Conv) sharesDiffDst() bool {
	return c != nil && c.c != nil && C.stl_conv_shares_ddst(c.c) != 0
}

// Impl returns the names oneDNN gives the implementations it chose for the
// forward, backward-data and backward-weights passes (e.g. "jit:avx512_core"),
// for benchmarks and diagnostics.
func (c *Conv) Impl() (fwd, bwdData, bwdWeights string) {
	if c == nil || c.c == nil {
		return "", "", ""
	}
	return C.GoString(C.stl_conv_impl(c.c, C.STL_FWD)),
		C.GoString(C.stl_conv_impl(c.c, C.STL_BWD_DATA)),
		C.GoString(C.stl_conv_impl(c.c, C.STL_BWD_WEIGHTS))
}

// Close releases the C memory of c. It is safe to call more than once; other
// methods return ErrClosed afterwards.
func (c *Conv) Close() {
	if c != nil && c.c != nil {
		C.stl_conv_destroy(c.c)
		c.c = nil
	}
}

// workspaceBytes returns the size of the buffers of c's workspace.
func (c *Conv) workspaceBytes() int {
	if c == nil || c.c == nil {
		return 0
	}
	return int(C.stl_conv_ws_bytes(c.c))
}

// stageTimes returns the cumulative time, per pass (forward, backward data,
// backward weights), spent in the reorders of the inputs, in the primitive
// and in the reorder of the output, since c was built. For benchmarks.
func (c *Conv) stageTimes() (t [3][3]time.Duration) {
	if c == nil || c.c == nil {
		return t
	}
	var ns [3][3]C.int64_t
	C.stl_conv_times(c.c, &ns[0][0])
	for i := range ns {
		for j := range ns[i] {
			t[i][j] = time.Duration(ns[i][j])
		}
	}
	return t
}

func fp(s []float32) *C.float { return (*C.float)(unsafe.Pointer(&s[0])) }
