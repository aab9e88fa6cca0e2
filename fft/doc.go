// Package fft computes two-dimensional real-to-complex discrete Fourier
// transforms in single precision, the workhorse of the Fourier-domain ADMM
// solvers for convolutional sparse coding (Wohlberg 2014/2016, paper
// section 3.3: "we transform to the Fourier domain and use ADMM").
//
// A Plan transforms h×w real arrays (row-major) to the non-redundant half
// spectrum of h×(w/2+1) complex values (row-major), and back.
//
// Normalization: Forward is unnormalized,
//
//	X[k,l] = sum_{y,x} s[y,x] exp(-2πi (k y/h + l x/w)),
//
// and Inverse divides by h*w, so Inverse(Forward(s)) == s up to rounding.
//
// Plans follow one convention: methods take the destination first and
// return it, allocating it only when it is nil; each states its
// normalization; inputs are left unchanged except where a method documents
// its input as scratch (BatchPlan2D.InverseUnnormalized, whose FFTW
// implementation destroys it to save a copy). A plan owns scratch memory
// and is not safe for concurrent use: make one per goroutine.
//
// RealPlan2D and BatchPlan2D work in single precision; Plan64 is the
// double-precision plan (pure Go, gonum's dsp/fourier) for callers that
// compute in float64.
//
// Two implementations satisfy the RealPlan2D interface and one conformance
// test suite: FFTW 3 in single precision through cgo (the default build;
// planning is serialized by a mutex because the FFTW planner is not
// thread-safe, plans are built once per size and cached, and execution uses
// FFTW's thread-safe new-array execute functions; plans are chosen by
// FFTW_ESTIMATE so that results are reproducible), and a pure-Go one
// (always compiled; the only one under the purego build tag): a radix-2 FFT
// for power-of-two sizes and gonum's dsp/fourier for the others. New returns
// the fastest one available.
package fft
