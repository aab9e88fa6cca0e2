package dataset

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// ImageFolder is an image folder listed but not decoded: its images in
// the order ReadImageFolder returns them, with their labels, decoded on
// demand (Read), so that a reader of part of a large folder holds only
// that part in memory.
type ImageFolder struct {
	name    string
	opts    FolderOptions
	recs    []folderRec // in the set's order
	labels  []int
	classes []string
}

// OpenImageFolder lists root/<class>/<image> as ReadImageFolder reads it,
// checking the folder's layout, the file names and the classes, without
// decoding any image.
func OpenImageFolder(root string, opts FolderOptions) (*ImageFolder, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var classDirs []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			classDirs = append(classDirs, e.Name())
		}
	}
	if len(classDirs) == 0 {
		return nil, formatErr(root, -1, ErrEmpty, "no class folders")
	}
	var recs []folderRec
	for _, c := range classDirs {
		files, err := os.ReadDir(filepath.Join(root, c))
		if err != nil {
			return nil, err
		}
		n := 0
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") || f.IsDir() {
				continue
			}
			p := filepath.Join(root, c, f.Name())
			if !imageExt(f.Name()) {
				return nil, formatErr(p, -1, ErrNotImage, "not a .png, .jpg or .jpeg file")
			}
			recs = append(recs, folderRec{class: c, file: p})
			n++
		}
		if n == 0 {
			return nil, formatErr(filepath.Join(root, c), -1, ErrEmpty, "class folder holds no images")
		}
	}
	return listedFolder(root, opts, recs)
}

// listedFolder orders recs as a folder's set (folderBuilder.set: class,
// then file) and labels them.
func listedFolder(name string, opts FolderOptions, recs []folderRec) (*ImageFolder, error) {
	b := &folderBuilder{name: name, opts: opts, recs: recs}
	order, labels, classes, err := b.order()
	if err != nil {
		return nil, err
	}
	f := &ImageFolder{name: name, opts: opts, classes: classes}
	for _, i := range order {
		f.recs = append(f.recs, recs[i])
		f.labels = append(f.labels, labels[i])
	}
	return f, nil
}

// Len returns the number of images.
func (f *ImageFolder) Len() int { return len(f.recs) }

// Classes returns the class names, label i being Classes()[i].
func (f *ImageFolder) Classes() []string { return f.classes }

// Read decodes images lo..hi-1 (0 <= lo < hi <= Len) into a new Set, as
// ReadImageFolder would give them, reporting one progress step per image
// to the options' Progress. The context is checked before each image.
func (f *ImageFolder) Read(ctx context.Context, lo, hi int) (*Set, error) {
	if lo < 0 || hi <= lo || hi > len(f.recs) {
		return nil, formatErr(f.name, -1, ErrEmpty, "images %d..%d of %d", lo, hi, len(f.recs))
	}
	b := &folderBuilder{name: f.name, opts: f.opts, hint: hi - lo}
	rep := progress.Or(f.opts.Progress)
	stage := "decode " + filepath.Base(f.name)
	for i, r := range f.recs[lo:hi] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := b.addFile(r.file, r.class); err != nil {
			return nil, err
		}
		rep.Report(stage, i+1, hi-lo, "")
	}
	p := b.shape.Pixels()
	t, err := tensor.FromData(b.data[:(hi-lo)*p:(hi-lo)*p], hi-lo, b.shape.C, b.shape.H, b.shape.W)
	if err != nil {
		return nil, err
	}
	return &Set{Images: t, Labels: append([]int(nil), f.labels[lo:hi]...), Classes: append([]string(nil), f.classes...), Name: f.name}, nil
}
