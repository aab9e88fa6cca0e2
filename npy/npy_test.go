package npy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

func TestRoundTripBitIdentical(t *testing.T) {
	for _, shape := range [][]int{{5}, {2, 3}, {8, 8, 3, 4}, {0, 3}} {
		x := tensor.New(shape...)
		for i := range x.Data {
			x.Data[i] = float32(math.Sin(float64(i)*1.7)) * 1e-3 * float32(i)
		}
		if len(x.Data) > 1 {
			x.Data[1] = math.Float32frombits(1) // denormal survives
		}
		var buf bytes.Buffer
		if err := Write(&buf, x); err != nil {
			t.Fatal(err)
		}
		if buf.Len() < 64 || (buf.Len()-4*len(x.Data))%64 != 0 {
			t.Errorf("shape %v: header not 64-byte aligned (file %d bytes)", shape, buf.Len())
		}
		y, err := Read(&buf)
		if err != nil {
			t.Fatalf("shape %v: %v", shape, err)
		}
		if !tensor.SameShape(x, y) {
			t.Fatalf("shape %v read back as %v", shape, y.Shape)
		}
		for i := range x.Data {
			if math.Float32bits(x.Data[i]) != math.Float32bits(y.Data[i]) {
				t.Fatalf("shape %v: value %d differs", shape, i)
			}
		}
	}
}

// TestReadNumPyFile reads a file written by NumPy (SPORCO's reference image
// crop, (32, 32, 3) float32).
func TestReadNumPyFile(t *testing.T) {
	x, err := ReadFile(filepath.Join("testdata", "img32.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Shape) != 3 || x.Shape[0] != 32 || x.Shape[1] != 32 || x.Shape[2] != 3 {
		t.Fatalf("shape %v", x.Shape)
	}
	lo, hi := x.Data[0], x.Data[0]
	for _, v := range x.Data {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo < 0 || hi > 1 || hi-lo < 0.1 {
		t.Fatalf("pixel range [%v, %v] not an image in [0,1]", lo, hi)
	}
}

func rawFile(descr, fortran, shape string, data []byte) []byte {
	dict := "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n"
	b := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(b[8:], uint16(len(dict)))
	return append(append(b, dict...), data...)
}

// f8Bytes encodes vs as little-endian float64 data.
func f8Bytes(vs ...float64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func TestReadDtypesAndOrder(t *testing.T) {
	f8 := f8Bytes(1, 2, 3, 4, 5, 6)
	tests := []struct {
		name string
		file []byte
		want []float32
		shp  []int
	}{
		{"f8 C", rawFile("<f8", "False", "(2, 3)", f8), []float32{1, 2, 3, 4, 5, 6}, []int{2, 3}},
		{"f8 Fortran", rawFile("<f8", "True", "(2, 3)", f8), []float32{1, 3, 5, 2, 4, 6}, []int{2, 3}},
		{"u1", rawFile("|u1", "False", "(3,)", []byte{0, 7, 255}), []float32{0, 7, 255}, []int{3}},
		{"big-endian f4", rawFile(">f4", "False", "(1,)", binary.BigEndian.AppendUint32(nil, math.Float32bits(2.5))), []float32{2.5}, []int{1}},
		{"scalar", rawFile("<f4", "False", "()", binary.LittleEndian.AppendUint32(nil, math.Float32bits(-1))), []float32{-1}, []int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Read(bytes.NewReader(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(x.Shape) != len(tc.shp) {
				t.Fatalf("shape %v, want %v", x.Shape, tc.shp)
			}
			for i := range tc.want {
				if x.Data[i] != tc.want[i] {
					t.Fatalf("data %v, want %v", x.Data, tc.want)
				}
			}
		})
	}
}

func TestIntsRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := []int{3, 0, 9, 1 << 40}
	if err := WriteInts(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadInts(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if in[i] != out[i] {
			t.Fatalf("got %v want %v", out, in)
		}
	}
}

func TestBadInput(t *testing.T) {
	good := rawFile("<f4", "False", "(2,)", make([]byte, 8))
	tests := []struct {
		name    string
		file    []byte
		wantEOF bool
	}{
		{"empty", nil, true},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x00\x00"), false},
		{"truncated header", good[:20], true},
		{"truncated data", good[:len(good)-3], true},
		{"huge claim", rawFile("<f4", "False", "(1000000000,)", make([]byte, 8)), true},
		{"overflow", rawFile("<f4", "False", "(100000, 100000, 100000)", nil), false},
		{"negative dim", rawFile("<f4", "False", "(-2,)", nil), false},
		{"bad dtype", rawFile("<c8", "False", "(2,)", make([]byte, 16)), false},
		{"not a dict", append([]byte("\x93NUMPY\x01\x00\x04\x00"), "abcd"...), false},
		{"version 9", []byte("\x93NUMPY\x09\x00\x00\x00"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.file))
			if err == nil {
				t.Fatal("no error")
			}
			var fe *FormatError
			if tc.wantEOF && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
			}
			if !tc.wantEOF && !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FormatError", err)
			}
		})
	}
	if err := Write(io.Discard, &tensor.Tensor{Shape: []int{3}, Data: make([]float32, 2)}); err == nil {
		t.Fatal("Write with inconsistent shape: no error")
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, tensor.New(2, 3))
	f.Add(buf.Bytes())
	f.Add(rawFile("<f8", "True", "(2, 2)", make([]byte, 32)))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := Read(bytes.NewReader(b))
		if err == nil && x.Len() != len(x.Data) {
			t.Fatalf("shape %v with %d values", x.Shape, len(x.Data))
		}
	})
}

