package experiment

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
)

// ImageSource is the images of a file or folder ReadImages reads, opened
// so that a range of them is read without reading the others where the
// form allows: an .npy array (with or without labels) by seeking to the
// range's rows (npy.ReadRows), uncompressed record files (.bin) by seeking
// to the range's fixed-size records, image folders by decoding only the
// range's files (dataset.ImageFolder), an attack set's directory (or its
// adv.npy) by seeking to the range's rows of adv.npy (attack.OpenSet). A
// gzipped record file, which cannot seek, is read whole when opened. Read's
// images and labels are those of ReadImages, and so are the classes.
type ImageSource struct {
	n    int
	bare bool
	read func(ctx context.Context, lo, hi int) (*dataset.Set, error)
}

// OpenImages opens the images at path (a form ReadImages reads; m gives
// the size of record files' images), reading what it must to count and
// label them: an .npy's header and labels, a record file's label bytes,
// a folder's file names. rep receives the folders' decoding progress.
func OpenImages(ctx context.Context, path string, m defense.Manifest, rep progress.Reporter) (*ImageSource, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	dir, isSet := AttackSetDir(path)
	lower := strings.ToLower(path)
	switch {
	case isSet:
		return openAttackSet(dir)
	case st.IsDir():
		f, err := dataset.OpenImageFolder(path, dataset.FolderOptions{Size: 0, Progress: rep})
		if err != nil {
			return nil, err
		}
		return &ImageSource{n: f.Len(), read: f.Read}, nil
	case strings.HasSuffix(lower, ".npy"):
		return openNPY(path)
	case strings.HasSuffix(lower, ".bin"):
		src, err := openRecords(path, dataset.Shape{C: m.Channels, H: m.Resolution, W: m.Resolution})
		if !errors.Is(err, dataset.ErrWholeOnly) { // a gzipped .bin is read whole
			return src, err
		}
	}
	set, bare, err := ReadImages(ctx, path, m, rep)
	if err != nil {
		return nil, err
	}
	return wholeSource(set, bare), nil
}

// wholeSource serves ranges of a set read whole.
func wholeSource(set *dataset.Set, bare bool) *ImageSource {
	return &ImageSource{n: set.Len(), bare: bare, read: func(_ context.Context, lo, hi int) (*dataset.Set, error) {
		return set.Subset(indexRange(lo, hi)), nil
	}}
}

// Len returns the number of images.
func (s *ImageSource) Len() int { return s.n }

// Bare reports an .npy without labels, whose images get label 0 of the
// one class "0" (as ReadImages gives them).
func (s *ImageSource) Bare() bool { return s.bare }

// Read returns images lo..hi-1 (0 <= lo < hi <= Len) with their labels.
func (s *ImageSource) Read(ctx context.Context, lo, hi int) (*dataset.Set, error) {
	if lo < 0 || hi <= lo || hi > s.n {
		return nil, fmt.Errorf("images %d..%d of %d", lo, hi, s.n)
	}
	return s.read(ctx, lo, hi)
}

// openNPY opens an .npy of images, with labels and classes beside it or
// bare (readImageNPY).
func openNPY(path string) (*ImageSource, error) {
	h, err := npy.ReadHeaderFile(path)
	if err != nil {
		return nil, err
	}
	if len(h.Shape) != 4 {
		return nil, fmt.Errorf("%s: images of shape %v, want (N, C, H, W)", path, h.Shape)
	}
	if _, err := os.Stat(strings.TrimSuffix(path, filepath.Ext(path)) + ".labels.npy"); err == nil {
		// Checks the labels whole once, then per range.
		if _, err := dataset.ReadNPYRange(path, 0, 0); err != nil {
			return nil, err
		}
		return &ImageSource{n: h.Shape[0], read: func(_ context.Context, lo, hi int) (*dataset.Set, error) {
			return dataset.ReadNPYRange(path, lo, hi)
		}}, nil
	}
	return &ImageSource{n: h.Shape[0], bare: true, read: func(_ context.Context, lo, hi int) (*dataset.Set, error) {
		t, err := npy.ReadRowsFile(path, lo, hi)
		if err != nil {
			return nil, err
		}
		return &dataset.Set{Images: t, Labels: make([]int, hi-lo), Classes: []string{"0"}, Name: filepath.Base(path)}, nil
	}}, nil
}

// openRecords opens an uncompressed record file of images of shape: its
// label bytes read (one per record) for the classes ReadImages gives
// (labels 0..the largest), ranges of records read on demand
// (dataset.OpenRecordFile).
func openRecords(path string, shape dataset.Shape) (*ImageSource, error) {
	sp, err := dataset.OpenRecordFile(path, shape, byteClasses())
	if err != nil {
		return nil, fmt.Errorf("reading binary records of %v images, the size the defense was built for: %w", shape, err)
	}
	top := 0
	for _, l := range sp.Labels {
		top = max(top, l)
	}
	sp.Classes = sp.Classes[:top+1]
	return &ImageSource{n: sp.Len(), read: func(ctx context.Context, lo, hi int) (*dataset.Set, error) {
		return sp.Read(ctx, indexRange(lo, hi))
	}}, nil
}

// openAttackSet opens the adversarial set in dir (attack.OpenSet), its
// images, labels, classes and name those of readAttackSet.
func openAttackSet(dir string) (*ImageSource, error) {
	as, err := attack.OpenSet(dir)
	if err != nil {
		return nil, err
	}
	classes, name, err := attackSetNames(dir, as.Labels, as.Meta)
	if err != nil {
		return nil, err
	}
	return &ImageSource{n: as.Len(), read: func(_ context.Context, lo, hi int) (*dataset.Set, error) {
		t, err := as.ReadRows(lo, hi)
		if err != nil {
			return nil, err
		}
		return &dataset.Set{Images: t, Labels: append([]int(nil), as.Labels[lo:hi]...), Classes: append([]string(nil), classes...), Name: name}, nil
	}}, nil
}

// indexRange returns lo, lo+1, ..., hi-1.
func indexRange(lo, hi int) []int {
	idx := make([]int, hi-lo)
	for i := range idx {
		idx[i] = lo + i
	}
	return idx
}
