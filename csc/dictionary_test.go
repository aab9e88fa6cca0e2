package csc

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

func TestDictionaryLayoutRoundTrip(t *testing.T) {
	d := loadDict(t)
	if d.M != 64 || d.C != 3 || d.R != 8 || d.S != 8 {
		t.Fatalf("dict.npy read as %dx%dx%dx%d", d.M, d.C, d.R, d.S)
	}
	// The reference dictionary: every filter unit norm, channels zero-mean.
	for m := 0; m < d.M; m++ {
		if n := d.filterNorm(m); math.Abs(n-1) > 1e-5 {
			t.Errorf("filter %d norm %v", m, n)
		}
	}
	back, err := dictionaryFromSPORCO(d.sporco())
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Filters {
		if back.Filters[i] != d.Filters[i] {
			t.Fatal("SPORCO layout round trip differs")
		}
	}
	path := filepath.Join(t.TempDir(), "d.npy")
	if err := WriteDictionary(path, d); err != nil {
		t.Fatal(err)
	}
	again, err := ReadDictionary(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Filters {
		if again.Filters[i] != d.Filters[i] {
			t.Fatal("file round trip differs")
		}
	}
	var buf bytes.Buffer
	if err := EncodeDictionary(&buf, d); err != nil {
		t.Fatal(err)
	}
	dec, err := DecodeDictionary(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dec.Filters, d.Filters) || dec.M != d.M || dec.C != d.C || dec.R != d.R || dec.S != d.S {
		t.Fatal("stream round trip differs")
	}
	// One element placed by hand: SPORCO D[r, s, c, m] = Filters[m, c, r, s].
	sp := d.sporco()
	if got, want := sp.Data[((2*8+5)*3+1)*64+7], d.Filters[((7*3+1)*8+2)*8+5]; got != want {
		t.Errorf("layout: %v != %v", got, want)
	}
}

func TestImagesLayoutRoundTrip(t *testing.T) {
	src := tensor.New(5, 4, 3, 2) // (H, W, C, N)
	for i := range src.Data {
		src.Data[i] = float32(i)
	}
	b, err := ImagesFromSPORCO(src)
	if err != nil {
		t.Fatal(err)
	}
	if n, c, h, w, _ := b.NCHW(); n != 2 || c != 3 || h != 5 || w != 4 {
		t.Fatalf("shape %v", b.Shape)
	}
	// pixel (y=1, x=2), channel 2, image 1
	if got, want := b.Data[((1*3+2)*5+1)*4+2], src.Data[((1*4+2)*3+2)*2+1]; got != want {
		t.Errorf("layout: %v != %v", got, want)
	}
	back, _ := ImagesToSPORCO(b, false)
	for i := range src.Data {
		if back.Data[i] != src.Data[i] {
			t.Fatal("round trip differs")
		}
	}
}

func TestReadDictionaryErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join("testdata", "dict.npy"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nan := tensor.New(2, 2, 1, 3)
	nan.Data[4] = float32(math.NaN())
	nanPath := filepath.Join(dir, "nan.npy")
	if err := npy.WriteFile(nanPath, nan); err != nil {
		t.Fatal(err)
	}
	flat := filepath.Join(dir, "flat.npy")
	if err := npy.WriteFile(flat, tensor.New(64)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string
		want func(error) bool
	}{
		{"truncated", write("trunc.npy", good[:len(good)/2]), func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"garbage", write("garbage.npy", []byte("not a numpy file at all")), func(err error) bool {
			var fe *npy.FormatError
			return errors.As(err, &fe)
		}},
		{"rank 1", flat, func(err error) bool {
			var se *tensor.ShapeError
			return errors.As(err, &se)
		}},
		{"NaN", nanPath, func(err error) bool {
			var ne *tensor.NonFiniteError
			return errors.As(err, &ne)
		}},
		{"missing", filepath.Join(dir, "none.npy"), func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
	}
	for _, c := range cases {
		_, err := ReadDictionary(c.path)
		if err == nil || !c.want(err) {
			t.Errorf("%s: err = %v (%T)", c.name, err, err)
		}
	}
}

func TestMapsToSPORCO(t *testing.T) {
	for _, cx := range []int{0, 2} { // 0: maps (M, H, W) shared by the channels
		shape := []int{3, 4, 5} // M, H, W
		if cx > 0 {
			shape = append([]int{cx}, shape...)
		}
		res := make([]*Result, 2)
		for i := range res {
			res[i] = &Result{X: tensor.New(shape...)}
			for j := range res[i].X.Data {
				res[i].X.Data[j] = float32(100*i + j)
			}
		}
		x, err := MapsToSPORCO(res)
		if err != nil {
			t.Fatal(err)
		}
		c := max(cx, 1)
		if want := []int{4, 5, c, 2, 3}; !slices.Equal(x.Shape, want) {
			t.Fatalf("shape %v, want %v", x.Shape, want)
		}
		// Image 1, channel c-1, map 2 at (y=3, x=1): SPORCO X[y, x, c, n, m].
		y, xx, ch, n, m := 3, 1, c-1, 1, 2
		if got, want := x.Data[(((y*5+xx)*c+ch)*2+n)*3+m], res[n].X.Data[((ch*3+m)*4+y)*5+xx]; got != want {
			t.Errorf("cx %d: layout %v != %v", cx, got, want)
		}
	}
	if _, err := MapsToSPORCO([]*Result{{X: tensor.New(3, 4, 5)}, {X: tensor.New(3, 4, 4)}}); err == nil {
		t.Error("results of different shapes: no error")
	}
	if _, err := MapsToSPORCO(nil); err == nil {
		t.Error("no results: no error")
	}
}
