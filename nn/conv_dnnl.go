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
	relu *dnnl.Conv // the same convolution with a fused ReLU, built on first use
}

// ForwardReLU implements reluForwarder with oneDNN's eltwise post-op
// (dnnl.ConvOptions.ForwardReLU): the ReLU costs no pass of its own.
func (k *dnnlConv) ForwardReLU(dst, src, weight, bias []float32) error {
	if k.relu == nil {
		o := k.Conv.Options()
		o.ForwardReLU = true
		c, err := dnnl.NewConvWith(k.Conv.Params(), o)
		if err != nil {
			return err
		}
		k.relu = c
		runtime.AddCleanup(k, func(c *dnnl.Conv) { c.Close() }, c)
	}
	return k.relu.Forward(dst, src, weight, bias)
}

// Close releases both convolutions.
func (k *dnnlConv) Close() {
	k.Conv.Close()
	k.relu.Close()
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
