//go:build cgo && !purego

package nn

import (
	"fmt"

	"github.com/stl-defense/stl/nn/dnnl"
)

// The oneDNN backend is the default convolution in the cgo build when a
// oneDNN CPU engine can be created; im2col + OpenBLAS stays selectable
// (ConvBackendEnv=im2col or ClassifierConfig.ConvBackend).
func init() {
	RegisterConvBackend("dnnl", newDNNLConv, true)
}

type dnnlConv struct{ *dnnl.Conv }

func newDNNLConv(p ConvParams, threads int) (ConvKernel, error) {
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
	c, err := dnnl.NewConv(dnnl.ConvParams(p))
	if err != nil {
		return nil, err
	}
	return dnnlConv{c}, nil
}
