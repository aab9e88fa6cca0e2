// Package csc is the convolutional sparse coding engine of the Sparse
// Transformation Layer (paper sections 3.2-3.3).
//
// Coding (CBPDN, paper eq. 2 with the filters fixed) solves, for an image s
// of C channels and a dictionary of M filters d_{c,m} (C channels each, the
// coefficient maps x_m shared by the channels),
//
//	minimize_x  1/2 sum_c || sum_m d_{c,m} (*) x_m - s_c ||^2 + lambda sum_m ||x_m||_1
//
// with circular convolution (*), by ADMM in the Fourier domain (Wohlberg,
// "Efficient algorithms for convolutional sparse representations", IEEE
// TIP 2016) with SPORCO's defaults, through the generic loop of package
// admm. The per-frequency linear system (rho I + D^H D) x = b is solved by
// the Woodbury identity with the eigendecomposition of the C×C matrix
// D D^H, computed once per dictionary and image size and valid for every
// rho. Options.Method = MethodActiveSet solves the same problem by a
// working-set method instead (coordinate descent on a small set of atoms
// grown from the violators of the optimality conditions, as Celer, Massias
// et al. 2018), stopped by a duality gap of ActiveGapTol relative: a
// certificate of the objective, where ADMM's residual rule gives none.
//
// Dictionary learning (CDL, paper eq. 2 over filters and maps, section 3.3)
// alternates CBPDN with a constrained dictionary update solved by consensus
// ADMM over the training images (Choudhury et al. 2017; SPORCO's
// ConvBPDNDictLearn with the consensus dictionary update).
//
// The STL projection (paper section 3.2, the official implementation)
// splits an image into a Tikhonov lowpass and a highpass part, codes the
// highpass part and returns lowpass + D x, clipped to [0, 1]. Projecting
// an image near one already projected (an attacked image and its clean
// image, an attack's successive iterates) can start the ADMM from that
// image's final State (Projection.ProjectFrom, a warm start; Boyd et al.
// 2011, section 4.4), in fewer iterations to the same objective.
//
// Layouts: images are (C, H, W) planar float32, batches (N, C, H, W);
// dictionary filters are (M, C, R, S); coefficient maps are (M, H, W).
// A dictionary travels between packages as a *Dictionary; SPORCO's .npy
// layout ((R, S, C, M), readable by SPORCO) is its file format only,
// converted at the file boundary by DecodeDictionary, EncodeDictionary,
// ReadDictionary and WriteDictionary. Images in SPORCO's (H, W, C[, N])
// layout are converted by ImagesFromSPORCO and ImagesToSPORCO.
package csc
