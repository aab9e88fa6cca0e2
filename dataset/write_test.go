package dataset

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestNPYRoundTripIsBitIdentical(t *testing.T) {
	// Float32 values that no 8-bit format keeps, as an attack produces.
	s := toySet(5, Shape{3, 4, 4}, 3)
	rng := rand.New(rand.NewSource(1))
	for i := range s.Images.Data {
		s.Images.Data[i] = rng.Float32()
	}
	s.Images.Data[0] = 0x1p-30
	s.Labels[4] = 2
	p := filepath.Join(t.TempDir(), "adv.npy")
	if err := WriteNPY(p, s); err != nil {
		t.Fatal(err)
	}
	back, err := ReadNPY(p)
	if err != nil {
		t.Fatal(err)
	}
	if !equalF32(back.Images.Data, s.Images.Data) || !reflect.DeepEqual(back.Images.Shape, s.Images.Shape) {
		t.Error("images differ after .npy round trip")
	}
	if !reflect.DeepEqual(back.Labels, s.Labels) || !reflect.DeepEqual(back.Classes, s.Classes) {
		t.Errorf("labels %v classes %v", back.Labels, back.Classes)
	}
	// The binary layout rounds to 8 bits: not identical, but within 1/510.
	bp := filepath.Join(t.TempDir(), "adv.bin")
	if err := WriteBinaryFile(bp, s); err != nil {
		t.Fatal(err)
	}
	rb, _ := ReadBinaryFile(bp, s.Shape(), s.Classes)
	if equalF32(rb.Images.Data, s.Images.Data) {
		t.Error("8-bit records unexpectedly kept random float32 values")
	}
	for i, v := range rb.Images.Data {
		if d := v - s.Images.Data[i]; d > 0.5/255+1e-6 || d < -0.5/255-1e-6 {
			t.Fatalf("value %d off by %v", i, d)
		}
	}
	q := s.Subset([]int{0, 1, 2, 3, 4})
	Quantize(q)
	if !equalF32(q.Images.Data, rb.Images.Data) {
		t.Error("Quantize differs from a binary round trip")
	}
	// Without the classes file, classes are numbered; a bad label is named.
	os.Remove(filepath.Join(filepath.Dir(p), "adv.classes.txt"))
	back, err = ReadNPY(p)
	if err != nil || !reflect.DeepEqual(back.Classes, []string{"0", "1", "2"}) {
		t.Errorf("no classes file: %v, %v", back, err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(p), "adv.classes.txt"), []byte("one\n"), 0o644)
	if _, err := ReadNPY(p); !errors.Is(err, ErrLabel) {
		t.Errorf("label beyond classes: err = %v", err)
	}
}

func TestWritePNGFolderRoundTrip(t *testing.T) {
	s := toySet(4, Shape{3, 5, 6}, 2)
	s.Classes = []string{"cat/dog", "b"}
	dir := t.TempDir()
	if err := WritePNGFolder(dir, s, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cat_dog", "0.png")); err != nil {
		t.Fatal(err)
	}
	back, err := ReadImageFolder(context.Background(), dir, FolderOptions{Size: 0, Classes: []string{"cat_dog", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	// Read back in class order: images 0, 2 (class 0) then 1, 3.
	want := s.Subset([]int{0, 2, 1, 3})
	if !equalF32(back.Images.Data, want.Images.Data) || !reflect.DeepEqual(back.Labels, want.Labels) {
		t.Error("PNG folder round trip differs")
	}
}

func TestClassFolders(t *testing.T) {
	got := classFolders([]string{"cat/dog", "a b", "a_b", "", "..", "ok", ".x"})
	want := []string{"cat_dog", "a_b-1", "a_b-2", "3", "4", "ok", "_.x"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("classFolders = %q, want %q", got, want)
	}
}
