package dataset

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ReadClassNames reads class names, one per non-empty line, line i naming
// label i. It accepts both the CIFAR-10 batches.meta.txt layout (a bare name
// per line) and the ImageNet-10 classes.txt layout ("label<TAB>wnid<TAB>
// name", where the label must equal the line's index and the last field is
// the name).
func ReadClassNames(r io.Reader, file string) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		if f := strings.Split(s, "\t"); len(f) > 1 {
			l, err := strconv.Atoi(f[0])
			if err != nil || l != len(names) {
				return nil, formatErr(file, line-1, nil, "line %d: first field %q is not label %d", line, f[0], len(names))
			}
			s = strings.TrimSpace(f[len(f)-1])
		}
		names = append(names, s)
	}
	if err := sc.Err(); err != nil {
		return nil, formatErr(file, -1, err, "read class names")
	}
	if len(names) == 0 || len(names) > 256 {
		return nil, formatErr(file, -1, ErrEmpty, "%d class names, want 1..256", len(names))
	}
	return names, nil
}

func readClassFile(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadClassNames(f, p)
}

// cifarBatch matches the CIFAR-10 binary batch names, gzipped or not.
var cifarBatch = regexp.MustCompile(`^(data_batch_(\d+)|test_batch)\.bin(\.gz)?$`)

// ReadCIFAR10Dir reads a folder in the official CIFAR-10 binary layout:
// data_batch_*.bin (train, concatenated in batch order), test_batch.bin and
// optionally batches.meta.txt (class names; the standard names otherwise).
// Any of the .bin files may instead be gzipped as .bin.gz. Missing batches
// are allowed (the offline copy has no data_batch_5); a missing train or
// test part is an error wrapping ErrEmpty.
func ReadCIFAR10Dir(ctx context.Context, dir string) (train, test *Set, err error) {
	classes := CIFAR10Classes
	if _, err := os.Stat(filepath.Join(dir, "batches.meta.txt")); err == nil {
		if classes, err = readClassFile(filepath.Join(dir, "batches.meta.txt")); err != nil {
			return nil, nil, err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var trainFiles []string
	var testFile string
	seen := map[string]bool{}
	for _, e := range ents {
		m := cifarBatch.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		if seen[m[1]] {
			return nil, nil, formatErr(filepath.Join(dir, e.Name()), -1, nil, "both %s.bin and %s.bin.gz present", m[1], m[1])
		}
		seen[m[1]] = true
		if m[1] == "test_batch" {
			testFile = filepath.Join(dir, e.Name())
		} else {
			trainFiles = append(trainFiles, filepath.Join(dir, e.Name()))
		}
	}
	sortBatches(trainFiles)
	if len(trainFiles) == 0 || testFile == "" {
		return nil, nil, formatErr(dir, -1, ErrEmpty, "want data_batch_*.bin and test_batch.bin (or .bin.gz)")
	}
	var parts []*Set
	for _, f := range trainFiles {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		s, err := ReadBinaryFile(f, CIFARShape, classes)
		if err != nil {
			return nil, nil, err
		}
		parts = append(parts, s)
	}
	if train, err = Concat("cifar10/train", parts...); err != nil {
		return nil, nil, err
	}
	if test, err = ReadBinaryFile(testFile, CIFARShape, classes); err != nil {
		return nil, nil, err
	}
	test.Name = "cifar10/test"
	return train, test, nil
}

// sortBatches orders data_batch_N files by N numerically.
func sortBatches(files []string) {
	num := func(f string) int {
		m := cifarBatch.FindStringSubmatch(filepath.Base(f))
		n, _ := strconv.Atoi(m[2])
		return n
	}
	sort.Slice(files, func(i, j int) bool { return num(files[i]) < num(files[j]) })
}

// maybeGunzip returns a reader of r's content, decompressed when it starts
// with the gzip magic bytes.
func maybeGunzip(r io.Reader, file string) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, formatErr(file, -1, err, "gzip header")
		}
		return zr, func() { zr.Close() }, nil
	}
	return br, func() {}, nil
}

