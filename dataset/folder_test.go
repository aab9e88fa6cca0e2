package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAreaWeights(t *testing.T) {
	tests := []struct {
		n, m int
		want [][]tap
	}{
		// 7 -> 2: output 0 covers [0, 3.5): pixels 0..2 fully, 3 half.
		{4, 2, [][]tap{{{0, 0.5}, {1, 0.5}}, {{2, 0.5}, {3, 0.5}}}},
		{7, 2, [][]tap{{{0, 1 / 3.5}, {1, 1 / 3.5}, {2, 1 / 3.5}, {3, 0.5 / 3.5}}, {{3, 0.5 / 3.5}, {4, 1 / 3.5}, {5, 1 / 3.5}, {6, 1 / 3.5}}}},
		{2, 4, [][]tap{{{0, 1}}, {{0, 1}}, {{1, 1}}, {{1, 1}}}},
		{3, 3, [][]tap{{{0, 1}}, {{1, 1}}, {{2, 1}}}},
	}
	for _, tc := range tests {
		got := areaWeights(tc.n, tc.m)
		if len(got) != len(tc.want) {
			t.Fatalf("%d->%d: %v", tc.n, tc.m, got)
		}
		for o := range got {
			var sum float64
			for k, tp := range got[o] {
				sum += float64(tp.w)
				if k >= len(tc.want[o]) || tp.i != tc.want[o][k].i || math.Abs(float64(tp.w-tc.want[o][k].w)) > 1e-6 {
					t.Errorf("%d->%d output %d: %v, want %v", tc.n, tc.m, o, got[o], tc.want[o])
					break
				}
			}
			if math.Abs(sum-1) > 1e-6 {
				t.Errorf("%d->%d output %d: weights sum to %v", tc.n, tc.m, o, sum)
			}
		}
	}
}

// naiveArea computes one output pixel of an area-average resize of a
// square plane by integrating over a fine grid, a reference independent of
// areaWeights.
func naiveArea(plane []float64, n, m, oy, ox int) float64 {
	const sub = 64
	scale := float64(n) / float64(m)
	var sum float64
	for a := 0; a < sub; a++ {
		for b := 0; b < sub; b++ {
			y := (float64(oy) + (float64(a)+0.5)/sub) * scale
			x := (float64(ox) + (float64(b)+0.5)/sub) * scale
			sum += plane[int(y)*n+int(x)]
		}
	}
	return sum / sub / sub
}

func TestImageToCHW(t *testing.T) {
	// A 10x7 image: a 7x7 square is cut from the middle (x 1..7) and
	// resized to 3x3; compare with numerical integration.
	img := image.NewNRGBA(image.Rect(0, 0, 10, 7))
	for y := 0; y < 7; y++ {
		for x := 0; x < 10; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 25), uint8(y * 30), uint8((x * y) % 256), 255})
		}
	}
	dst := make([]float32, 3*3*3)
	if err := ImageToCHW(dst, img, 3); err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 3; c++ {
		plane := make([]float64, 49)
		for y := 0; y < 7; y++ {
			for x := 0; x < 7; x++ {
				px := img.NRGBAAt(x+1, y)
				plane[y*7+x] = float64([]uint8{px.R, px.G, px.B}[c]) / 255
			}
		}
		for oy := 0; oy < 3; oy++ {
			for ox := 0; ox < 3; ox++ {
				want := naiveArea(plane, 7, 3, oy, ox)
				if got := float64(dst[(c*3+oy)*3+ox]); math.Abs(got-want) > 2e-3 {
					t.Errorf("c%d (%d,%d) = %.4f, want %.4f", c, oy, ox, got, want)
				}
			}
		}
	}
	// Size 0 copies exactly; gray is replicated.
	g := image.NewGray(image.Rect(0, 0, 2, 1))
	g.Pix = []uint8{10, 200}
	got := make([]float32, 6)
	if err := ImageToCHW(got, g, 0); err != nil {
		t.Fatal(err)
	}
	want := []float32{10.0 / 255, 200.0 / 255, 10.0 / 255, 200.0 / 255, 10.0 / 255, 200.0 / 255}
	if !equalF32(got, want) {
		t.Errorf("gray copy = %v, want %v", got, want)
	}
	if err := ImageToCHW(make([]float32, 5), g, 0); err == nil {
		t.Error("wrong dst length: no error")
	}
}

