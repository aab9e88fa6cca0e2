package nn

import (
	"fmt"
	"os"
	"sync"

	"github.com/stl-defense/stl/internal/option"
)

// ConvParams describes one 2-D convolution over an NCHW batch: N images of
// C channels and H x W pixels, K output channels, R x S filters, strides
// and zero padding. It mirrors nn/dnnl.ConvParams.
type ConvParams struct{ N, C, H, W, K, R, S, StrideH, StrideW, PadH, PadW int }

// OutHW returns the output height and width, floor((H + 2 PadH - R) /
// StrideH) + 1 and likewise for the width.
func (p ConvParams) OutHW() (oh, ow int) {
	return (p.H+2*p.PadH-p.R)/p.StrideH + 1, (p.W+2*p.PadW-p.S)/p.StrideW + 1
}

// Validate reports parameters that describe no convolution.
func (p ConvParams) Validate() error {
	if p.N < 1 || p.C < 1 || p.H < 1 || p.W < 1 || p.K < 1 || p.R < 1 || p.S < 1 ||
		p.StrideH < 1 || p.StrideW < 1 || p.PadH < 0 || p.PadW < 0 {
		return option.New("nn", "ConvParams", fmt.Sprintf("%+v", p), "want positive sizes and strides, paddings >= 0")
	}
	if oh, ow := p.OutHW(); oh < 1 || ow < 1 {
		return option.New("nn", "ConvParams", fmt.Sprintf("%+v", p), "the output is empty")
	}
	return nil
}

// ConvKernel computes one convolution shape (cross-correlation, as in every
// deep-learning library) forward and backward on raw NCHW slices:
//
//	dst[n,k,oh,ow] = bias[k] + sum_{c,r,s} weight[k,c,r,s] * src[n,c,oh*sh-ph+r,ow*sw-pw+s]
//
// with zero padding. Weight is (K, C, R, S), bias (K) or nil. Every method
// overwrites its destinations. A kernel owns scratch memory and is not safe
// for concurrent use.
type ConvKernel interface {
	Forward(dst, src, weight, bias []float32) error
	BackwardData(dsrc, ddst, weight []float32) error
	BackwardWeights(dweight, dbias, src, ddst []float32) error // dbias may be nil
	Close()
}

// ConvBackend builds kernels for one implementation. threads is the number
// of goroutines (or library threads) a kernel may use. group, when not nil,
// is shared by the kernels of one network, which never run concurrently: a
// backend may keep memory there that all of them use (oneDNN's Workspace).
type ConvBackend func(p ConvParams, threads int, group *KernelGroup) (ConvKernel, error)

// KernelGroup holds backend state shared by the convolution kernels of one
// network. It is safe for concurrent use.
type KernelGroup struct {
	mu   sync.Mutex
	vals map[string]any
}

// Value returns the value stored under key, creating it with create on
// first use.
func (g *KernelGroup) Value(key string, create func() (any, error)) (any, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.vals[key]; ok {
		return v, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	if g.vals == nil {
		g.vals = map[string]any{}
	}
	g.vals[key] = v
	return v, nil
}

var (
	backendsMu sync.Mutex
	backends   = map[string]ConvBackend{
		"im2col": func(p ConvParams, threads int, _ *KernelGroup) (ConvKernel, error) {
			return NewIm2colConv(p, DefaultGemm(), threads)
		},
		"im2col-gonum": func(p ConvParams, threads int, _ *KernelGroup) (ConvKernel, error) {
			return NewIm2colConv(p, GonumGemm{}, threads)
		},
	}
	// preferred lists backends tried in order when none is named.
	preferred = []string{"im2col"}
)

// RegisterConvBackend makes a convolution implementation selectable by
// name; first puts it at the head of the default order. It is meant for
// init functions.
func RegisterConvBackend(name string, b ConvBackend, first bool) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	backends[name] = b
	if first {
		preferred = append([]string{name}, preferred...)
	}
}

// ConvBackends returns the registered backend names, the default first.
func ConvBackends() []string {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	out := append([]string(nil), preferred...)
	for n := range backends {
		found := false
		for _, p := range out {
			found = found || p == n
		}
		if !found {
			out = append(out, n)
		}
	}
	return out
}

// ConvBackendEnv is the environment variable that overrides the default
// convolution backend ("im2col", "im2col-gonum", and "dnnl" and
// "dnnl-direct" when available).
const ConvBackendEnv = "STL_CONV"

// newConvKernel builds a kernel with the named backend, or with the
// environment's or the default one when name is empty, falling back to
// im2col when a preferred backend cannot build this shape.
func newConvKernel(name string, p ConvParams, threads int, group *KernelGroup) (ConvKernel, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if name == "" {
		name = os.Getenv(ConvBackendEnv)
	}
	backendsMu.Lock()
	var order []string
	if name != "" {
		if _, ok := backends[name]; !ok {
			backendsMu.Unlock()
			return nil, fmt.Errorf("nn: unknown convolution backend %q", name)
		}
		order = []string{name}
	} else {
		order = append(order, preferred...)
	}
	bs := make([]ConvBackend, len(order))
	for i, n := range order {
		bs[i] = backends[n]
	}
	backendsMu.Unlock()
	var lastErr error
	for _, b := range bs {
		k, err := b(p, threads, group)
		if err == nil {
			return k, nil
		}
		lastErr = err
	}
	if name == "" {
		return NewIm2colConv(p, DefaultGemm(), threads)
	}
	return nil, lastErr
}
