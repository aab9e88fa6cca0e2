package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/npy"
)

// ErrWholeOnly is returned by OpenSplit for a data set whose form cannot
// be read image by image (an embedded sample, an archive, gzipped records,
// CIFAR-10's several train batches): LoadContext reads it whole.
var ErrWholeOnly = errors.New("dataset: this form is read whole")

// Split is one part (train or test) of a data set opened so that chosen
// images are read without the others: the labels, the classes and the
// name are read when it is opened (they are small), the images on demand
// (Read). Read's images, labels, classes and name are those of the part
// LoadContext returns, so that Read of every index equals it. A Split
// keeps no open file and is safe for concurrent use.
type Split struct {
	// Name is the part's name as LoadContext gives it ("base/test").
	Name string
	// Classes names the labels; Labels holds every image's label.
	Classes []string
	Labels  []int
	// Shape is the geometry of one image.
	Shape Shape
	read  func(ctx context.Context, lo, hi int) (*Set, error)
}

// OpenSplit opens part split ("train" or "test") of the data set spec
// (a spec of LoadContext, read with opts) for reading by images, where the
// form allows: a folder written by Save as .npy arrays (rows read by
// seeking, npy.ReadRows), uncompressed record files (train_HxW.bin /
// val_HxW.bin and CIFAR-10's test_batch.bin: records read by seeking),
// image folders with train/ and val/ (or test/) subfolders, ImageNet's
// flat validation folder included (only the chosen files decoded). Any
// other form gives an error wrapping ErrWholeOnly, and the caller reads
// it with LoadContext; other errors are those LoadContext would return.
func OpenSplit(ctx context.Context, spec, split string, opts LoadOptions) (*Split, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("dataset: split %q: want train or test", split)
	}
	if IsSample(spec) {
		return nil, fmt.Errorf("%s: %w", spec, ErrWholeOnly)
	}
	path, err := ResolveSpec(spec)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err != nil {
		return nil, err
	} else if !st.IsDir() || (path != spec && spec == "imagenette") {
		return nil, fmt.Errorf("%s: %w", spec, ErrWholeOnly)
	}
	kind, target := detectDir(path)
	var s *Split
	switch kind {
	case kindNPY:
		s, err = openNPYSplit(filepath.Join(target, split+".npy"))
	case kindRecords:
		s, err = openRecordSplit(target, split, opts.Size)
	case kindCIFAR:
		s, err = openCIFARSplit(target, split)
	case kindFolders:
		s, err = openFolderSplit(ctx, target, split, opts)
	default:
		err = ErrWholeOnly
	}
	if err != nil {
		if errors.Is(err, ErrWholeOnly) {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		return nil, err
	}
	s.Name = filepath.Base(target) + "/" + split
	if kind == kindCIFAR {
		s.Name = "cifar10/" + split
	}
	return s, nil
}

// Len returns the number of images.
func (s *Split) Len() int { return len(s.Labels) }

