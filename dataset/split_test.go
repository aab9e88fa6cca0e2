package dataset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestOpenSplit checks that OpenSplit reads each form it opens as
// LoadContext reads it whole (every image, then a class-balanced subset
// and a shuffled order, image by image), and refuses the forms read whole.
func TestOpenSplit(t *testing.T) {
	ctx := context.Background()
	train, test, err := Load("sample:imagenet10")
	if err != nil {
		t.Fatal(err)
	}
	train, test = train.Head(12), test.Head(10)
	save := func(f Format) func(t *testing.T) string {
		return func(t *testing.T) string {
			dir := t.TempDir()
			if err := Save(dir, train, test, f, nil); err != nil {
				t.Fatal(err)
			}
			return dir
		}
	}
	cases := []struct {
		name  string
		make  func(t *testing.T) string
		whole bool // OpenSplit refuses with ErrWholeOnly
	}{
		{"npy", save(FormatNPY), false},
		{"png folders", save(FormatPNG), false},
		{"uncompressed records", func(t *testing.T) string {
			dir := t.TempDir()
			for name, s := range map[string]*Set{"train_64x64.bin": train, "val_64x64.bin": test} {
				if err := WriteBinaryFile(filepath.Join(dir, name), s); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeClasses(filepath.Join(dir, "classes.txt"), train.Classes, true); err != nil {
				t.Fatal(err)
			}
			return dir
		}, false},
		{"cifar10 batches", func(t *testing.T) string {
			dir := t.TempDir()
			writeCIFARDir(t, dir)
			return dir
		}, false},
		{"imagenet val layout", func(t *testing.T) string {
			dir := t.TempDir()
			root := filepath.Join(dir, "in")
			vc := imageNetFixture(t, root)
			writeText(t, filepath.Join(root, ImageNetValSolution), solution(vc))
			return root
		}, false},
		{"gzipped records", save(FormatBinary), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := c.make(t)
			opts := DefaultLoadOptions()
			if c.name == "imagenet val layout" {
				opts.Size = 16
			}
			wantTrain, wantTest, err := LoadContext(ctx, dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range []struct {
				split string
				want  *Set
			}{{"train", wantTrain}, {"test", wantTest}} {
				s, err := OpenSplit(ctx, dir, part.split, opts)
				if c.whole || (c.name == "cifar10 batches" && part.split == "train") {
					if !errors.Is(err, ErrWholeOnly) {
						t.Fatalf("%s: err %v, want ErrWholeOnly", part.split, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", part.split, err)
				}
				all := make([]int, s.Len())
				for i := range all {
					all[i] = i
				}
				sub := []int{s.Len() - 1, 0, 1, 2, s.Len() / 2}
				for _, idx := range [][]int{all, sub} {
					got, err := s.Read(ctx, idx)
					if err != nil {
						t.Fatalf("%s: Read %v: %v", part.split, idx, err)
					}
					want := part.want.Subset(idx)
					if got.Name != want.Name || !reflect.DeepEqual(got.Classes, want.Classes) || !reflect.DeepEqual(got.Labels, want.Labels) ||
						!equalF32(got.Images.Data, want.Images.Data) || !reflect.DeepEqual(got.Images.Shape, want.Images.Shape) {
						t.Errorf("%s: Read %v: %s %v %v, want %s %v %v (or other pixels)", part.split, idx,
							got.Name, got.Classes, got.Labels, want.Name, want.Classes, want.Labels)
					}
				}
				if _, err := s.Read(ctx, []int{s.Len()}); err == nil {
					t.Errorf("%s: index %d of %d read", part.split, s.Len(), s.Len())
				}
			}
		})
	}
	if _, err := OpenSplit(ctx, "sample:cifar10", "test", DefaultLoadOptions()); !errors.Is(err, ErrWholeOnly) {
		t.Errorf("sample: err %v, want ErrWholeOnly", err)
	}
	if _, err := OpenSplit(ctx, t.TempDir(), "val", DefaultLoadOptions()); err == nil {
		t.Error("split val accepted")
	}
}

// TestOpenRecordFileErrors checks the errors of malformed record files.
func TestOpenRecordFileErrors(t *testing.T) {
	sh := Shape{C: 3, H: 2, W: 2}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrEmpty},
		{"truncated", records(2, sh, 1)[:sh.RecordSize()+3], nil},
		{"label out of range", records(2, sh, 1, 7), ErrLabel},
		{"gzipped", gz(t, records(2, sh, 1)), ErrWholeOnly},
	} {
		p := filepath.Join(dir, c.name+".bin")
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := OpenRecordFile(p, sh, []string{"a", "b", "c"})
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}
