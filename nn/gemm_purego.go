//go:build purego

package nn

var defaultGemm Gemm = GonumGemm{}