func ExampleWrite() {
	var buf bytes.Buffer
	x := tensor.New(2, 2)
	x.Data[3] = 1.5
	_ = Write(&buf, x)
	y, _ := Read(&buf)
	fmt.Println(y.Shape, y.Data)
	// Output: [2 2] [0 0 0 1.5]
}

// TestReadRows checks that rows lo..hi of a file equal those of the whole
// array, for each dtype and order, and that bad ranges and truncated files
// are errors.
func TestReadRows(t *testing.T) {
	x := tensor.New(5, 2, 3)
	for i := range x.Data {
		x.Data[i] = float32(i) - 7.5
	}
	var f4 bytes.Buffer
	if err := Write(&f4, x); err != nil {
		t.Fatal(err)
	}
	f8 := f8Bytes(1, 2, 3, 4, 5, 6)
	tests := []struct {
		name   string
		file   []byte
		lo, hi int
		want   []float32
		shape  []int
		err    error // nil: no error; io.ErrUnexpectedEOF; a *FormatError otherwise
	}{
		{"f4 middle", f4.Bytes(), 1, 3, x.Data[6:18], []int{2, 2, 3}, nil},
		{"f4 all", f4.Bytes(), 0, 5, x.Data, []int{5, 2, 3}, nil},
		{"f4 last", f4.Bytes(), 4, 5, x.Data[24:], []int{1, 2, 3}, nil},
		{"f4 empty", f4.Bytes(), 2, 2, nil, []int{0, 2, 3}, nil},
		{"f8 C", rawFile("<f8", "False", "(3, 2)", f8), 1, 3, []float32{3, 4, 5, 6}, []int{2, 2}, nil},
		{"f8 Fortran", rawFile("<f8", "True", "(2, 3)", f8), 1, 2, []float32{2, 4, 6}, []int{1, 3}, nil},
		{"u1", rawFile("|u1", "False", "(3,)", []byte{0, 7, 255}), 2, 3, []float32{255}, []int{1}, nil},
		{"past the end", f4.Bytes(), 3, 6, nil, nil, &FormatError{}},
		{"negative", f4.Bytes(), -1, 2, nil, nil, &FormatError{}},
		{"reversed", f4.Bytes(), 3, 2, nil, nil, &FormatError{}},
		{"scalar", rawFile("<f4", "False", "()", make([]byte, 4)), 0, 0, nil, nil, &FormatError{}},
		{"truncated", f4.Bytes()[:f4.Len()-5], 3, 5, nil, nil, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadRows(bytes.NewReader(tc.file), tc.lo, tc.hi)
			var fe *FormatError
			switch {
			case tc.err == nil && err != nil:
				t.Fatal(err)
			case tc.err == io.ErrUnexpectedEOF && !errors.Is(err, io.ErrUnexpectedEOF):
				t.Fatalf("error %v, want io.ErrUnexpectedEOF", err)
			case tc.err != nil && tc.err != io.ErrUnexpectedEOF && !errors.As(err, &fe):
				t.Fatalf("error %v, want a *FormatError", err)
			case tc.err != nil:
				return
			}
			if fmt.Sprint(got.Shape) != fmt.Sprint(tc.shape) || len(got.Data) != len(tc.want) {
				t.Fatalf("shape %v (%d values), want %v (%d)", got.Shape, len(got.Data), tc.shape, len(tc.want))
			}
			for i := range tc.want {
				if got.Data[i] != tc.want[i] {
					t.Fatalf("data %v, want %v", got.Data, tc.want)
				}
			}
		})
	}
}

