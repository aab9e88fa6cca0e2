//go:build purego || !cgo

package nn

var defaultGemm Gemm = GonumGemm{}
