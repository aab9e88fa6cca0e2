// Package gemmref is the im2col + cblas_sgemm (OpenBLAS) convolution that
// package dnnl's benchmarks compare oneDNN against: per image, the input
// patches are unrolled into a (C*R*S) x (OH*OW) matrix and multiplied by the
// (K) x (C*R*S) weight matrix. It is the textbook GEMM lowering (Chellapilla
// et al. 2006) and the slow path PyTorch falls back to without oneDNN.
//
// It needs cgo and OpenBLAS; under the purego tag the package is empty.
// Arrays are plain row-major NCHW / KCRS float32, as in package dnnl.
package gemmref