func FuzzReadRows(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, tensor.New(4, 3))
	f.Add(buf.Bytes(), 1, 3)
	f.Add(rawFile("<f8", "True", "(2, 2)", make([]byte, 32)), 0, 1)
	f.Fuzz(func(t *testing.T, b []byte, lo, hi int) {
		lo, hi = lo%64, hi%64
		x, err := ReadRows(bytes.NewReader(b), lo, hi)
		if err == nil && x.Len() != len(x.Data) {
			t.Fatalf("shape %v with %d values", x.Shape, len(x.Data))
		}
	})
}

// TestRowWriter writes arrays by blocks of rows and checks the bytes
// against Write's for the whole array, and the errors of rows of another
// shape, too many rows and too few.
func TestRowWriter(t *testing.T) {
	x := tensor.New(7, 2, 3)
	for i := range x.Data {
		x.Data[i] = float32(i) * 0.37
	}
	var want bytes.Buffer
	if err := Write(&want, x); err != nil {
		t.Fatal(err)
	}
	for _, blocks := range [][]int{{7}, {3, 4}, {1, 0, 5, 1}} {
		var got bytes.Buffer
		rw, err := NewRowWriter(&got, x.Shape)
		if err != nil {
			t.Fatal(err)
		}
		at := 0
		for _, n := range blocks {
			if err := rw.Write(x.Batch(at, at+n)); err != nil {
				t.Fatal(err)
			}
			at += n
		}
		if err := rw.Close(); err != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("blocks %v: %v, or other bytes than Write's", blocks, err)
		}
	}
	rw, err := NewRowWriter(io.Discard, x.Shape)
	if err != nil {
		t.Fatal(err)
	}
	var se *tensor.ShapeError
	if err := rw.Write(tensor.New(2, 3, 2)); !errors.As(err, &se) {
		t.Errorf("rows of another shape: %v, want *tensor.ShapeError", err)
	}
	if err := rw.Write(x.Batch(0, 5)); err != nil {
		t.Fatal(err)
	}
	if err := rw.Write(x.Batch(0, 3)); !errors.As(err, &se) {
		t.Errorf("too many rows: %v, want *tensor.ShapeError", err)
	}
	if err := rw.Close(); err == nil {
		t.Error("Close after 5 of 7 rows: no error")
	}
	if _, err := NewRowWriter(io.Discard, nil); err == nil {
		t.Error("a scalar accepted")
	}
}

func TestConcatFiles(t *testing.T) {
	dir := t.TempDir()
	whole := tensor.New(9, 2, 3)
	for i := range whole.Data {
		whole.Data[i] = float32(i)*0.37 - 1
	}
	want := filepath.Join(dir, "want.npy")
	if err := WriteFile(want, whole); err != nil {
		t.Fatal(err)
	}
	wantBytes, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for i, r := range [][2]int{{0, 4}, {4, 4}, {4, 9}} {
		p := filepath.Join(dir, fmt.Sprintf("part%d.npy", i))
		if err := WriteFile(p, whole.Batch(r[0], r[1])); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	defer func(b int) { concatBlock = b }(concatBlock)
	for _, block := range []int{16 << 20, 4 * 6 * 2, 1} { // whole parts, 2 rows, 1 row at a time
		concatBlock = block
		out := filepath.Join(dir, "out.npy")
		shape, err := ConcatFiles(out, parts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, whole.Shape) || !bytes.Equal(got, wantBytes) {
			t.Errorf("block %d bytes: shape %v, want %v; same bytes as Write: %v", block, shape, whole.Shape, bytes.Equal(got, wantBytes))
		}
	}
	other := filepath.Join(dir, "other.npy")
	if err := WriteFile(other, tensor.New(2, 3, 2)); err != nil {
		t.Fatal(err)
	}
	var fe *FormatError
	for name, ps := range map[string][]string{"none": nil, "other shape": {parts[0], other}} {
		if _, err := ConcatFiles(filepath.Join(dir, "bad.npy"), ps); !errors.As(err, &fe) {
			t.Errorf("%s: %v, want a *FormatError", name, err)
		}
	}
	if _, err := ConcatFiles(filepath.Join(dir, "bad.npy"), []string{parts[0], filepath.Join(dir, "missing.npy")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing part: %v, want os.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.npy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed concatenation left its output: %v", err)
	}
}
