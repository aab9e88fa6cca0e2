// Package dnnl runs the 2-D convolutions of package nn through oneDNN
// (Intel's Deep Neural Network Library, Debian's libdnnl 2.6, the library
// PyTorch itself uses for CPU convolutions), forward and both backward passes.
//
// A convolution layer of the classifiers and the denoising auto-encoder
// (paper, sections 3.4-3.5) computes, for an input x of shape (N, C, H, W),
// weights w of shape (K, C, R, S) and a bias b of shape (K),
//
//	y[n,k,i,j] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n, c, i*SH + r - PH, j*SW + s - PW]
//
// with x taken as zero outside the image (zero padding). Training needs the two
// adjoint maps as well: BackwardData returns dL/dx from dL/dy (also the input
// gradient the attacks of section 5 use), BackwardWeights returns dL/dw and
// dL/db.
//
// All arrays are plain row-major float32 slices owned by Go: NCHW for images,
// KCRS for weights. oneDNN is free to compute in its own blocked layouts
// (format tag "any"); a Conv keeps the reorders to and from those layouts, the
// internal buffers, the primitives and a scratchpad, all built once per shape
// by NewConv and reused by every call, so that calls do not allocate.
//
// Threads. Debian builds oneDNN with the OpenMP runtime (libgomp; see
// `ldd /usr/lib/x86_64-linux-gnu/libdnnl.so`). SetThreads sets the number of
// threads every later call uses; the default is OpenMP's (OMP_NUM_THREADS,
// else the number of CPUs). oneDNN fixes its work split when a primitive is
// built, so a Conv built under another thread count rebuilds its primitives
// on its next call. For a given thread count results are deterministic.
//
// The package needs cgo. Under the purego build tag (or without cgo)
// Available reports false and NewConv returns ErrUnavailable; package nn
// then uses its own im2col or pure-Go kernels.
package dnnl
