// Package baseline holds the input-transformation defenses the paper
// compares STL with, each a defense.Transform on batches (N, C, H, W) of
// pixels in [0,1]:
//
//   - JPEG compression (Das et al. 2017);
//   - total variation minimization with random pixel dropout (TVM), image
//     quilting from a patch database of clean images, and the crop
//     ensemble (Guo et al. 2018), alone and chained;
//   - pixel deflection with wavelet denoising and its ensemble (Prakash et
//     al. 2018);
//   - feature squeezing: bit-depth reduction and median smoothing (Xu et
//     al. 2018);
//   - MagNet's reformer, a denoising auto-encoder trained on clean images
//     (Meng and Chen 2017), which also provides its exact vector-Jacobian
//     product for white-box attacks;
//   - the closest documented form of D3 (Moosavi-Dezfooli et al. 2018):
//     overlapping patches, each replaced by its Orthogonal Matching
//     Pursuit fit over a dictionary of clean training patches, the fits
//     averaged (see D3 for what is stated and what is ours).
//
// Every baseline is built from an options struct with the published
// parameters as documented defaults and a Validate method. The registry
// (Entries, New) names them for configuration files and flags and states
// each one's row label in result tables, the options its results depend
// on (Entry.Settings), its backward pass for BPDA and whether it is
// randomized; Prepare builds, or loads from a cache directory, what the
// quilting baselines, MagNet and D3 learn from clean training images.
//
// Randomized baselines draw from their own seeded source, so a sequence of
// Apply calls is deterministic; all are safe for concurrent use.
package baseline
