package dnnl

import (
	"errors"
	"fmt"
	"math"

	"github.com/stl-defense/stl/internal/option"
)

// ErrUnavailable is returned by NewConv when the package was built without
// oneDNN (the purego build tag or CGO_ENABLED=0).
var ErrUnavailable = errors.New("dnnl: oneDNN not available in this build (purego or no cgo)")

// ErrClosed is returned by the methods of a Conv, BatchNorm or Pool after
// Close, and by NewConvWith given a closed Workspace.
var ErrClosed = errors.New("dnnl: use of closed Conv, BatchNorm, Pool or Workspace")

// ConvParams describes a 2-D convolution: a batch of N images of C channels
// and H x W pixels, K filters of C x R x S taps, strides StrideH, StrideW and
// zero padding PadH, PadW on each side (top and bottom, left and right).
type ConvParams struct {
	N, C, H, W       int // input batch, channels, height, width
	K, R, S          int // filters, filter height, filter width
	StrideH, StrideW int // >= 1
	PadH, PadW       int // >= 0
}

// OutHW returns the output height and width,
// OH = (H + 2*PadH - R)/StrideH + 1 and likewise OW (floor division; input
// rows or columns that no window reaches are ignored). It does not validate
// p; the results are meaningful only when p.Validate() returns nil.
func (p ConvParams) OutHW() (oh, ow int) {
	if p.StrideH <= 0 || p.StrideW <= 0 {
		return 0, 0
	}
	return floorDiv(p.H+2*p.PadH-p.R, p.StrideH) + 1, floorDiv(p.W+2*p.PadW-p.S, p.StrideW) + 1
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// ParamError reports an invalid ConvParams field.
type ParamError struct {
	Field  string // name of the ConvParams field, or "shape"
	Value  int
	Reason string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("dnnl: invalid ConvParams.%s = %d: %s", e.Field, e.Value, e.Reason)
}

// Validate returns a *ParamError when p does not describe a convolution:
// a non-positive size or stride, a negative padding, padding not smaller than
// the filter (a window entirely in the padding), an empty output, or arrays
// too large to index.
func (p ConvParams) Validate() error {
	pos := []struct {
		name string
		v    int
	}{{"N", p.N}, {"C", p.C}, {"H", p.H}, {"W", p.W}, {"K", p.K}, {"R", p.R}, {"S", p.S},
		{"StrideH", p.StrideH}, {"StrideW", p.StrideW}}
	for _, f := range pos {
		if f.v <= 0 {
			return &ParamError{Field: f.name, Value: f.v, Reason: "must be positive"}
		}
	}
	if p.PadH < 0 {
		return &ParamError{Field: "PadH", Value: p.PadH, Reason: "must not be negative"}
	}
	if p.PadW < 0 {
		return &ParamError{Field: "PadW", Value: p.PadW, Reason: "must not be negative"}
	}
	if p.PadH >= p.R {
		return &ParamError{Field: "PadH", Value: p.PadH, Reason: fmt.Sprintf("must be smaller than the filter height R=%d", p.R)}
	}
	if p.PadW >= p.S {
		return &ParamError{Field: "PadW", Value: p.PadW, Reason: fmt.Sprintf("must be smaller than the filter width S=%d", p.S)}
	}
	if p.H+2*p.PadH < p.R {
		return &ParamError{Field: "R", Value: p.R, Reason: fmt.Sprintf("filter taller than the padded input (H=%d, PadH=%d)", p.H, p.PadH)}
	}
	if p.W+2*p.PadW < p.S {
		return &ParamError{Field: "S", Value: p.S, Reason: fmt.Sprintf("filter wider than the padded input (W=%d, PadW=%d)", p.W, p.PadW)}
	}
	oh, ow := p.OutHW()
	for _, dims := range [][]int{{p.N, p.C, p.H, p.W}, {p.K, p.C, p.R, p.S}, {p.N, p.K, oh, ow}} {
		if _, ok := prod(dims...); !ok {
			return &ParamError{Field: "shape", Value: 0, Reason: fmt.Sprintf("%v has more than 2^31-1 elements", dims)}
		}
	}
	return nil
}

// prod multiplies dims, reporting false when the product exceeds
// math.MaxInt32 (the limit we accept so that every index fits any int).
func prod(dims ...int) (int, bool) {
	n := 1
	for _, d := range dims {
		if d != 0 && n > math.MaxInt32/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// Lengths of the arrays a convolution with valid parameters p reads or writes.
func (p ConvParams) srcLen() int    { n, _ := prod(p.N, p.C, p.H, p.W); return n }
func (p ConvParams) weightLen() int { n, _ := prod(p.K, p.C, p.R, p.S); return n }
func (p ConvParams) dstLen() int {
	oh, ow := p.OutHW()
	n, _ := prod(p.N, p.K, oh, ow)
	return n
}

// LengthError reports a slice whose length does not match the convolution's
// shape.
type LengthError struct {
	Op   string // "Forward", "BackwardData" or "BackwardWeights"
	Arg  string // the argument's name, e.g. "src"
	Want int
	Got  int
}

func (e *LengthError) Error() string {
	return fmt.Sprintf("dnnl: Conv.%s: len(%s) = %d, want %d", e.Op, e.Arg, e.Got, e.Want)
}

// Error reports a failed oneDNN call with its status (dnnl_status_t), for
// example "unimplemented" when no oneDNN kernel supports the shape.
type Error struct {
	Op     string // the oneDNN step that failed
	Status int    // dnnl_status_t
	Msg    string // oneDNN's name for Status
}

func (e *Error) Error() string {
	return fmt.Sprintf("dnnl: %s: %s (status %d)", e.Op, e.Msg, e.Status)
}

type arg struct {
	name     string
	n, want  int
	optional bool // nil (length 0) allowed
}

func checkLens(op string, args ...arg) error {
	for _, a := range args {
		if a.optional && a.n == 0 {
			continue
		}
		if a.n != a.want {
			return &LengthError{Op: op, Arg: a.name, Want: a.want, Got: a.n}
		}
	}
	return nil
}

// The check methods validate the slice lengths of each Conv method before
// any C call; both builds share them. checkForward takes the options for
// the layouts of src and dst.
func (p ConvParams) checkForward(o ConvOptions, dst, src, weight, bias []float32) error {
	oh, ow := p.OutHW()
	return checkLens("Forward",
		arg{"dst", len(dst), o.DstLayout.Len(p.N, p.K, oh, ow), false},
		arg{"src", len(src), o.SrcLayout.Len(p.N, p.C, p.H, p.W), false},
		arg{"weight", len(weight), p.weightLen(), false},
		arg{"bias", len(bias), p.K, bias == nil})
}

func (p ConvParams) checkBackwardData(dsrc, ddst, weight []float32) error {
	return checkLens("BackwardData",
		arg{"dsrc", len(dsrc), p.srcLen(), false},
		arg{"ddst", len(ddst), p.dstLen(), false},
		arg{"weight", len(weight), p.weightLen(), false})
}

func (p ConvParams) checkBackwardWeights(dweight, dbias, src, ddst []float32) error {
	return checkLens("BackwardWeights",
		arg{"dweight", len(dweight), p.weightLen(), false},
		arg{"dbias", len(dbias), p.K, dbias == nil},
		arg{"src", len(src), p.srcLen(), false},
		arg{"ddst", len(ddst), p.dstLen(), false})
}

// ErrBiasWithoutWeights is returned by Conv.Backward when dbias is given
// without dweight: oneDNN computes the bias gradient with the weight
// gradient.
var ErrBiasWithoutWeights = errors.New("dnnl: Conv.Backward: dbias requires dweight")

func (p ConvParams) checkBackward(dsrc, dweight, dbias, src, ddst, weight []float32) error {
	if dweight == nil && dbias != nil {
		return ErrBiasWithoutWeights
	}
	var buf [6]arg // no allocation per call
	args := append(buf[:0], arg{"ddst", len(ddst), p.dstLen(), false})
	if dsrc != nil {
		args = append(args, arg{"dsrc", len(dsrc), p.srcLen(), false}, arg{"weight", len(weight), p.weightLen(), false})
	}
	if dweight != nil {
		args = append(args, arg{"dweight", len(dweight), p.weightLen(), false},
			arg{"dbias", len(dbias), p.K, dbias == nil}, arg{"src", len(src), p.srcLen(), false})
	}
	return checkLens("Backward", args...)
}

// FLOPs returns the floating-point operations of one forward pass,
// 2*N*K*OH*OW*C*R*S (a multiply and an add per tap); each backward pass
// costs the same. Benchmarks divide it by time to report GFLOP/s.
func (p ConvParams) FLOPs() float64 {
	oh, ow := p.OutHW()
	return 2 * float64(p.N) * float64(p.K) * float64(oh) * float64(ow) * float64(p.C) * float64(p.R) * float64(p.S)
}

// Algorithm selects how oneDNN computes a convolution. All algorithms give
// the same results up to float32 rounding; they differ in speed and in how
// much rounding.
type Algorithm int

const (
	// Direct is direct convolution on the blocked layouts oneDNN prefers,
	// reached by reorders from and to plain NCHW. It is the default: the
	// most accurate and, measured on vgg-small layers, 2-4x faster than
	// im2col + OpenBLAS.
	Direct Algorithm = iota
	// Winograd lets oneDNN use Winograd's minimal filtering F(4x4, 3x3)
	// (Lavin and Gray, 2016) for the forward and backward-data passes of 3x3,
	// stride-1 convolutions with at least 32 input and output channels where
	// it judges it faster (oneDNN's algorithm "auto"; it does at batch 128,
	// not at batch 4); backward weights stays direct. It does about 4x fewer
	// multiplications at the price of about 10x the rounding error of Direct
	// (still ~1e-6 of the output's magnitude) and larger scratchpads.
	Winograd
	// Plain computes on plain NCHW / KCRS layouts with no reorders, which
	// selects oneDNN's im2col + GEMM implementation. For comparison.
	Plain
)

func (a Algorithm) String() string {
	switch a {
	case Direct:
		return "direct"
	case Winograd:
		return "winograd"
	case Plain:
		return "plain"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// ConvOptions holds the settings of a Conv beyond its shape.
type ConvOptions struct {
	// Algorithm is the convolution algorithm; default Direct.
	Algorithm Algorithm
	// Workspace, when not nil, holds the internal buffers (oneDNN-layout
	// copies of the arrays and the scratchpad) of every Conv built with it,
	// sized for the largest. A network whose layers run one after another
	// needs one instead of one per layer (for vgg-small at batch 128 about
	// a third of the memory). Default nil: each Conv has its own.
	Workspace *Workspace
	// ForwardReLU makes Forward return max(0, y) instead of y, applied by
	// oneDNN's kernel on its own layout before the reorder to NCHW (an
	// eltwise post-op), which saves a pass over the output. The backward
	// passes stay those of the convolution alone: a caller
	// differentiating through the ReLU masks ddst itself. Package nn uses
	// it for inference, with batch normalization folded into the weights.
	// Default false.
	ForwardReLU bool
	// ForwardSum makes Forward add dst's previous contents to its result,
	// before the ReLU: dst = max(0, y + dst) with ForwardReLU (oneDNN's sum
	// post-op; a residual connection in the same pass). Default false.
	ForwardSum bool
	// SrcLayout and DstLayout are the layouts of Forward's src and dst
	// arrays; default NCHW. With a blocked layout (ActivationLayout) the
	// forward pass reads or writes the caller's array directly instead of
	// through a reorder, so that convolutions in a chain hand activations
	// to each other with no conversion. A Conv with a blocked layout is
	// built for inference: it has no backward passes (they return
	// ErrForwardOnly).
	SrcLayout, DstLayout Layout
}

// forwardOnly reports whether a Conv built with o has no backward passes.
func (o ConvOptions) forwardOnly() bool { return o.SrcLayout != NCHW || o.DstLayout != NCHW }

// ErrForwardOnly is returned by the backward methods of a Conv built with a
// blocked SrcLayout or DstLayout.
var ErrForwardOnly = errors.New("dnnl: Conv with a blocked layout has no backward passes")

// Layout is the memory order of an activation array of N images, C
// channels and H x W pixels. NCHW is plain row-major order; Blocked(b) is
// oneDNN's nChw{b}c: channels in groups of b, each group stored as (N,
// C/b, H, W, b) with the b channels of a pixel adjacent, and C padded with
// zeros to a multiple of b. The element (n, c, h, w) is at
// ((n*ceil(C/b) + c/b)*H*W + h*W + w)*b + c%b.
type Layout int

// NCHW is the plain layout, the zero Layout.
const NCHW Layout = 0

// Blocked returns the layout nChw{b}c; b must be 4, 8 or 16 (ConvOptions.
// Validate rejects other blocks).
func Blocked(b int) Layout { return Layout(b) }

// Block returns the channel block of l, 0 for NCHW.
func (l Layout) Block() int { return int(l) }

func (l Layout) String() string {
	if l == NCHW {
		return "nchw"
	}
	return fmt.Sprintf("nChw%dc", int(l))
}

func (l Layout) valid() bool { return l == NCHW || l == 4 || l == 8 || l == 16 }

// Len returns the number of float32 an (n, c, h, w) array takes in layout
// l: n*c*h*w for NCHW, with c rounded up to a multiple of the block
// otherwise.
func (l Layout) Len(n, c, h, w int) int {
	if b := int(l); b > 0 {
		c = (c + b - 1) / b * b
	}
	return n * c * h * w
}

// FromNCHW copies the (n, c, h, w) array src in NCHW order to dst in
// layout l, with zeros in the padding channels. dst must hold l.Len(n, c,
// h, w) values; src n*c*h*w.
func (l Layout) FromNCHW(dst, src []float32, n, c, h, w int) {
	l.convert(dst, src, n, c, h, w, true)
}

// ToNCHW copies the (n, c, h, w) array src in layout l to dst in NCHW
// order. dst must hold n*c*h*w values; src l.Len(n, c, h, w).
func (l Layout) ToNCHW(dst, src []float32, n, c, h, w int) {
	l.convert(src, dst, n, c, h, w, false)
}

// convert copies between blk (layout l) and plain (NCHW): into blk when
// toBlk is set, out of it otherwise.
func (l Layout) convert(blk, plain []float32, n, c, h, w int, toBlk bool) {
	b, hw := int(l), h*w
	if b == 0 {
		if toBlk {
			copy(blk[:n*c*hw], plain)
		} else {
			copy(plain[:n*c*hw], blk)
		}
		return
	}
	cb := (c + b - 1) / b
	if toBlk {
		clear(blk[:n*cb*b*hw])
	}
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			pl := plain[(i*c+ch)*hw : (i*c+ch+1)*hw]
			bl := blk[(i*cb+ch/b)*hw*b+ch%b:]
			for p := range pl {
				if toBlk {
					bl[p*b] = pl[p]
				} else {
					pl[p] = bl[p*b]
				}
			}
		}
	}
}

// DefaultConvOptions returns the options NewConv uses: Algorithm Direct.
func DefaultConvOptions() ConvOptions { return ConvOptions{Algorithm: Direct} }

// OptionError reports an invalid ConvOptions field (Field "ConvOptions.
// Algorithm"); it is the project's one option error type, shared with
// packages nn and dataset.
type OptionError = option.Error

// Validate returns an *OptionError when o has an unknown Algorithm or
// Layout, or a blocked layout with Algorithm Plain.
func (o ConvOptions) Validate() error {
	if o.Algorithm < Direct || o.Algorithm > Plain {
		return option.New("dnnl", "ConvOptions.Algorithm", o.Algorithm, "want Direct, Winograd or Plain")
	}
	for _, f := range []struct {
		name string
		l    Layout
	}{{"SrcLayout", o.SrcLayout}, {"DstLayout", o.DstLayout}} {
		if !f.l.valid() {
			return option.New("dnnl", "ConvOptions."+f.name, int(f.l), "want NCHW or Blocked(4, 8 or 16)")
		}
		if f.l != NCHW && o.Algorithm == Plain {
			return option.New("dnnl", "ConvOptions."+f.name, f.l, "a blocked layout needs Algorithm Direct or Winograd")
		}
	}
	return nil
}
