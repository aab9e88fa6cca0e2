// Package dataset reads, holds, augments and writes the labelled image sets
// the defense and its experiments work on: CIFAR-10 (32x32, the paper's
// Tables 1, 4 and 5), ImageNet-10 (10 ImageNet classes at 64 px, Tables 2
// and 6; here the Imagenette classes stand in, see dataset/sample) and a
// user's own image folders.
//
// A Set holds every image in memory as float32 in [0, 1] with an explicit
// (N, C, H, W) shape, plus integer labels and class names. Section 4 of Sun
// et al. (CVPR 2019) works on images in [0, 1]; the attacks' epsilons (for
// example FGSM 0.08) are in the same unit.
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
// Load turns a short spec string (a directory, an archive, or one of the
// embedded samples "sample:cifar10" and "sample:imagenet10") into a train and
// a test set; it is what the command line and the experiments call.
//
// Bad input never panics: truncated records, labels out of range, corrupt
// gzip or tar streams, empty class folders, undecodable images and mixed
// sizes return a *FormatError naming the file and the record or image.
//
// Nothing in this package prints; long loads take a context and report
// through progress.Reporter.
package dataset
