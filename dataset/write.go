package dataset

import (
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// CHWToImage converts one planar RGB (or gray, C = 1) image in [0, 1] to an
// 8-bit *image.RGBA, rounding to the nearest level and clamping.
func CHWToImage(pix []float32, shape Shape) (*image.RGBA, error) {
	if shape.C != 3 && shape.C != 1 {
		return nil, fmt.Errorf("dataset: %d channels, want 1 or 3", shape.C)
	}
	if len(pix) != shape.Pixels() {
		return nil, &tensor.ShapeError{Op: "dataset.CHWToImage", Want: []int{shape.Pixels()}, Got: []int{len(pix)}}
	}
	img := image.NewRGBA(image.Rect(0, 0, shape.W, shape.H))
	hw := shape.H * shape.W
	for y := 0; y < shape.H; y++ {
		for x := 0; x < shape.W; x++ {
			o := img.PixOffset(x, y)
			for c := 0; c < 3; c++ {
				src := c
				if shape.C == 1 {
					src = 0
				}
				img.Pix[o+c] = unitToByte(pix[src*hw+y*shape.W+x])
			}
			img.Pix[o+3] = 255
		}
	}
	return img, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// classFolders returns a file-system-safe, distinct folder name per class:
// the name with unsafe characters replaced by "_", or the label number for
// an empty name, "_" before a leading dot; names that still collide get a
// "-<label>" suffix.
func classFolders(classes []string) []string {
	out := make([]string, len(classes))
	seen := map[string]int{}
	for i, c := range classes {
		name := unsafeName.ReplaceAllString(c, "_")
		if name == "" || name == "." || name == ".." {
			name = fmt.Sprint(i)
		} else if name[0] == '.' { // hidden folders are skipped by readers
			name = "_" + name
		}
		out[i] = name
		seen[name]++
	}
	for i, name := range out {
		if seen[name] > 1 {
			out[i] = fmt.Sprintf("%s-%d", name, i)
		}
	}
	return out
}

// WritePNGFolder writes s as dir/<class>/<index>.png (index zero-padded,
// the image's position in s; <class> the class name made safe for file
// systems, see Save for keeping the label order), for people to look at and for
// ReadImageFolder with Size 0 to read back (then in class order). Each file
// is written atomically. Pixels are rounded to 8 bits. Progress gets one
// report per image.
func WritePNGFolder(dir string, s *Set, rep progress.Reporter) error {
	n, _, _, _, err := s.Images.NCHW()
	if err != nil {
		return err
	}
	if n != len(s.Labels) {
		return formatErr(s.Name, -1, ErrCount, "%d images but %d labels", n, len(s.Labels))
	}
	rep = progress.Or(rep)
	digits := len(fmt.Sprint(max(n-1, 0)))
	folders := classFolders(s.Classes)
	for i := 0; i < n; i++ {
		img, err := CHWToImage(s.Image(i), s.Shape())
		if err != nil {
			return err
		}
		folder := fmt.Sprint(s.Labels[i])
		if l := s.Labels[i]; l >= 0 && l < len(folders) {
			folder = folders[l]
		}
		p := filepath.Join(dir, folder, fmt.Sprintf("%0*d.png", digits, i))
		if err := safefile.Write(p, func(w io.Writer) error { return png.Encode(w, img) }); err != nil {
			return err
		}
		rep.Report("write png", i+1, n, "")
	}
	return nil
}

// NPY file names: the images go to path (ending ".npy"); labels and class
// names go beside it.
func npyPaths(path string) (images, labels, classes string) {
	base := strings.TrimSuffix(path, ".npy")
	return base + ".npy", base + ".labels.npy", base + ".classes.txt"
}

// WriteNPY writes s as three files, each atomically: path (X.npy, the
// images as little-endian float32 of shape (N, C, H, W)), X.labels.npy (the
// labels as int64, shape (N,)) and X.classes.txt (one class name per line).
// Unlike the binary records this keeps float32 pixels exactly, so an
// adversarial set read back with ReadNPY is bit-identical. NumPy reads both
// arrays with numpy.load.
func WriteNPY(path string, s *Set) error {
	n, _, _, _, err := s.Images.NCHW()
	if err != nil {
		return err
	}
	if n != len(s.Labels) {
		return formatErr(s.Name, -1, ErrCount, "%d images but %d labels", n, len(s.Labels))
	}
	ip, _, _ := npyPaths(path)
	if err := npy.WriteFile(ip, s.Images); err != nil {
		return err
	}
	return WriteNPYLabels(path, s.Labels, s.Classes)
}

// WriteNPYLabels writes, each atomically, the two files WriteNPY puts
// beside the images at path (X.npy): X.labels.npy and X.classes.txt. With
// the images written by other means (e.g. npy.ConcatFiles), they make
// the set ReadNPY reads.
func WriteNPYLabels(path string, labels []int, classes []string) error {
	_, lp, cp := npyPaths(path)
	if err := npy.WriteIntsFile(lp, labels); err != nil {
		return err
	}
	return writeClasses(cp, classes, false)
}

// ReadNPY reads a set written by WriteNPY (path is X.npy). The images must
// be 4-dimensional; the labels file must hold N labels in range of the
// classes file. A missing classes file gives classes named "0", "1", ...
// up to the largest label.
func ReadNPY(path string) (*Set, error) { return ReadNPYRange(path, 0, -1) }

// ReadNPYRange reads images lo..hi-1 (hi < 0: to the last) of the set
// ReadNPY reads, with their labels, seeking past the other images
// (npy.ReadRows); the labels are read and checked whole.
func ReadNPYRange(path string, lo, hi int) (*Set, error) {
	labels, classes, err := ReadNPYLabels(path)
	if err != nil {
		return nil, err
	}
	ip, _, _ := npyPaths(path)
	if hi < 0 {
		hi = len(labels)
	}
	t, err := npy.ReadRowsFile(ip, lo, hi)
	if err != nil {
		return nil, formatErr(ip, -1, err, "read images")
	}
	return &Set{Images: t, Labels: labels[lo:hi], Classes: classes, Name: strings.TrimSuffix(filepath.Base(ip), ".npy")}, nil
}

// ReadNPYLabels reads the labels and classes of the set ReadNPY reads,
// checked as ReadNPY checks them against the images' header, without
// reading the images.
func ReadNPYLabels(path string) (labels []int, classes []string, err error) {
	ip, lp, cp := npyPaths(path)
	h, err := npy.ReadHeaderFile(ip)
	if err != nil {
		return nil, nil, formatErr(ip, -1, err, "read images")
	}
	if len(h.Shape) != 4 {
		return nil, nil, formatErr(ip, -1, ErrShape, "images must be (N, C, H, W), got %v", h.Shape)
	}
	n := h.Shape[0]
	labels, err = npy.ReadIntsFile(lp)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
		return nil, nil, formatErr(lp, -1, err, "read labels")
	}
	if len(labels) != n {
		return nil, nil, formatErr(lp, -1, ErrCount, "%d labels for %d images", len(labels), n)
	}
	if _, err := os.Stat(cp); err == nil {
		if classes, err = readClassFile(cp); err != nil {
			return nil, nil, err
		}
	} else if errors.Is(err, os.ErrNotExist) {
		top := -1
		for _, l := range labels {
			top = max(top, l)
		}
		if top > 1<<16 {
			return nil, nil, formatErr(lp, -1, ErrLabel, "label %d and no %s", top, filepath.Base(cp))
		}
		for i := 0; i <= top; i++ {
			classes = append(classes, fmt.Sprint(i))
		}
	} else {
		return nil, nil, err
	}
	for i, l := range labels {
		if l < 0 || l >= len(classes) {
			return nil, nil, formatErr(lp, i, ErrLabel, "label %d, %d classes", l, len(classes))
		}
	}
	return labels, classes, nil
}
