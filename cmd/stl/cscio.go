package main

import (
	"fmt"
	"image"
	_ "image/jpeg" // register JPEG for image.Decode
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// The image files of "stl csc": SPORCO-layout .npy arrays and PNG/JPEG
// images in, .npy or PNG out.

// readCSCImageSet reads the images of every path, a file (see
// readCSCImages) or a folder of .npy, .png and .jpg files, into one
// (N, C, H, W) batch; all images must have one shape.
func readCSCImageSet(paths []string) (*tensor.Tensor, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".png", ".jpg", ".jpeg", ".npy":
				if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
	}
	if len(files) == 0 {
		return nil, usagef("--images: no .npy, .png or .jpg files")
	}
	var parts []*tensor.Tensor
	n := 0
	for _, p := range files {
		t, err := readCSCImages(p)
		if err != nil {
			return nil, err
		}
		if len(parts) > 0 && !tensor.SameShape(t.Sample(0), parts[0].Sample(0)) {
			return nil, fmt.Errorf("%s: images of shape %v, earlier ones %v", p, t.Shape[1:], parts[0].Shape[1:])
		}
		parts = append(parts, t)
		n += t.Shape[0]
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	out := tensor.New(append([]int{n}, parts[0].Shape[1:]...)...)
	off := 0
	for _, p := range parts {
		off += copy(out.Data[off:], p.Data)
	}
	return out, nil
}

// readCSCImages reads a SPORCO-layout .npy or a PNG/JPEG image into a
// (N, C, H, W) batch.
func readCSCImages(path string) (*tensor.Tensor, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".npy":
		t, err := npy.ReadFile(path)
		if err != nil {
			return nil, err
		}
		b, err := csc.ImagesFromSPORCO(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return b, nil
	case ".png", ".jpg", ".jpeg":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		img, _, err := image.Decode(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		b := img.Bounds()
		t := tensor.New(1, 3, b.Dy(), b.Dx())
		if err := dataset.ImageToCHW(t.Data, img, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return t, nil
	}
	return nil, usagef("%s: want a .npy, .png, .jpg or .jpeg file", path)
}

// writeCSCImages writes a (N, C, H, W) batch as SPORCO-layout .npy ((H, W, C)
// for one image) or, for one image, as PNG.
func writeCSCImages(path string, t *tensor.Tensor) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".npy":
		s, err := csc.ImagesToSPORCO(t, true)
		if err != nil {
			return err
		}
		return npy.WriteFile(path, s)
	case ".png":
		n, c, h, w, _ := t.NCHW()
		if n != 1 {
			return usagef("%s: %d images cannot go to one PNG; use .npy", path, n)
		}
		img, err := dataset.CHWToImage(t.Data, dataset.Shape{C: c, H: h, W: w})
		if err != nil {
			return err
		}
		return safefile.Write(path, func(wr io.Writer) error { return png.Encode(wr, img) })
	}
	return usagef("%s: want a .npy or .png output", path)
}
