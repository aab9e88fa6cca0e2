package dataset

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// records returns n binary records of shape s; record i has label
// labels[i%len(labels)] and pixel j = (i*7 + j) mod 256.
func records(n int, s Shape, labels ...int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		b.WriteByte(byte(labels[i%len(labels)]))
		for j := 0; j < s.Pixels(); j++ {
			b.WriteByte(byte(i*7 + j))
		}
	}
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestByteRoundTrip(t *testing.T) {
	for b := 0; b < 256; b++ {
		if got := unitToByte(byteToUnit[b]); int(got) != b {
			t.Fatalf("unitToByte(byteToUnit[%d]) = %d", b, got)
		}
	}
	tests := []struct {
		in   float32
		want byte
	}{{-0.5, 0}, {2, 255}, {0.5, 128}, {float32NaN(), 0}, {1.0 / 510, 1}, {0.999 / 510, 0}}
	for _, tc := range tests {
		if got := unitToByte(tc.in); got != tc.want {
			t.Errorf("unitToByte(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestReadWriteBinary(t *testing.T) {
	s := Shape{3, 4, 5}
	raw := records(7, s, 0, 2, 1)
	classes := []string{"x", "y", "z"}
	set, err := ReadBinary(bytes.NewReader(raw), "mem", s, classes, 0)
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 7 || set.Labels[4] != 2 || set.Images.Shape[3] != 5 {
		t.Fatalf("read %d images, labels %v, shape %v", set.Len(), set.Labels, set.Images.Shape)
	}
	if got, want := set.Image(2)[3], float32(byte(2*7+3))/255; got != want {
		t.Errorf("pixel = %v, want %v", got, want)
	}
	if err := set.Validate(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteBinary(&out, set); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), raw) {
		t.Error("write(read(x)) != x")
	}
	// Files, plain and gzipped, atomically written, read back identical.
	dir := t.TempDir()
	for _, name := range []string{"a.bin", "a.bin.gz"} {
		p := filepath.Join(dir, name)
		if err := WriteBinaryFile(p, set); err != nil {
			t.Fatal(err)
		}
		back, err := ReadBinaryFile(p, s, classes)
		if err != nil {
			t.Fatal(err)
		}
		if !equalF32(back.Images.Data, set.Images.Data) || !equalInts(back.Labels, set.Labels) {
			t.Errorf("%s: read back differs", name)
		}
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a.bin.gz"))
	WriteBinaryFile(filepath.Join(dir, "b.bin.gz"), set)
	b, _ := os.ReadFile(filepath.Join(dir, "b.bin.gz"))
	if !bytes.Equal(a, b) {
		t.Error("gzip output is not deterministic")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("temporary files left behind: %d entries", len(ents))
	}
}

func TestReadBinaryErrors(t *testing.T) {
	s := Shape{3, 2, 2}
	good := records(3, s, 1)
	corrupt := gz(t, records(50, s, 1))
	corrupt[len(corrupt)/2] ^= 0xff
	badCRC := gz(t, good)
	badCRC[len(badCRC)-6] ^= 1
	tests := []struct {
		name    string
		data    []byte
		gzipped bool
		want    error
		record  int
	}{
		{"truncated", good[:len(good)-3], false, ErrTruncated, 2},
		{"one byte", good[:1], false, ErrTruncated, 0},
		{"label", append(append([]byte{}, good...), records(1, s, 9)...), false, ErrLabel, 3},
		{"empty", nil, false, ErrEmpty, -1},
		{"corrupt gzip", corrupt, true, nil, -2},
		{"gzip checksum", badCRC, true, gzip.ErrChecksum, -2},
		{"truncated gzip", gz(t, good)[:30], true, io.ErrUnexpectedEOF, -2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f.bin")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadBinaryFile(p, s, []string{"a", "b", "c"})
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T), want *FormatError", err, err)
			}
			if fe.File != p {
				t.Errorf("error names %q, want %q", fe.File, p)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if tc.record != -2 && fe.Record != tc.record {
				t.Errorf("error at record %d, want %d: %v", fe.Record, tc.record, err)
			}
		})
	}
}

func TestBinaryReaderStreams(t *testing.T) {
	s := Shape{1, 2, 2}
	br, err := NewBinaryReader(bytes.NewReader(records(3, s, 0, 1)), "mem", s, 2)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]float32, 4)
	var labels []int
	for {
		l, err := br.Next(img)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		labels = append(labels, l)
	}
	if !equalInts(labels, []int{0, 1, 0}) || br.Record() != 3 {
		t.Errorf("labels %v after %d records", labels, br.Record())
	}
	if _, err := br.Next(make([]float32, 3)); err == nil {
		t.Error("Next into a short buffer: no error")
	}
	if _, err := NewBinaryReader(nil, "x", Shape{0, 1, 1}, 2); err == nil {
		t.Error("zero channels accepted")
	}
	if _, err := NewBinaryReader(nil, "x", s, 300); err == nil {
		t.Error("300 classes accepted for a byte label")
	}
}

func TestWriteBinaryRejectsWideLabel(t *testing.T) {
	set := toySet(2, Shape{1, 1, 1}, 2)
	set.Labels[1] = 256
	if err := WriteBinary(io.Discard, set); !errors.Is(err, ErrLabel) {
		t.Errorf("err = %v, want ErrLabel", err)
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
