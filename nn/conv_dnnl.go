//go:build cgo && !purego

package nn

import (
	"fmt"
	"runtime"

	"github.com/stl-defense/stl/nn/dnnl"
)

// The oneDNN backend is the default convolution in the cgo build when a
// oneDNN CPU engine can be created; im2col + OpenBLAS stays selectable
// (ConvBackendEnv=im2col or ClassifierConfig.ConvBackend).
//
// "dnnl" lets oneDNN use Winograd for the 3x3 stride-1 layers with at
// least 32 input and output channels (dnnl.Winograd), direct convolution
// elsewhere: measured at batch 128 on one thread (images per CPU-second,
// stl bench nn) vgg-small trains 15% faster and infers 25% faster than
// with direct convolution everywhere; resnet-20, mostly 16-channel layers,
// about the same. Winograd's rounding is ~1e-6 of the outputs' magnitude
// (nn/dnnl's conformance tests), and its scratchpads add about 25 MB of
// peak memory. "dnnl-direct" keeps direct convolution everywhere.
func init() {
	RegisterConvBackend("dnnl", func(p ConvParams, threads int, group *KernelGroup) (ConvKernel, error) {
		return newDNNLConv(p, threads, group, dnnl.Winograd)
	}, true)
	RegisterConvBackend("dnnl-direct", func(p ConvParams, threads int, group *KernelGroup) (ConvKernel, error) {
		return newDNNLConv(p, threads, group, dnnl.Direct)
	}, false)
}

// dnnlConv adapts *dnnl.Conv (whose methods already match ConvKernel and
// backwardBoth). Its C memory is released by Close or, for networks that
// are dropped without closing, by a cleanup when the wrapper is collected.
type dnnlConv struct {
	*dnnl.Conv
	// variants are the same convolution with other forward passes (a fused
	// ReLU, the sum, blocked layouts), each built on first use.
	variants map[fwdVariant]*dnnl.Conv
}

// ForwardReLU implements reluForwarder with oneDNN's eltwise post-op
// (dnnl.ConvOptions.ForwardReLU): the ReLU costs no pass of its own.
func (k *dnnlConv) ForwardReLU(dst, src, weight, bias []float32) error {
	return k.forwardVariant(dst, src, weight, bias, fwdVariant{relu: true})
}

// activationBlock implements layoutKernel: oneDNN's blocked layout on this
// CPU (dnnl.ActivationLayout).
func (k *dnnlConv) activationBlock() int { return dnnl.ActivationLayout().Block() }

// forwardVariant implements layoutKernel.
func (k *dnnlConv) forwardVariant(dst, src, weight, bias []float32, v fwdVariant) error {
	if v == (fwdVariant{}) {
		return k.Conv.Forward(dst, src, weight, bias)
	}
	c := k.variants[v]
	if c == nil {
		o := k.Conv.Options()
		o.ForwardReLU, o.ForwardSum = v.relu, v.sum
		if v.srcBlocked {
			o.SrcLayout = dnnl.ActivationLayout()
		}
		if v.dstBlocked {
			o.DstLayout = dnnl.ActivationLayout()
		}
		var err error
		if c, err = dnnl.NewConvWith(k.Conv.Params(), o); err != nil {
			return err
		}
		if k.variants == nil {
			k.variants = map[fwdVariant]*dnnl.Conv{}
		}
		k.variants[v] = c
		runtime.AddCleanup(k, func(c *dnnl.Conv) { c.Close() }, c)
	}
	return c.Forward(dst, src, weight, bias)
}

// Close releases the convolution and its variants.
func (k *dnnlConv) Close() {
	k.Conv.Close()
	for _, c := range k.variants {
		c.Close()
	}
}

// dnnlWorkspace is the KernelGroup key of a network's shared oneDNN
// Workspace: the layers run one after another, so their internal buffers
// can be one set sized for the largest layer.
const dnnlWorkspace = "dnnl.workspace"

func newDNNLConv(p ConvParams, threads int, group *KernelGroup, alg dnnl.Algorithm) (ConvKernel, error) {
	if !dnnl.Available() {
		return nil, fmt.Errorf("nn: oneDNN unavailable")
	}
	if threads < 1 {
		threads = 1
	}
	// oneDNN's OpenMP thread count is process-wide; every layer of a model
	// asks for the same count, so primitives are built once.
	if dnnl.Threads() != threads {
		dnnl.SetThreads(threads)
	}
	o := dnnl.DefaultConvOptions()
	o.Algorithm = alg
	if group != nil {
		v, err := group.Value(dnnlWorkspace, func() (any, error) {
			w, err := dnnl.NewWorkspace()
			if err != nil {
				return nil, err
			}
			// Freed once the group is unreachable and every Conv built
			// with it is closed.
			runtime.AddCleanup(group, func(w *dnnl.Workspace) { w.Close() }, w)
			return w, nil
		})
		if err != nil {
			return nil, err
		}
		o.Workspace = v.(*dnnl.Workspace)
	}
	c, err := dnnl.NewConvWith(dnnl.ConvParams(p), o)
	if err != nil {
		return nil, err
	}
	k := &dnnlConv{Conv: c}
	runtime.AddCleanup(k, func(c *dnnl.Conv) { c.Close() }, c)
	return k, nil
}
