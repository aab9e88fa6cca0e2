package attack

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/npy"
)

// TestSaveMerged splits a set into parts, merges them back by rows of a
// few images (SaveMerged) and checks the files against those Save writes
// for MergeSets' set, byte for byte; then the errors of parts that do not
// merge and of a NaN in a part.
func TestSaveMerged(t *testing.T) {
	a, err := NewFGSM(DefaultFGSMOptions())
	if err != nil {
		t.Fatal(err)
	}
	whole, _, _ := fixtureSet(t, a)
	n := whole.Adv.Shape[0]
	if n < 4 {
		t.Fatalf("fixture of %d images, want at least 4", n)
	}
	dir := t.TempDir()
	cuts := []int{0, 1, n / 2, n}
	var sets []*Set
	var opened []*OpenedSet
	for i := range len(cuts) - 1 {
		lo, hi := cuts[i], cuts[i+1]
		s := &Set{Adv: whole.Adv.Batch(lo, hi).Clone(), Labels: whole.Labels[lo:hi], Meta: whole.Meta}
		m := &s.Meta
		m.Shape = s.Adv.Shape
		m.Dissim, m.LInf, m.CleanPred, m.AdvPred, m.Success = m.Dissim[lo:hi], m.LInf[lo:hi], m.CleanPred[lo:hi], m.AdvPred[lo:hi], m.Success[lo:hi]
		m.Indices = []int{}
		for k := lo; k < hi; k++ {
			m.Indices = append(m.Indices, 10+k)
		}
		p := filepath.Join(dir, fmt.Sprint("part", i))
		if err := s.Save(p); err != nil {
			t.Fatal(err)
		}
		o, err := OpenSet(p)
		if err != nil {
			t.Fatal(err)
		}
		sets, opened = append(sets, s), append(opened, o)
	}
	want, err := MergeSets(sets)
	if err != nil {
		t.Fatal(err)
	}
	if err := want.Save(filepath.Join(dir, "want")); err != nil {
		t.Fatal(err)
	}
	defer func(b int) { mergeBlock = b }(mergeBlock)
	mergeBlock = 4 * len(whole.Adv.Data) / n * 2 // two images a block
	got, err := SaveMerged(filepath.Join(dir, "got"), opened)
	if err != nil {
		t.Fatal(err)
	}
	if got.Len() != n {
		t.Errorf("merged %d images, want %d", got.Len(), n)
	}
	for _, name := range []string{AdvFile, LabelsFile, MetaFile} {
		g, err1 := os.ReadFile(filepath.Join(dir, "got", name))
		w, err2 := os.ReadFile(filepath.Join(dir, "want", name))
		if err1 != nil || err2 != nil || !bytes.Equal(g, w) {
			t.Errorf("%s: %v %v, or other bytes than Save of MergeSets' set", name, err1, err2)
		}
	}

	other := *opened[1]
	other.Meta.Attack = "PGD"
	if _, err := SaveMerged(filepath.Join(dir, "bad"), []*OpenedSet{opened[0], &other}); err == nil {
		t.Error("parts of two attacks merged")
	}
	nan := sets[2].Adv.Clone()
	nan.Data[len(nan.Data)-1] = float32(math.NaN())
	if err := npy.WriteFile(filepath.Join(dir, "part2", AdvFile), nan); err != nil {
		t.Fatal(err)
	}
	var se *SetError
	if _, err := SaveMerged(filepath.Join(dir, "nan"), opened); !errors.As(err, &se) {
		t.Errorf("a NaN in a part: %v, want *SetError", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nan", MetaFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed merge left %s: %v", MetaFile, err)
	}
}