// Read returns the images idx (indices into the part, each in 0..Len-1)
// in that order with their labels, as a new Set: a run of consecutive
// indices is read at once. The context is checked between runs (and
// between images of a folder).
func (s *Split) Read(ctx context.Context, idx []int) (*Set, error) {
	out := NewSet(s.Name, len(idx), s.Shape, s.Classes)
	p := s.Shape.Pixels()
	for a := 0; a < len(idx); {
		b := a + 1
		for b < len(idx) && idx[b] == idx[b-1]+1 {
			b++
		}
		lo, hi := idx[a], idx[a]+b-a
		if lo < 0 || hi > s.Len() {
			return nil, fmt.Errorf("dataset: %s: image %d of %d", s.Name, min(lo, hi-1), s.Len())
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		run, err := s.read(ctx, lo, hi)
		if err != nil {
			return nil, err
		}
		if got := run.Shape(); got != s.Shape || run.Len() != hi-lo {
			return nil, formatErr(s.Name, lo, ErrShape, "read %d images of %v, want %d of %v", run.Len(), got, hi-lo, s.Shape)
		}
		copy(out.Images.Data[a*p:b*p], run.Images.Data)
		copy(out.Labels[a:b], s.Labels[lo:hi])
		a = b
	}
	return out, nil
}

// openNPYSplit opens path (with its .labels.npy and .classes.txt, as
// ReadNPY reads them).
func openNPYSplit(path string) (*Split, error) {
	head, err := ReadNPYRange(path, 0, 0) // the header, labels and classes, checked
	if err != nil {
		return nil, err
	}
	_, lp, _ := npyPaths(path)
	labels, err := npy.ReadIntsFile(lp)
	if err != nil {
		return nil, formatErr(lp, -1, err, "read labels")
	}
	h, err := npy.ReadHeaderFile(path)
	if err != nil {
		return nil, formatErr(path, -1, err, "read images")
	}
	return &Split{Classes: head.Classes, Labels: labels, Shape: Shape{h.Shape[1], h.Shape[2], h.Shape[3]},
		read: func(_ context.Context, lo, hi int) (*Set, error) {
			t, err := npy.ReadRowsFile(path, lo, hi)
			if err != nil {
				return nil, formatErr(path, -1, err, "read images")
			}
			return &Set{Images: t, Labels: make([]int, hi-lo)}, nil
		}}, nil
}

// openRecordSplit opens the part of a record folder ReadRecordDir reads.
func openRecordSplit(dir, split string, size int) (*Split, error) {
	files, err := recordDirFiles(dir, size)
	if err != nil {
		return nil, err
	}
	path := files.test
	if split == "train" {
		path = files.train
	}
	return OpenRecordFile(path, files.shape, files.classes)
}

// openCIFARSplit opens CIFAR-10's test_batch.bin; the train part, several
// batch files, is read whole.
func openCIFARSplit(dir, split string) (*Split, error) {
	files, err := cifarDirFiles(dir)
	if err != nil {
		return nil, err
	}
	if split == "train" && len(files.train) != 1 {
		return nil, fmt.Errorf("%d train batches: %w", len(files.train), ErrWholeOnly)
	}
	path := files.test
	if split == "train" {
		path = files.train[0]
	}
	return OpenRecordFile(path, CIFARShape, files.classes)
}

// openFolderSplit opens the part of an image folder readFolderSplits
// reads.
func openFolderSplit(ctx context.Context, root, split string, lo LoadOptions) (*Split, error) {
	train, test, names, err := openFolderSplits(root, lo)
	if err != nil {
		return nil, err
	}
	f := test
	if split == "train" {
		f = train
	}
	if f.Len() == 0 {
		return nil, formatErr(root, -1, ErrEmpty, "no images in %s", split)
	}
	// The shape is the first image's: every other must agree (or be
	// resized to it), as when read whole.
	first, err := f.Read(ctx, 0, 1)
	if err != nil {
		return nil, err
	}
	classes := f.Classes()
	if names != nil {
		classes = names
	}
	return &Split{Classes: classes, Labels: f.labels, Shape: first.Shape(), read: f.Read}, nil
}

// OpenRecordFile opens an uncompressed binary record file of images of
// shape whose labels index classes, for reading by images: its label
// bytes (one per record) are read and checked now, the records on demand
// (Read). A gzipped file gives an error wrapping ErrWholeOnly (gzip cannot
// seek; ReadBinaryFile reads it), a size that is not a whole number of
// records or a label outside classes a *FormatError. The Split's name is
// path; its images equal ReadBinaryFile's.
func OpenRecordFile(path string, shape Shape, classes []string) (*Split, error) {
	if !shape.valid() {
		return nil, fmt.Errorf("dataset: invalid record shape %v", shape)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var magic [2]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 2 && magic == [2]byte{0x1f, 0x8b} {
		return nil, fmt.Errorf("%s is gzipped: %w", path, ErrWholeOnly)
	}
	rec := int64(shape.RecordSize())
	if st.Size() == 0 {
		return nil, formatErr(path, -1, ErrEmpty, "no records")
	}
	if st.Size()%rec != 0 {
		return nil, formatErr(path, int(st.Size()/rec), io.ErrUnexpectedEOF, "%d bytes are not a whole number of %d-byte records", st.Size(), rec)
	}
	labels := make([]int, st.Size()/rec)
	b := make([]byte, 1)
	for i := range labels {
		if _, err := f.ReadAt(b, int64(i)*rec); err != nil {
			return nil, err
		}
		if labels[i] = int(b[0]); labels[i] >= len(classes) {
			return nil, formatErr(path, i, ErrLabel, "label %d, %d classes", labels[i], len(classes))
		}
	}
	return &Split{Name: path, Classes: classes, Labels: labels, Shape: shape, read: func(_ context.Context, lo, hi int) (*Set, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return ReadBinary(io.NewSectionReader(f, int64(lo)*rec, int64(hi-lo)*rec), path, shape, classes, hi-lo)
	}}, nil
}
