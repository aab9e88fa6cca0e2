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
		if err := CheckClassName(s); err != nil {
			return nil, formatErr(file, -1, err, "line %d", line)
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
	files, err := cifarDirFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	classes, trainFiles, testFile := files.classes, files.train, files.test
	acc := newAccumulator(CIFARShape)
	total := 0
	for _, f := range trainFiles {
		if bf, err := OpenBinaryFile(f, CIFARShape, len(classes)); err == nil {
			total += bf.Hint
			bf.Close()
		}
	}
	acc.reserveTrusted(total)
	for _, f := range trainFiles {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if err := readBinaryFileInto(acc, f, len(classes)); err != nil {
			return nil, nil, err
		}
	}
	if train, err = acc.set("cifar10/train", classes); err != nil {
		return nil, nil, err
	}
	if test, err = ReadBinaryFile(testFile, CIFARShape, classes); err != nil {
		return nil, nil, err
	}
	test.Name = "cifar10/test"
	return train, test, nil
}

// cifarFiles are the files of a CIFAR-10 binary folder.
type cifarFiles struct {
	classes []string
	train   []string // in batch order
	test    string
}

// cifarDirFiles finds the files ReadCIFAR10Dir reads and the class names.
func cifarDirFiles(dir string) (*cifarFiles, error) {
	files := &cifarFiles{classes: CIFAR10Classes}
	if _, err := os.Stat(filepath.Join(dir, "batches.meta.txt")); err == nil {
		if files.classes, err = readClassFile(filepath.Join(dir, "batches.meta.txt")); err != nil {
			return nil, err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, e := range ents {
		m := cifarBatch.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		if seen[m[1]] {
			return nil, formatErr(filepath.Join(dir, e.Name()), -1, nil, "both %s.bin and %s.bin.gz present", m[1], m[1])
		}
		seen[m[1]] = true
		if m[1] == "test_batch" {
			files.test = filepath.Join(dir, e.Name())
		} else {
			files.train = append(files.train, filepath.Join(dir, e.Name()))
		}
	}
	sortBatches(files.train)
	if len(files.train) == 0 || files.test == "" {
		return nil, formatErr(dir, -1, ErrEmpty, "want data_batch_*.bin and test_batch.bin (or .bin.gz)")
	}
	return files, nil
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
// test_batch.bin (also .bin.gz) in any folder, and batches.meta.txt. Train
// batches are concatenated in order of N. file names the archive in errors;
// a member's errors name "file:member". A corrupt gzip or tar stream is a
// *FormatError wrapping the cause.
func ReadCIFAR10Archive(ctx context.Context, r io.Reader, file string) (train, test *Set, err error) {
	return readCIFAR10Archive(ctx, r, file, 0)
}

// readCIFAR10Archive reads the archive, reserving room for trainHint train
// records up front when positive (from the size of an archive file on
// disk, which bounds it), else per member from tar headers, trusted only
// up to a cap since a stream's headers are untrusted input.
func readCIFAR10Archive(ctx context.Context, r io.Reader, file string, trainHint int) (train, test *Set, err error) {
	zr, done, err := maybeGunzip(r, file)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	tr := tar.NewReader(zr)
	trainAcc := newAccumulator(CIFARShape)
	trainAcc.reserveTrusted(trainHint)
	type segment struct{ num, start, n int }
	var segs []segment
	var classes []string
	rec := int64(CIFARShape.RecordSize())
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
		num := 0 // test batch
		if m[1] != "test_batch" {
			if num, err = strconv.Atoi(m[2]); err != nil || num <= 0 {
				continue
			}
		}
		for _, sg := range segs {
			if sg.num == num {
				return nil, nil, formatErr(member, -1, nil, "duplicate batch")
			}
		}
		if num == 0 && test != nil {
			return nil, nil, formatErr(member, -1, nil, "duplicate test batch")
		}
		var mr io.Reader = tr
		var closeGz func()
		if m[3] != "" {
			if mr, closeGz, err = maybeGunzip(tr, member); err != nil {
				return nil, nil, err
			}
		}
		br, err := NewBinaryReader(mr, member, CIFARShape, len(CIFAR10Classes))
		if err != nil {
			return nil, nil, err
		}
		acc := trainAcc
		if num == 0 {
			acc = newAccumulator(CIFARShape)
		}
		switch {
		case m[3] != "": // gzipped member: size unknown
		case trainHint > 0 && num == 0:
			acc.reserveTrusted(min(int(hdr.Size/rec), trainHint))
		case trainHint <= 0:
			acc.reserve(int(hdr.Size / rec))
		}
		start := acc.len()
		err = acc.readAll(br)
		if closeGz != nil {
			closeGz()
		}
		if err != nil {
			return nil, nil, err
		}
		if acc.len() == start {
			return nil, nil, formatErr(member, -1, ErrEmpty, "no records")
		}
		if num == 0 {
			if test, err = acc.set("cifar10/test", CIFAR10Classes); err != nil {
				return nil, nil, err
			}
		} else {
			segs = append(segs, segment{num, start, acc.len() - start})
		}
	}
	if test == nil || len(segs) == 0 {
		return nil, nil, formatErr(file, -1, ErrEmpty, "archive holds no data_batch_*.bin and test_batch.bin")
	}
	if train, err = trainAcc.set("", CIFAR10Classes); err != nil {
		return nil, nil, err
	}
	if !sort.SliceIsSorted(segs, func(i, j int) bool { return segs[i].num < segs[j].num }) {
		// Members out of order: put the batches in order of N.
		equal := true
		for _, sg := range segs {
			equal = equal && sg.n == segs[0].n
		}
		if equal {
			nums := make([]int, len(segs))
			for i, sg := range segs {
				nums[i] = sg.num
			}
			permuteBlocks(train, nums, segs[0].n)
		} else {
			sort.SliceStable(segs, func(i, j int) bool { return segs[i].num < segs[j].num })
			var idx []int
			for _, sg := range segs {
				for k := 0; k < sg.n; k++ {
					idx = append(idx, sg.start+k)
				}
			}
			train = train.Subset(idx)
		}
	}
	train.Name = "cifar10/train"
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
	// Room for every record the archive can hold: its uncompressed size
	// (gzip trailer, at most 64 times the file) over the record size. The
	// test batch's share is reserved but never touched, so it costs
	// address space, not memory.
	hint := 0
	if st, err := f.Stat(); err == nil {
		var magic [2]byte
		if n, _ := f.ReadAt(magic[:], 0); n == 2 && magic == [2]byte{0x1f, 0x8b} {
			hint = gzipHint(f, st.Size(), CIFARShape.RecordSize())
		} else {
			hint = int(st.Size() / int64(CIFARShape.RecordSize()))
		}
	}
	return readCIFAR10Archive(ctx, f, p, hint)
}

// recordFile matches the ImageNet-10 style names train_64x64.bin(.gz),
// val_64x64.bin, test_128x128.bin.gz.
var recordFile = regexp.MustCompile(`^(train|val|test)_(\d+)x(\d+)\.bin(\.gz)?$`)

// ReadRecordDir reads a folder holding train_HxW.bin[.gz] and val_HxW.bin[.gz]
// (or test_HxW...) RGB planar records, as ../shared/data/imagenet10 does,
// with class names from classes.txt (or batches.meta.txt). size selects the
// resolution when files of several sizes are present (0: the only one).
func ReadRecordDir(ctx context.Context, dir string, size int) (train, test *Set, err error) {
	files, err := recordDirFiles(dir, size)
	if err != nil {
		return nil, nil, err
	}
	sh, classes := files.shape, files.classes
	base := filepath.Base(dir)
	if train, err = ReadBinaryFile(files.train, sh, classes); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if test, err = ReadBinaryFile(files.test, sh, classes); err != nil {
		return nil, nil, err
	}
	train.Name = fmt.Sprintf("%s/train", base)
	test.Name = fmt.Sprintf("%s/test", base)
	return train, test, nil
}

// recordFiles are the files of a record folder ReadRecordDir reads.
type recordFiles struct {
	train, test string
	shape       Shape
	classes     []string
}

// recordDirFiles finds the files ReadRecordDir reads for size and the
// class names.
func recordDirFiles(dir string, size int) (*recordFiles, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
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
		return nil, formatErr(dir, -1, ErrEmpty, "no train_%dx%d.bin with val_ or test_ file", size, size)
	case len(shapes) == 0:
		return nil, formatErr(dir, -1, ErrEmpty, "no train_HxW.bin with a val_HxW.bin or test_HxW.bin")
	case len(shapes) > 1:
		return nil, formatErr(dir, -1, nil, "several image sizes; choose one")
	}
	sh := shapes[0]
	var classes []string
	for _, name := range []string{"classes.txt", "batches.meta.txt"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			if classes, err = readClassFile(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
			break
		}
	}
	if classes == nil {
		return nil, formatErr(dir, -1, nil, "no classes.txt naming the labels")
	}
	return &recordFiles{train: bySize[sh].train, test: bySize[sh].test, shape: sh, classes: classes}, nil
}

// permuteBlocks sorts the equal blocks of n images of s by key (block i has
// key keys[i]) in place, using one block of scratch memory, so that reading
// an archive whose batches come out of order costs no second copy of the
// train set.
func permuteBlocks(s *Set, keys []int, n int) {
	order := make([]int, len(keys)) // order[j]: block now at slot order[j] belongs at j
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return keys[order[a]] < keys[order[b]] })
	p := s.Shape().Pixels() * n
	tmp := make([]float32, p)
	tmpL := make([]int, n)
	done := make([]bool, len(keys))
	block := func(k int) ([]float32, []int) { return s.Images.Data[k*p : (k+1)*p], s.Labels[k*n : (k+1)*n] }
	for i := range order {
		if done[i] || order[i] == i {
			done[i] = true
			continue
		}
		d, l := block(i)
		copy(tmp, d)
		copy(tmpL, l)
		j := i
		for {
			done[j] = true
			k := order[j]
			dj, lj := block(j)
			if k == i {
				copy(dj, tmp)
				copy(lj, tmpL)
				break
			}
			dk, lk := block(k)
			copy(dj, dk)
			copy(lj, lk)
			j = k
		}
	}
}
