package dataset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// tarFolder packs a folder's files under prefix/ in sorted path order.
func tarFolder(t *testing.T, root, prefix string) []byte {
	t.Helper()
	files := map[string][]byte{}
	var order []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			name := prefix + "/" + filepath.ToSlash(rel)
			files[name] = mustRead(t, p)
			order = append(order, name)
		}
		return nil
	})
	sort.Strings(order)
	return gz(t, tarFile(t, files, order))
}

func TestConvertImages(t *testing.T) {
	ctx := context.Background()
	arch := filepath.Join(t.TempDir(), "fixture.tgz")
	if err := os.WriteFile(arch, tarFolder(t, "testdata/folder", "fixture"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"testdata/folder", arch} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			out := t.TempDir()
			nTrain, nTest, err := ConvertImages(ctx, src, out, 32, nil)
			if err != nil {
				t.Fatal(err)
			}
			if nTrain != 3 || nTest != 1 {
				t.Errorf("wrote %d + %d images", nTrain, nTest)
			}
			gotTrain, gotTest, err := Load(out)
			if err != nil {
				t.Fatal(err)
			}
			wantTrain, wantTest, err := LoadContext(ctx, src, LoadOptions{Size: 32})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range [][2]*Set{{gotTrain, wantTrain}, {gotTest, wantTest}} {
				Quantize(p[1])
				if !equalF32(p[0].Images.Data, p[1].Images.Data) || !reflect.DeepEqual(p[0].Labels, p[1].Labels) || !reflect.DeepEqual(p[0].Classes, p[1].Classes) {
					t.Errorf("%s: streamed conversion differs from the in-memory reader", p[1].Name)
				}
			}
		})
	}

	// Errors leave no output behind.
	bad := t.TempDir()
	writePNG(t, filepath.Join(bad, "train", "a", "1.png"), 4, 4, 10)
	writePNG(t, filepath.Join(bad, "val", "b", "2.png"), 4, 4, 10)
	out := t.TempDir()
	if _, _, err := ConvertImages(ctx, bad, out, 2, nil); !errors.Is(err, ErrLabel) {
		t.Errorf("val class missing from train: err = %v", err)
	}
	os.Rename(filepath.Join(bad, "val", "b"), filepath.Join(bad, "val", "a"))
	os.WriteFile(filepath.Join(bad, "val", "a", "3.png"), []byte("\x89PNG broken"), 0o644)
	if _, _, err := ConvertImages(ctx, bad, out, 2, nil); !errors.Is(err, ErrNotImage) {
		t.Errorf("corrupt image: err = %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("failed conversions left %d files", len(ents))
	}
	if _, _, err := ConvertImages(ctx, bad, out, 0, nil); err == nil {
		t.Error("size 0 accepted")
	}
}
