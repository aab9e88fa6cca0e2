// Package cluster holds the unsupervised tools that stratify the image space
// of the STL defense (Sun et al., CVPR 2019, section 3.4): principal
// component analysis of the denoising auto-encoder's latent codes (to 128
// dimensions by default), k-means++ clustering of the projected codes
// (Arthur & Vassilvitskii 2007; the paper's reference [13]) and the
// k-nearest-neighbour majority vote that assigns a new image's code to a
// cluster at inference time.
//
// Everything works on row-major (N, D) float32 tensors; internal arithmetic is
// float64. Every fit is deterministic: PCA has no randomness and fixes the
// sign of each component, k-means++ draws from a PCG source seeded by
// KMeansOptions.Seed, and the vote breaks ties by a documented rule.
package cluster
