// Package dnnl runs the convolutions, batch normalizations and poolings of
// package nn through oneDNN (Intel's Deep Neural Network Library; Debian's
// libdnnl 2.6, the library PyTorch itself uses on the CPU), forward and
// backward.
//
// # Convolution
//
// A convolution layer of the classifiers and the denoising auto-encoder
// (paper, sections 3.4-3.5) computes, for an input x of shape (N, C, H, W),
// weights w of shape (K, C, R, S) and a bias b of shape (K),
//
//	y[n,k,i,j] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n, c, i*SH + r - PH, j*SW + s - PW]
//
// with x taken as zero outside the image (zero padding). Training needs the
// two adjoint maps as well: Conv.BackwardData returns dL/dx from dL/dy (also
// the input gradient the attacks of section 5 use), Conv.BackwardWeights
// returns dL/dw and dL/db, and Conv.Backward does both with one reorder of
// dL/dy.
//
// All arrays are plain row-major float32 slices owned by Go: NCHW for images,
// KCRS for weights. oneDNN is free to compute in its own blocked layouts
// (format tag "any"); a Conv keeps the reorders to and from those layouts,
// the internal buffers, the primitives and a scratchpad, all built once per
// shape by NewConv and reused by every call, so that calls do not allocate.
// Go memory is handed to oneDNN only for the duration of a call. Convs that
// run one after another can share their internal buffers through a
// Workspace (ConvOptions.Workspace). ConvOptions.Algorithm selects direct
// convolution (the default), Winograd, or oneDNN's GEMM path on plain
// layouts.
//
// For inference, a chain of convolutions can skip those reorders: with
// ConvOptions.SrcLayout and DstLayout set to ActivationLayout() (nChw8c
// with AVX2, nChw16c with AVX-512, probed once) the forward pass reads and
// writes the caller's arrays in oneDNN's own blocked layout, so one
// convolution's output is the next one's input as it stands; Layout says
// where each element lives and converts to and from NCHW. Such a Conv has
// no backward passes. ConvOptions.ForwardSum adds the output array's
// previous contents before the ReLU (oneDNN's sum post-op), which computes
// a residual block's y = max(0, conv(x) + b + shortcut) in the
// convolution's own pass.
//
// # Batch normalization and pooling
//
// BatchNorm (Ioffe and Szegedy, 2015) and Pool (max or average) work on
// plain NCHW arrays directly, with no reorders. Package nn does not use
// them: measured at batch 128 on one thread (CPU time, vgg-small and
// resnet-20 shapes), oneDNN 2.6's NCHW batch norm is no faster than nn's
// Go loops with their fused ReLU (128x32x32x32, training mode: forward 7.3
// ms without the ReLU against 6 with it, backward 9.7 against about 8), its
// own fused ReLU is 2-3x slower still, and its max pooling is slower
// forward than nn's 2x2 kernel (2.7 against 1.8 ms) and faster backward by
// about 1.5 ms a layer (2.4 against 4). Its
// fast batch norm works on blocked layouts, which would need reorders that
// cost as much as the normalization. What package nn takes from oneDNN
// beyond the convolution is the ReLU post-op (ConvOptions.ForwardReLU),
// with the inference batch norm folded into the convolution's weights.
//
// # Threads
//
// Debian builds oneDNN with the OpenMP runtime (DNNL_CPU_RUNTIME_OMP in
// dnnl_config.h; `ldd /usr/lib/x86_64-linux-gnu/libdnnl.so` shows libgomp).
// SetThreads sets the number of threads every later call uses; the default
// is OpenMP's (OMP_NUM_THREADS, else the number of CPUs). Three consequences
// of OpenMP under Go's scheduler:
//   - OpenMP's thread count belongs to the calling OS thread, and cgo calls
//     run on whichever thread the Go scheduler picks, so every call sets it
//     again (omp_set_num_threads, a few nanoseconds).
//   - oneDNN fixes its work split when a primitive is built, so an object
//     built under another thread count rebuilds its primitives on its next
//     call (about as costly as its constructor). Results are deterministic
//     for a given thread count, not across thread counts (reductions are
//     split differently).
//   - libgomp keeps a pool of worker threads per OS thread that starts
//     parallel work. Calls from many goroutines therefore create several
//     pools of sleeping threads; a training loop that calls from one
//     goroutine locked to its thread (runtime.LockOSThread) uses one. After
//     each call the workers spin briefly before sleeping; if Go code runs in
//     parallel between calls, OMP_WAIT_POLICY=passive in the environment at
//     start-up stops them from competing for the cores. libgomp reads the
//     variable when it is loaded, before any Go code runs, so the package
//     cannot set it. Measured with stl bench nn on two threads (resnet-20,
//     three alternating rounds on a shared machine), images per process
//     CPU-second were within noise for the default, passive and active
//     policies (train 372, 377, 367; inference 1252, 1291, 1207); libgomp
//     also cuts its spinning to ~100 iterations once it manages more
//     threads than there are CPUs, which several pools reach. The default
//     is therefore left alone.
//
// No object of this package is safe for concurrent use; use one per
// goroutine.
//
// The package needs cgo. Under the purego build tag (or without cgo)
// Available reports false and the constructors return ErrUnavailable;
// package nn then uses its own im2col or pure-Go kernels.
package dnnl
