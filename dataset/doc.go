// Package dataset reads, holds, augments and writes the labelled image sets
// the defense and its experiments work on: CIFAR-10 (32x32, the paper's
// Tables 1, 4 and 5), ImageNet-10 (Tables 2 and 6: in the paper 10
// coarse-grained ImageNet classes with 8,000 train and 2,000 test images
// each, Section 5.1, used at 64 and 128 px; here the 10 Imagenette classes
// stand in, see dataset/sample) and a user's own image folders.
//
// A Set holds every image in memory as float32 in [0, 1] with an explicit
// (N, C, H, W) shape, plus integer labels and class names. [0, 1] is the
// pixel scale every other package assumes (the paper's budgets,
// ||x_adv - x0||_2 / ||x0||_2 in Section 5.1, do not depend on it, but the
// L-infinity ones such as 8/255 do).
//
// Formats:
//
//   - Planar binary records, the layout of the official CIFAR-10 "binary
//     version": one label byte then the C planes of H*W bytes, row-major.
//     CIFAR-10 records are 1+3*1024 = 3073 bytes, the ImageNet-10 64 px
//     records 1+3*4096 = 12289 bytes. Files may be gzipped; the official
//     cifar-10-binary.tar.gz archive is read directly. Pixels are 8-bit, so
//     writing a float32 set rounds it to the nearest 1/255.
//   - Image folders root/<class>/*.png|*.jpg|*.jpeg, directly or inside a
//     .tar/.tar.gz/.tgz archive (Imagenette ships as imagenette2-160.tgz),
//     center-cropped to a square and resized by exact area averaging.
//   - NumPy: X.npy (float32, N x C x H x W), X.labels.npy (int64) and
//     X.classes.txt, which keep an adversarial set bit-identical.
//
// Save writes a train and a test set in any of these (see Format for what
// each keeps) so that Load reads them back. BinaryReader and
// OpenBinaryFile stream records one at a time (Next) or by batch
// (NextBatch) for sets that do not fit in memory. Resizer is the reusable
// crop-and-area-average converter from decoded images. Augmenter draws the
// seeded random crops and flips used to train classifiers.
//
// Load turns a short spec string (a directory, an archive, a data set
// fetched by package dataset/fetch, or one of the embedded samples
// "sample:cifar10" and "sample:imagenet10" of package dataset/sample) into
// a train and a test set; it is what the command line and the experiments
// call. DefaultSpec is the CIFAR-10 sample.
//
// Bad input never panics: truncated records, labels out of range, corrupt
// gzip or tar streams, empty class folders, undecodable images and mixed
// sizes return a *FormatError naming the file and the record or image.
//
// Set is a labelled set of clean images; attack.Set is a different thing,
// the adversarial examples one attack produced with their labels and
// provenance. Both keep their names: each is the central type of its
// package and the qualifier (dataset.Set, attack.Set) tells them apart.
// Validate methods of options return an *OptionError.
//
// Nothing in this package prints; long loads take a context and report
// through progress.Reporter.
package dataset
