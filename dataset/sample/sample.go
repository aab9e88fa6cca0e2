// Package sample embeds the small real data sets that let every command run
// on a fresh clone with no download: a class-balanced CIFAR-10 sample
// (2,000 train + 500 test, 32x32) and an ImageNet-10 sample (Imagenette
// classes, 500 train + 200 test, 64x64), both in the planar binary record
// layout, gzipped. README.md beside the files gives their provenance, the
// seeds that drew them and their SHA-256; dataset/internal/mksample
// regenerates them byte for byte.
//
// This package only holds the bytes; package dataset decodes them (Load with
// "sample:cifar10" or "sample:imagenet10").
package sample

import "embed"

// FS holds README.md and the folders cifar10/ (train.bin.gz, test.bin.gz,
// batches.meta.txt) and imagenet10/ (train_64x64.bin.gz, test_64x64.bin.gz,
// classes.txt).
//
//go:embed README.md cifar10 imagenet10
var FS embed.FS