func writePNG(t testing.TB, p string, w, h int, fill uint8) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = fill
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeJPEG(t testing.TB, p string, w, h int, fill uint8) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = fill
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadImageFolder(t *testing.T) {
	root := t.TempDir()
	writePNG(t, filepath.Join(root, "train", "zebra", "b.png"), 12, 8, 255)
	writePNG(t, filepath.Join(root, "train", "zebra", "a.png"), 8, 8, 255)
	writeJPEG(t, filepath.Join(root, "train", "ant", "x.JPG"), 9, 9, 0)
	os.WriteFile(filepath.Join(root, "train", "ant", ".DS_Store"), []byte("junk"), 0o644)
	writeJPEG(t, filepath.Join(root, "val", "ant", "y.jpeg"), 30, 20, 0)
	writePNG(t, filepath.Join(root, "val", "zebra", "z.png"), 16, 16, 255)

	opts := DefaultLoadOptions()
	opts.Size = 4
	train, test, err := LoadContext(context.Background(), root, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(train.Classes, []string{"ant", "zebra"}) || !reflect.DeepEqual(train.Labels, []int{0, 1, 1}) {
		t.Errorf("classes %v labels %v", train.Classes, train.Labels)
	}
	if train.Shape() != (Shape{3, 4, 4}) || test.Len() != 2 {
		t.Errorf("shape %v, %d test", train.Shape(), test.Len())
	}
	for i, want := range []float32{0, 1, 1} {
		for _, v := range train.Image(i) {
			if math.Abs(float64(v-want)) > 2.0/255 {
				t.Fatalf("image %d has value %v, want about %v", i, v, want)
			}
		}
	}

	// Error cases, each naming the culprit.
	tests := []struct {
		name   string
		setup  func(dir string)
		size   int
		want   error
		naming string
	}{
		{"no classes", func(d string) { os.MkdirAll(d, 0o755) }, 4, ErrEmpty, ""},
		{"empty class", func(d string) {
			writePNG(t, filepath.Join(d, "a", "1.png"), 2, 2, 0)
			os.MkdirAll(filepath.Join(d, "b"), 0o755)
		}, 4, ErrEmpty, "b"},
		{"non-image file", func(d string) {
			writePNG(t, filepath.Join(d, "a", "1.png"), 2, 2, 0)
			os.WriteFile(filepath.Join(d, "a", "notes.txt"), []byte("hi"), 0o644)
		}, 4, ErrNotImage, "notes.txt"},
		{"corrupt image", func(d string) {
			writePNG(t, filepath.Join(d, "a", "1.png"), 2, 2, 0)
			os.WriteFile(filepath.Join(d, "a", "2.png"), []byte("\x89PNG garbage"), 0o644)
		}, 4, ErrNotImage, "2.png"},
		{"mixed sizes", func(d string) {
			writePNG(t, filepath.Join(d, "a", "1.png"), 2, 2, 0)
			writePNG(t, filepath.Join(d, "a", "2.png"), 3, 2, 0)
		}, 0, ErrShape, "2.png"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "set")
			tc.setup(d)
			_, err := ReadImageFolder(context.Background(), d, FolderOptions{Size: tc.size})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.naming) {
				t.Errorf("err = %q does not name %q", err, tc.naming)
			}
		})
	}
}

