//go:build !cgo || purego

package buildinfo

func kernels() []Kernel {
	return []Kernel{
		{Role: "fft", Name: "pure Go", Detail: "gonum dsp/fourier"},
		{Role: "blas", Name: "pure Go", Detail: "gonum blas/gonum"},
		{Role: "dnn", Name: "pure Go", Detail: "project convolutions"},
	}
}
