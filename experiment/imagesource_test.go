package experiment

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/npy"
)

// saveAttackSet saves set's images as an adversarial set in dir (FGSM's
// name and options, figures of no attack).
func saveAttackSet(dir string, set *dataset.Set) error {
	a, err := attack.NewFGSM(attack.DefaultFGSMOptions())
	if err != nil {
		return err
	}
	n := set.Len()
	r := &attack.Result{Adv: set.Images, Dissim: make([]float64, n), LInf: make([]float64, n),
		CleanPred: make([]int, n), AdvPred: make([]int, n), Success: make([]bool, n)}
	s, err := attack.NewSet(a, set.Labels, r)
	if err != nil {
		return err
	}
	return s.Save(dir)
}

// TestImageSourceRanges writes 30 sample images in every form OpenImages
// reads by range (.npy with and without labels, .bin records, a PNG
// folder, an adversarial set's directory and its adv.npy) and one it reads whole (.bin.gz), and checks that ranges read
// apart are the images, labels and classes of ReadImages, and that a
// range outside the images is an error.
func TestImageSourceRanges(t *testing.T) {
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	set := test.Head(30)
	dataset.Quantize(set) // 8-bit values, so that every form holds them exactly
	dir := t.TempDir()
	forms := []struct {
		name  string
		write func(path string) error
	}{
		{"labeled.npy", func(p string) error { return dataset.WriteNPY(p, set) }},
		{"bare.npy", func(p string) error { return npy.WriteFile(p, set.Images) }},
		{"records.bin", func(p string) error { return dataset.WriteBinaryFile(p, set) }},
		{"records.bin.gz", func(p string) error { return dataset.WriteBinaryFile(p, set) }},
		{"folder", func(p string) error { return dataset.WritePNGFolder(p, set, nil) }},
		{"attack set", func(p string) error { return saveAttackSet(p, set) }},
		{"attack set/adv.npy", func(p string) error { return saveAttackSet(filepath.Dir(p), set) }},
	}
	m := defense.Manifest{Channels: 3, Resolution: 32}
	ctx := context.Background()
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(dir, f.name)
			if err := f.write(path); err != nil {
				t.Fatal(err)
			}
			whole, bare, err := ReadImages(ctx, path, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			src, err := OpenImages(ctx, path, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if src.Len() != 30 || src.Bare() != bare {
				t.Fatalf("%d images, bare %v; want 30, %v", src.Len(), src.Bare(), bare)
			}
			for _, r := range [][2]int{{0, 30}, {0, 7}, {7, 19}, {29, 30}} {
				part, err := src.Read(ctx, r[0], r[1])
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(part.Images.Data, whole.Images.Batch(r[0], r[1]).Data) {
					t.Errorf("images %v differ from ReadImages'", r)
				}
				if !reflect.DeepEqual(part.Labels, whole.Labels[r[0]:r[1]]) || !reflect.DeepEqual(part.Classes, whole.Classes) {
					t.Errorf("images %v: labels %v classes %v, want %v and %v", r, part.Labels, part.Classes, whole.Labels[r[0]:r[1]], whole.Classes)
				}
			}
			for _, r := range [][2]int{{-1, 3}, {4, 4}, {20, 31}} {
				if _, err := src.Read(ctx, r[0], r[1]); err == nil {
					t.Errorf("images %v of 30: no error", r)
				}
			}
		})
	}
}