func TestReadImageArchive(t *testing.T) {
	png1 := func(fill uint8, w, h int) []byte {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := range img.Pix {
			img.Pix[i] = fill
		}
		var b bytes.Buffer
		png.Encode(&b, img)
		return b.Bytes()
	}
	files := map[string][]byte{
		"imagenette2-160/train/n2/b.png": png1(255, 6, 4),
		"imagenette2-160/train/n1/a.png": png1(0, 4, 6),
		"imagenette2-160/val/n1/c.png":   png1(0, 4, 4),
		"imagenette2-160/noise.csv":      []byte("a,b"),
	}
	order := []string{"imagenette2-160/noise.csv", "imagenette2-160/val/n1/c.png", "imagenette2-160/train/n2/b.png", "imagenette2-160/train/n1/a.png"}
	arch := gz(t, tarFile(t, files, order))
	p := filepath.Join(t.TempDir(), "imagenette2-160.tgz")
	os.WriteFile(p, arch, 0o644)
	opts := DefaultLoadOptions()
	opts.Size = 2
	train, test, err := LoadContext(context.Background(), filepath.Dir(p), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(train.Classes, []string{"n1", "n2"}) || !reflect.DeepEqual(train.Labels, []int{0, 1}) || test.Len() != 1 {
		t.Errorf("classes %v labels %v test %d", train.Classes, train.Labels, test.Len())
	}
	if train.Image(1)[0] != 1 || train.Image(0)[0] != 0 {
		t.Errorf("pixels %v / %v", train.Image(0)[0], train.Image(1)[0])
	}
	if train.Name != "imagenette2-160/train" {
		t.Errorf("name %q", train.Name)
	}
	// A corrupt member names the member.
	files["imagenette2-160/train/n2/b.png"] = []byte("\x89PNG\r\n\x1a\n broken")
	_, _, err = ReadImageArchive(context.Background(), bytes.NewReader(gz(t, tarFile(t, files, order))), "x.tgz", FolderOptions{Size: 2})
	if !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), "x.tgz:imagenette2-160/train/n2/b.png") {
		t.Errorf("corrupt member: err = %v", err)
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResizerReuse checks that a Resizer reused across input sizes gives
// the same result as a fresh conversion each time.
func TestResizerReuse(t *testing.T) {
	r := NewResizer(5)
	for k, sz := range [][2]int{{17, 11}, {8, 8}, {17, 11}, {40, 3}, {5, 5}} {
		img := image.NewRGBA(image.Rect(0, 0, sz[0], sz[1]))
		for i := range img.Pix {
			img.Pix[i] = uint8(i*13 + k)
		}
		got, want := make([]float32, 75), make([]float32, 75)
		if err := r.Convert(got, img); err != nil {
			t.Fatal(err)
		}
		if err := ImageToCHW(want, img, 5); err != nil {
			t.Fatal(err)
		}
		if !equalF32(got, want) {
			t.Errorf("input %v: reused Resizer differs from a fresh one", sz)
		}
	}
}

// TestFolderFixture reads testdata/folder, made from records 0-3 of the
// ImageNet-10 sample (see testdata/README.md), at its own size and halved,
// and compares with those records: PNGs exactly, JPEGs (quality 95) within
// JPEG error; halving is a 2x2 block mean. The image folder is thereby
// checked end to end: file names to classes, decoding, RGB planes, resize.
func TestFolderFixture(t *testing.T) {
	_, ref, err := Load("sample:imagenet10")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 32} {
		opts := DefaultLoadOptions()
		opts.Size = size
		train, val, err := LoadContext(context.Background(), "testdata/folder", opts)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(train.Classes, []string{"cassette player", "chain saw", "tench"}) || val.Len() != 1 {
			t.Fatalf("classes %q, %d val", train.Classes, val.Len())
		}
		// Sorted by class: cassette player (rec1.png), chain saw (rec2.jpg), tench (rec0.jpg).
		cases := []struct {
			got  []float32
			rec  int
			jpeg bool
		}{{train.Image(0), 1, false}, {train.Image(1), 2, true}, {train.Image(2), 0, true}, {val.Image(0), 3, false}}
		for _, c := range cases {
			want := ref.Image(c.rec)
			if size == 32 {
				want = halve(want, 3, 64)
			}
			var sum, worst float64
			for i, v := range c.got {
				d := math.Abs(float64(v - want[i]))
				sum += d
				worst = max(worst, d)
			}
			mae := sum / float64(len(want)) * 255
			if !c.jpeg && worst > 1e-6 {
				t.Errorf("size %d, PNG of record %d: max error %v", size, c.rec, worst*255)
			}
			// JPEG at quality 95 with 4:2:0 chroma: about 3.4 levels at
			// 64 px; a different image is off by tens of levels.
			if c.jpeg && mae > 5 {
				t.Errorf("size %d, JPEG of record %d: mean abs error %.2f levels", size, c.rec, mae)
			}
		}
	}
}

// halve returns the 2x2 block means of c planes of n x n.
func halve(img []float32, c, n int) []float32 {
	m := n / 2
	out := make([]float32, c*m*m)
	for ch := 0; ch < c; ch++ {
		p := img[ch*n*n:]
		for y := 0; y < m; y++ {
			for x := 0; x < m; x++ {
				out[(ch*m+y)*m+x] = (p[2*y*n+2*x] + p[2*y*n+2*x+1] + p[(2*y+1)*n+2*x] + p[(2*y+1)*n+2*x+1]) / 4
			}
		}
	}
	return out
}

// TestImageFolderRanges checks that the ranges of an opened folder, read
// apart, are the images and labels of ReadImageFolder, and that a range
// outside the folder is an error.
func TestImageFolderRanges(t *testing.T) {
	root := t.TempDir()
	for i, c := range []string{"b", "a", "c"} {
		for j := range 3 {
			writePNG(t, filepath.Join(root, c, fmt.Sprintf("%d.png", 9-j)), 5+j, 6, uint8(40*i+10*j))
		}
	}
	opts := FolderOptions{Size: 4}
	whole, err := ReadImageFolder(context.Background(), root, opts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenImageFolder(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 9 || !reflect.DeepEqual(f.Classes(), []string{"a", "b", "c"}) {
		t.Fatalf("%d images of classes %v, want 9 of a, b, c", f.Len(), f.Classes())
	}
	for _, r := range [][2]int{{0, 9}, {0, 1}, {2, 5}, {8, 9}} {
		part, err := f.Read(context.Background(), r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		want := whole.Subset([]int{r[0]}).Images.Shape
		want[0] = r[1] - r[0]
		if !reflect.DeepEqual(part.Images.Shape, want) || !reflect.DeepEqual(part.Labels, whole.Labels[r[0]:r[1]]) {
			t.Fatalf("images %v: shape %v labels %v, want %v and %v", r, part.Images.Shape, part.Labels, want, whole.Labels[r[0]:r[1]])
		}
		if !reflect.DeepEqual(part.Images.Data, whole.Images.Batch(r[0], r[1]).Data) {
			t.Errorf("images %v differ from ReadImageFolder's", r)
		}
	}
	for _, r := range [][2]int{{-1, 2}, {3, 3}, {5, 10}} {
		if _, err := f.Read(context.Background(), r[0], r[1]); err == nil {
			t.Errorf("images %v of 9: no error", r)
		}
	}
}
