package dataset

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/progress"
)

// ConvertImages streams the images of src, an image folder (train/ and
// val/ or test/ with <class>/ subfolders), an image archive such as
// imagenette2-160.tgz or a folder holding one, or the fetched "imagenette",
// into a record folder dir that Load reads fast:
// train_SxS.bin.gz, val_SxS.bin.gz (test_SxS.bin.gz when the source has
// test/ and no val/) and classes.txt. Only one image is in memory at a
// time, so sets far larger than memory convert; this is the way to make
// ImageNet-10 at 128 px from a large Imagenette. Images are center-cropped
// and area-averaged to size x size (size > 0) exactly as LoadContext does,
// then rounded to 8 bits. Labels follow the sorted train class names; a
// test class absent from train is an error. Folder images are written in
// (class, file name) order, archive images in archive order. Both output
// files are replaced atomically, and only when everything succeeded. It
// returns the number of train and test images written.
func ConvertImages(ctx context.Context, src, dir string, size int, rep progress.Reporter) (nTrain, nTest int, err error) {
	if size <= 0 || size > 4096 {
		return 0, 0, fmt.Errorf("dataset: convert needs a size in 1..4096, got %d", size)
	}
	rep = progress.Or(rep)
	src, err = ResolveSpec(src)
	if err != nil {
		return 0, 0, err
	}
	st, err := os.Stat(src)
	if err != nil {
		return 0, 0, err
	}
	walk := walkArchive
	if st.IsDir() {
		switch kind, target := detectDir(src); kind {
		case kindFolders:
			walk = walkFolder
		case kindArchive:
			src = target
		default:
			return 0, 0, formatErr(src, -1, ErrUnknownFormat, "want train/ and val/ image folders or an image archive")
		}
	}
	// Pass 1: names only, to fix the classes and the test split.
	classes := map[string]map[string]bool{}
	count := map[string]int{}
	err = walk(ctx, src, false, func(split, class, file string, _ io.Reader) error {
		if classes[split] == nil {
			classes[split] = map[string]bool{}
		}
		classes[split][class] = true
		count[split]++
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	testSplit := "val"
	if classes["val"] == nil {
		testSplit = "test"
	}
	if classes["train"] == nil || classes[testSplit] == nil {
		return 0, 0, formatErr(src, -1, ErrEmpty, "no train/<class>/ and val/<class>/ (or test/) images")
	}
	var names []string
	for c := range classes["train"] {
		names = append(names, c)
	}
	sort.Strings(names)
	label := map[string]int{}
	for i, c := range names {
		label[c] = i
	}
	if len(names) > 256 {
		return 0, 0, formatErr(src, -1, ErrLabel, "%d classes, records hold at most 256", len(names))
	}
	for c := range classes[testSplit] {
		if _, ok := label[c]; !ok {
			return 0, 0, formatErr(src, -1, ErrLabel, "%s class %q has no train images", testSplit, c)
		}
	}
	// Pass 2: decode, resize, quantize and write both parts at once.
	sh := Shape{3, size, size}
	rz := NewResizer(size)
	pix := make([]float32, sh.Pixels())
	rec := make([]byte, sh.RecordSize())
	trainPath := filepath.Join(dir, fmt.Sprintf("train_%dx%d.bin.gz", size, size))
	testPath := filepath.Join(dir, fmt.Sprintf("%s_%dx%d.bin.gz", testSplit, size, size))
	stage := "convert " + filepath.Base(src)
	total := count["train"] + count[testSplit]
	err = safefile.Write(trainPath, func(tw io.Writer) error {
		return safefile.Write(testPath, func(vw io.Writer) error {
			zt, _ := gzip.NewWriterLevel(tw, gzip.BestCompression)
			zv, _ := gzip.NewWriterLevel(vw, gzip.BestCompression)
			err := walk(ctx, src, true, func(split, class, file string, r io.Reader) error {
				var w io.Writer
				var idx int
				switch split {
				case "train":
					w, idx = zt, nTrain
				case testSplit:
					w, idx = zv, nTest
				default:
					return nil
				}
				img, err := decodeImage(r, file, idx)
				if err != nil {
					return err
				}
				if err := rz.Convert(pix, img); err != nil {
					return formatErr(file, idx, ErrShape, "%v", err)
				}
				rec[0] = byte(label[class])
				for i, v := range pix {
					rec[1+i] = unitToByte(v)
				}
				if _, err := w.Write(rec); err != nil {
					return err
				}
				if split == "train" {
					nTrain++
				} else {
					nTest++
				}
				rep.Report(stage, nTrain+nTest, total, "")
				return nil
			})
			if err != nil {
				return err
			}
			if err := zt.Close(); err != nil {
				return err
			}
			return zv.Close()
		})
	})
	if err != nil {
		return 0, 0, err
	}
	if err := writeClasses(filepath.Join(dir, "classes.txt"), names, true); err != nil {
		return 0, 0, err
	}
	return nTrain, nTest, nil
}

// imageVisitor is called per image with its split ("train", "val" or
// "test"), class folder name and file (for errors); r is nil unless the
// walk reads contents.
type imageVisitor func(split, class, file string, r io.Reader) error

// walkFolder visits root/<split>/<class>/<image> in sorted order. It
// applies ReadImageFolder's rules: non-image files are errors, hidden files
// are skipped, empty class folders are errors.
func walkFolder(ctx context.Context, root string, read bool, fn imageVisitor) error {
	for _, split := range []string{"train", "val", "test"} {
		sd := filepath.Join(root, split)
		if st, err := os.Stat(sd); err != nil || !st.IsDir() {
			continue
		}
		ents, err := os.ReadDir(sd)
		if err != nil {
			return err
		}
		for _, c := range ents {
			if !c.IsDir() || strings.HasPrefix(c.Name(), ".") {
				continue
			}
			files, err := os.ReadDir(filepath.Join(sd, c.Name()))
			if err != nil {
				return err
			}
			n := 0
			for _, f := range files {
				if f.IsDir() || strings.HasPrefix(f.Name(), ".") {
					continue
				}
				p := filepath.Join(sd, c.Name(), f.Name())
				if !imageExt(f.Name()) {
					return formatErr(p, -1, ErrNotImage, "not a .png, .jpg or .jpeg file")
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				n++
				if !read {
					if err := fn(split, c.Name(), p, nil); err != nil {
						return err
					}
					continue
				}
				fh, err := os.Open(p)
				if err != nil {
					return err
				}
				err = fn(split, c.Name(), p, fh)
				fh.Close()
				if err != nil {
					return err
				}
			}
			if n == 0 {
				return formatErr(filepath.Join(sd, c.Name()), -1, ErrEmpty, "class folder holds no images")
			}
		}
	}
	return nil
}

// walkArchive visits the image members <prefix>/<split>/<class>/<image> of
// a tar or gzipped tar in archive order.
func walkArchive(ctx context.Context, file string, read bool, fn imageVisitor) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, done, err := maybeGunzip(f, file)
	if err != nil {
		return err
	}
	defer done()
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return formatErr(file, -1, err, "tar")
		}
		split, class, ok := archiveImage(hdr)
		if !ok {
			continue
		}
		var r io.Reader
		if read {
			r = tr
		}
		if err := fn(split, class, file+":"+hdr.Name, r); err != nil {
			return err
		}
	}
}
