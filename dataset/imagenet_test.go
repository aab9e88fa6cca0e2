package dataset

import (
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fixture's classes, sorted as the training folders are: tench,
// goldfish, kit fox. Each class's images are one solid color, so a
// label can be checked against the pixels it came with.
var (
	fixtureWNIDs  = []string{"n01440764", "n01443537", "n02119789"}
	fixtureColors = []color.RGBA{{220, 30, 30, 255}, {30, 220, 30, 255}, {30, 30, 220, 255}}
)

// writeColorJPEG writes a w x h JPEG of one color.
func writeColorJPEG(t *testing.T, path string, w, h int, c color.RGBA) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := jpeg.Encode(f, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
}

func writeText(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// imageNetFixture lays out root/train/<wnid>/*.JPEG (two images per class,
// of different non-square sizes) and root/val/ILSVRC2012_val_0000000k.JPEG
// for k = 1..4, whose classes are valClasses (indices into fixtureWNIDs).
// It returns the val classes for the label files.
func imageNetFixture(t *testing.T, root string) []int {
	for c, w := range fixtureWNIDs {
		writeColorJPEG(t, filepath.Join(root, "train", w, w+"_1.JPEG"), 40, 30, fixtureColors[c])
		writeColorJPEG(t, filepath.Join(root, "train", w, w+"_2.JPEG"), 24, 36, fixtureColors[c])
	}
	valClasses := []int{2, 0, 1, 2}
	for k, c := range valClasses {
		writeColorJPEG(t, filepath.Join(root, "val", valName(k+1)), 50, 40, fixtureColors[c])
	}
	return valClasses
}

func valName(k int) string {
	return "ILSVRC2012_val_0000000" + string(rune('0'+k)) + ".JPEG"
}

// solution writes LOC_val_solution.csv rows for the val images.
func solution(valClasses []int) string {
	var b strings.Builder
	b.WriteString("ImageId,PredictionString\n")
	for k, c := range valClasses {
		b.WriteString(strings.TrimSuffix(valName(k+1), ".JPEG") + "," + fixtureWNIDs[c] + " 1 2 30 40 " + fixtureWNIDs[c] + " 5 6 7 8\n")
	}
	return b.String()
}

// The devkit's ILSVRC2012_IDs of the fixture: kit fox is 1 (as in the
// devkit), tench 2, goldfish 3: an order that is not sorted by WNID.
const devkitSynsets = "n02119789 kit fox\nn01440764 tench\nn01443537 goldfish\n"

func devkitTruth(valClasses []int) string {
	id := map[int]string{2: "1", 0: "2", 1: "3"}
	var b strings.Builder
	for _, c := range valClasses {
		b.WriteString(id[c] + "\n")
	}
	return b.String()
}

func TestImageNetLayout(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// root is the data folder below the temporary directory; labels
		// writes the label files, given the temporary directory.
		root   string
		labels func(t *testing.T, tmp string, valClasses []int)
		want   error // nil: loads, labels checked
	}{
		{"LOC_val_solution.csv beside train/", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValSolution), solution(vc))
		}, nil},
		{"Kaggle layout: the CSV three levels up", "ILSVRC/Data/CLS-LOC", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, ImageNetValSolution), solution(vc))
		}, nil},
		{"devkit ground truth and synsets", "in", func(t *testing.T, tmp string, vc []int) {
			data := filepath.Join(tmp, "in", "ILSVRC2012_devkit_t12", "data")
			writeText(t, filepath.Join(data, ImageNetValGroundTruth), devkitTruth(vc))
			writeText(t, filepath.Join(data, ImageNetDevkitSynsets), devkitSynsets)
		}, nil},
		{"no label file", "in", func(*testing.T, string, []int) {}, ErrEmpty},
		{"an image without a label", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValSolution), solution(vc[:3]))
		}, ErrLabel},
		{"a class with no training folder", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValSolution), strings.Replace(solution(vc), "n01443537", "n09999999", -1))
		}, ErrLabel},
		{"a malformed CSV row", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValSolution), solution(vc)+"ILSVRC2012_val_00000009 n01440764\n")
		}, ErrUnknownFormat},
		{"ground truth without synsets", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValGroundTruth), devkitTruth(vc))
		}, ErrEmpty},
		{"synsets sorted by WNID (LOC_synset_mapping.txt)", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValGroundTruth), devkitTruth(vc))
			writeText(t, filepath.Join(tmp, "in", ImageNetDevkitSynsets), "n01440764 tench\nn01443537 goldfish\nn02119789 kit fox\n")
		}, ErrUnknownFormat},
		{"an ILSVRC2012_ID out of range", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValGroundTruth), "1\n2\n4\n1\n")
			writeText(t, filepath.Join(tmp, "in", ImageNetDevkitSynsets), devkitSynsets)
		}, ErrLabel},
		{"ground truth shorter than the images", "in", func(t *testing.T, tmp string, vc []int) {
			writeText(t, filepath.Join(tmp, "in", ImageNetValGroundTruth), "1\n2\n")
			writeText(t, filepath.Join(tmp, "in", ImageNetDevkitSynsets), devkitSynsets)
		}, ErrLabel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			root := filepath.Join(tmp, c.root)
			vc := imageNetFixture(t, root)
			c.labels(t, tmp, vc)
			train, test, err := LoadContext(ctx, root, LoadOptions{Size: 16})
			if c.want != nil {
				var fe *FormatError
				if !errors.Is(err, c.want) || !errors.As(err, &fe) {
					t.Fatalf("error %v, want a *FormatError wrapping %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(train.Classes, fixtureWNIDs) || !slices.Equal(test.Classes, fixtureWNIDs) {
				t.Fatalf("classes %v and %v, want %v", train.Classes, test.Classes, fixtureWNIDs)
			}
			if train.Shape() != (Shape{3, 16, 16}) || test.Shape() != (Shape{3, 16, 16}) || train.Len() != 6 || test.Len() != 4 {
				t.Fatalf("train %d x %v, test %d x %v", train.Len(), train.Shape(), test.Len(), test.Shape())
			}
			// Sorted by (class, file): 0, 1, 2, 2.
			if want := []int{0, 1, 2, 2}; !slices.Equal(test.Labels, want) {
				t.Errorf("test labels %v, want %v", test.Labels, want)
			}
			for _, s := range []*Set{train, test} {
				for i, l := range s.Labels {
					checkColor(t, s, i, fixtureColors[l])
				}
			}
		})
	}
}

// checkColor checks that image i of s is (near) the solid color c at its
// center: its label came with its pixels.
func checkColor(t *testing.T, s *Set, i int, c color.RGBA) {
	t.Helper()
	sh := s.Shape()
	img := s.Image(i)
	center := (sh.H/2)*sh.W + sh.W/2
	for ch, want := range []uint8{c.R, c.G, c.B} {
		got := img[ch*sh.H*sh.W+center] * 255
		if d := got - float32(want); d > 12 || d < -12 {
			t.Errorf("%s image %d channel %d: %.0f, want about %d (label %d)", s.Name, i, ch, got, want, s.Labels[i])
		}
	}
}
