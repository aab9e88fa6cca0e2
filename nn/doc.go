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
// Convolutions run through a ConvKernel chosen per layer and batch shape:
// oneDNN (package nn/dnnl) by default in the cgo build, with Winograd for
// the 3x3 layers of at least 32 channels (STL_CONV=dnnl-direct for direct
// convolution everywhere); im2col + SGEMM with OpenBLAS (STL_CONV=im2col)
// as the portable cgo path; im2col + gonum's pure-Go SGEMM under the purego
// build tag (or STL_CONV=im2col-gonum). All of them pass one conformance
// test against a naive convolution. Batch norm, ReLU, pooling and the
// residual addition are Go loops shared by every backend (measured faster
// than oneDNN's on NCHW arrays; see nn/dnnl). In inference (Logits,
// InputGrad) each batch norm is folded into the convolution before it,
// with its ReLU applied by the kernel when the backend can (oneDNN's
// post-op), which saves a pass over the activations.
//
// Training runs SGD (Train, classifiers, train.go) or Adam (TrainDAE,
// train_dae.go) over epochs with a learning-rate schedule, augmentation
// (augment.go, with the crop-and-flip kernel shared with package dataset),
// per-epoch atomic checkpoints and exact resume (loop.go); models are saved
// as safetensors plus JSON metadata (save.go).
//
// Names shared with other packages: nn.TrainOptions configures the
// training of one classifier network (SGD, schedule, augmentation,
// checkpoints), while defense.TrainOptions configures building the whole
// STL defense (DAE, clustering, one dictionary per cluster), which trains
// its DAE with nn.DAETrainOptions. The name stays: it pairs with nn.Train
// as DAETrainOptions pairs with TrainDAE, and the package qualifier tells
// the two apart at every use. Every Validate method returns an
// *OptionError (the project's one option error type, internal/option).
//
// Architectures (arch.go): "vgg-small", "resnet-20" (He et al. CIFAR ResNet
// with option-A shortcuts) and the DAE. Input normalization (per-channel
// mean and std) lives inside the classifiers, so callers work on pixels in
// [0, 1]. Classifier satisfies attack.Model.
package nn
