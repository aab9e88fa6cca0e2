package experiment

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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

// TestMergeImages merges three parts of 30 sample images, labeled and bare,
// and checks that the merged files are byte for byte those WriteNPY and
// npy.WriteFile write for the whole set, and that parts disagreeing on
// labels or classes are refused without writing.
func TestMergeImages(t *testing.T) {
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	set := test.Head(30)
	sub := func(lo, hi int) *dataset.Set {
		idx := make([]int, hi-lo)
		for i := range idx {
			idx[i] = lo + i
		}
		return set.Subset(idx)
	}
	dir := t.TempDir()
	for _, bare := range []bool{false, true} {
		write := func(p string, s *dataset.Set) error {
			if bare {
				return npy.WriteFile(p, s.Images)
			}
			return dataset.WriteNPY(p, s)
		}
		name := fmt.Sprintf("bare%v", bare)
		var parts []string
		for i, r := range [][2]int{{0, 11}, {11, 11}, {11, 30}} {
			p := filepath.Join(dir, fmt.Sprintf("%s-part%d.npy", name, i))
			if err := write(p, sub(r[0], r[1])); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		want, out := filepath.Join(dir, name+"-want.npy"), filepath.Join(dir, name+"-merged.npy")
		if err := write(want, set); err != nil {
			t.Fatal(err)
		}
		m, err := MergeImages(out, parts)
		if err != nil {
			t.Fatal(err)
		}
		if m.N != 30 || m.Shape != set.Shape() {
			t.Errorf("%s: merged %d images of %v, want 30 of %v", name, m.N, m.Shape, set.Shape())
		}
		suffixes := []string{".npy", ".labels.npy", ".classes.txt"}
		if bare {
			suffixes = suffixes[:1]
			if _, err := os.Stat(strings.TrimSuffix(out, ".npy") + ".labels.npy"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: labels written for bare parts (%v)", name, err)
			}
		}
		for _, suf := range suffixes {
			g, err1 := os.ReadFile(strings.TrimSuffix(out, ".npy") + suf)
			w, err2 := os.ReadFile(strings.TrimSuffix(want, ".npy") + suf)
			if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
				t.Errorf("%s: merged %s differs from the whole set's (%v, %v)", name, suf, err1, err2)
			}
		}
	}
	// Refusals: labeled with bare, other class names, out among the parts.
	renamed := sub(0, 5)
	renamed.Classes = append([]string{"other"}, renamed.Classes[1:]...)
	other := filepath.Join(dir, "renamed.npy")
	if err := dataset.WriteNPY(other, renamed); err != nil {
		t.Fatal(err)
	}
	labeled, bareP := filepath.Join(dir, "barefalse-part0.npy"), filepath.Join(dir, "baretrue-part0.npy")
	for name, c := range map[string]struct {
		out   string
		parts []string
	}{
		"labeled and bare": {filepath.Join(dir, "x.npy"), []string{labeled, bareP}},
		"other classes":    {filepath.Join(dir, "x.npy"), []string{labeled, other}},
		"out is a part":    {labeled, []string{labeled, other}},
		"not npy":          {filepath.Join(dir, "x.bin"), []string{labeled}},
	} {
		if _, err := MergeImages(c.out, c.parts); err == nil {
			t.Errorf("%s: merged, want an error", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.npy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused merge wrote its output (%v)", err)
	}
}
