// Package nn is the project's small neural-network library: the layers,
// losses, optimizers and learning-rate schedules needed to train the
// classifiers that the attacks target and the denoising auto-encoder (DAE)
// whose latent codes stratify the image space (Sun et al., CVPR 2019,
// sections 3.4 and 3.5).
//
// Everything works on flat []float32 slices with explicit (N, C, H, W)
// shapes held in *tensor.Tensor. A network is a tree of Layer values: each
// Forward caches what its Backward needs, so a network is used by one
// goroutine at a time (the Classifier and DAE types serialize their public
// methods with a mutex). Parallelism lives inside the layers: convolutions
// split the batch over Threads goroutines in fixed contiguous chunks and
// reduce partial weight gradients in worker order, so the same seed and
// thread count give bit-identical models.
//
// Convolutions run through a ConvKernel: im2col + SGEMM (OpenBLAS through
// cgo in the default build, gonum's pure-Go SGEMM under the purego tag), or
// any other implementation with the same contract (for example oneDNN).
//
// Architectures (arch.go): "vgg-small", "resnet-20" (He et al. CIFAR ResNet
// with option-A shortcuts) and the DAE. Input normalization (per-channel
// mean and std) lives inside the classifiers, so callers work on pixels in
// [0, 1]. Classifier satisfies attack.Model.
package nn
