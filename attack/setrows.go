package attack

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// OpenedSet is a set saved by Save opened to read its images by rows
// (ReadRows) without reading them all: a reader of part of a large set
// holds only that part in memory. It keeps no open file and is safe for
// concurrent use.
type OpenedSet struct {
	Dir string
	// Meta and Labels are the set's, read whole (they are small).
	Meta   SetMeta
	Labels []int
	// Shape is the images' (N, C, H, W).
	Shape []int
}

// OpenSet opens the set in dir: it reads meta.json, labels.npy and the
// header of adv.npy and checks that they agree, as LoadSet does; the
// images' values are checked (finite) as ReadRows reads them. Errors are
// those of LoadSet.
func OpenSet(dir string) (*OpenedSet, error) {
	js, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		return nil, err
	}
	m, err := decodeMeta(dir, js)
	if err != nil {
		return nil, err
	}
	h, err := npy.ReadHeaderFile(filepath.Join(dir, AdvFile))
	if err != nil {
		return nil, err
	}
	labels, err := npy.ReadIntsFile(filepath.Join(dir, LabelsFile))
	if err != nil {
		return nil, err
	}
	if err := checkShapes(h.Shape, len(labels), m); err != nil {
		return nil, &SetError{Dir: dir, Msg: err.Error()}
	}
	return &OpenedSet{Dir: dir, Meta: m, Labels: labels, Shape: h.Shape}, nil
}

// Len returns the number of images.
func (s *OpenedSet) Len() int { return s.Shape[0] }

// ReadRows reads images lo..hi-1 (0 <= lo < hi <= Len) of adv.npy into a
// new tensor, seeking past the others (npy.ReadRows), bit for bit as
// LoadSet reads them. A non-finite value gives a *SetError.
func (s *OpenedSet) ReadRows(lo, hi int) (*tensor.Tensor, error) {
	if lo < 0 || hi <= lo || hi > s.Len() {
		return nil, fmt.Errorf("attack: set %s: images %d..%d of %d", s.Dir, lo, hi, s.Len())
	}
	t, err := npy.ReadRowsFile(filepath.Join(s.Dir, AdvFile), lo, hi)
	if err != nil {
		return nil, err
	}
	if err := tensor.CheckFinite(t.Data); err != nil {
		return nil, &SetError{Dir: s.Dir, Msg: fmt.Sprintf("%s images %d..%d: %v", AdvFile, lo, hi, err)}
	}
	return t, nil
}

// mergeBlock bounds the bytes of images SaveMerged holds at a time.
var mergeBlock = 32 << 20

// SaveMerged merges the sets parts as MergeSets does and saves the result
// in the directory dir, the files Save writes for MergeSets' set, byte for
// byte, reading the parts' images by blocks of rows (ReadRows, at most
// 32 MB at a time) so that neither the parts nor the merged set are held
// in memory. dir must not be one of the parts. It returns the merged set,
// opened. The errors are those of MergeSets and of ReadRows.
func SaveMerged(dir string, parts []*OpenedSet) (*OpenedSet, error) {
	metas := make([]SetMeta, len(parts))
	labels := make([][]int, len(parts))
	for i, p := range parts {
		metas[i], labels[i] = p.Meta, p.Labels
	}
	m, l, err := mergeMeta(metas, labels)
	if err != nil {
		return nil, err
	}
	rows := make([]int, len(parts))
	for i, p := range parts {
		rows[i] = p.Len()
	}
	writeAdv := func(path string) error {
		return npy.WriteRowsFile(path, m.Shape, rows, mergeBlock, func(i, lo, hi int) (*tensor.Tensor, error) { return parts[i].ReadRows(lo, hi) })
	}
	if err := saveFiles(dir, writeAdv, l, m); err != nil {
		return nil, err
	}
	return OpenSet(dir)
}