// ReadCIFAR10Archive reads the official cifar-10-binary.tar.gz (or the same
// tar uncompressed) from r in one pass: members named data_batch_N.bin and
// test_batch.bin (also .bin.gz) in any folder, and batches.meta.txt. file
// names the archive in errors; a member's errors name "file:member". A
// corrupt gzip or tar stream is a *FormatError wrapping the cause.
func ReadCIFAR10Archive(ctx context.Context, r io.Reader, file string) (train, test *Set, err error) {
	zr, done, err := maybeGunzip(r, file)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	tr := tar.NewReader(zr)
	batches := map[int]*Set{}
	var classes []string
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, formatErr(file, -1, err, "tar")
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		base := path.Base(hdr.Name)
		member := file + ":" + hdr.Name
		if base == "batches.meta.txt" {
			if classes, err = ReadClassNames(tr, member); err != nil {
				return nil, nil, err
			}
			continue
		}
		m := cifarBatch.FindStringSubmatch(base)
		if m == nil {
			continue
		}
		key := 0 // test batch
		if m[1] != "test_batch" {
			if key, err = strconv.Atoi(m[2]); err != nil || key <= 0 {
				continue
			}
		}
		if batches[key] != nil {
			return nil, nil, formatErr(member, -1, nil, "duplicate batch")
		}
		var mr io.Reader = tr
		hint := int(hdr.Size / int64(CIFARShape.RecordSize()))
		var closeGz func()
		if m[3] != "" {
			if mr, closeGz, err = maybeGunzip(tr, member); err != nil {
				return nil, nil, err
			}
			hint = 0
		}
		s, err := ReadBinary(mr, member, CIFARShape, CIFAR10Classes, hint)
		if closeGz != nil {
			closeGz()
		}
		if err != nil {
			return nil, nil, err
		}
		batches[key] = s
	}
	if batches[0] == nil || len(batches) < 2 {
		return nil, nil, formatErr(file, -1, ErrEmpty, "archive holds no data_batch_*.bin and test_batch.bin")
	}
	keys := make([]int, 0, len(batches))
	for k := range batches {
		if k > 0 {
			keys = append(keys, k)
		}
	}
	sort.Ints(keys)
	var parts []*Set
	for _, k := range keys {
		parts = append(parts, batches[k])
	}
	if train, err = Concat("cifar10/train", parts...); err != nil {
		return nil, nil, err
	}
	test = batches[0]
	test.Name = "cifar10/test"
	if classes != nil {
		if len(classes) != len(CIFAR10Classes) {
			return nil, nil, formatErr(file+":batches.meta.txt", -1, nil, "%d class names, want 10", len(classes))
		}
		train.Classes, test.Classes = classes, append([]string(nil), classes...)
	}
	return train, test, nil
}

// ReadCIFAR10ArchiveFile opens path and calls ReadCIFAR10Archive.
func ReadCIFAR10ArchiveFile(ctx context.Context, p string) (train, test *Set, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return ReadCIFAR10Archive(ctx, f, p)
}

// recordFile matches the ImageNet-10 style names train_64x64.bin(.gz),
// val_64x64.bin, test_128x128.bin.gz.
var recordFile = regexp.MustCompile(`^(train|val|test)_(\d+)x(\d+)\.bin(\.gz)?$`)

// ReadRecordDir reads a folder holding train_HxW.bin[.gz] and val_HxW.bin[.gz]
// (or test_HxW...) RGB planar records, as ../shared/data/imagenet10 does,
// with class names from classes.txt (or batches.meta.txt). size selects the
// resolution when files of several sizes are present (0: the only one).
func ReadRecordDir(ctx context.Context, dir string, size int) (train, test *Set, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	type pick struct{ train, test string }
	bySize := map[Shape]*pick{}
	for _, e := range ents {
		m := recordFile.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		h, _ := strconv.Atoi(m[2])
		w, _ := strconv.Atoi(m[3])
		sh := Shape{3, h, w}
		if bySize[sh] == nil {
			bySize[sh] = &pick{}
		}
		p := filepath.Join(dir, e.Name())
		if m[1] == "train" {
			bySize[sh].train = p
		} else if bySize[sh].test == "" || m[1] == "test" {
			bySize[sh].test = p
		}
	}
	var shapes []Shape
	for sh, p := range bySize {
		if p.train != "" && p.test != "" && (size == 0 || (sh.H == size && sh.W == size)) {
			shapes = append(shapes, sh)
		}
	}
	switch {
	case len(shapes) == 0 && size != 0:
		return nil, nil, formatErr(dir, -1, ErrEmpty, "no train_%dx%d.bin with val_ or test_ file", size, size)
	case len(shapes) == 0:
		return nil, nil, formatErr(dir, -1, ErrEmpty, "no train_HxW.bin with a val_HxW.bin or test_HxW.bin")
	case len(shapes) > 1:
		return nil, nil, formatErr(dir, -1, nil, "several image sizes; choose one")
	}
	sh := shapes[0]
	var classes []string
	for _, name := range []string{"classes.txt", "batches.meta.txt"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			if classes, err = readClassFile(filepath.Join(dir, name)); err != nil {
				return nil, nil, err
			}
			break
		}
	}
	if classes == nil {
		return nil, nil, formatErr(dir, -1, nil, "no classes.txt naming the labels")
	}
	base := filepath.Base(dir)
	if train, err = ReadBinaryFile(bySize[sh].train, sh, classes); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if test, err = ReadBinaryFile(bySize[sh].test, sh, classes); err != nil {
		return nil, nil, err
	}
	train.Name = fmt.Sprintf("%s/train", base)
	test.Name = fmt.Sprintf("%s/test", base)
	return train, test, nil
}
