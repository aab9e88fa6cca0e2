package baseline

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fuzzRoundTrip fuzzes decode, seeded with the file testdata/<fixture>,
// its first cut bytes and the bare magic: whatever decodes must encode
// back to the bytes it was read from.
func fuzzRoundTrip[T interface{ Encode(io.Writer) error }](f *testing.F, fixture string, cut int, magic string, decode func(io.Reader) (T, error)) {
	if b, err := os.ReadFile(filepath.Join("testdata", fixture)); err == nil {
		f.Add(b)
		f.Add(b[:cut])
	}
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := decode(bytes.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := v.Encode(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), in[:buf.Len()]) {
			t.Fatal("re-encoding differs from the input")
		}
	})
}

// checkSaveLoad saves through save into a temporary file named name,
// checks that load reads back what same accepts, and returns the fixture
// testdata/<fixture> as load reads it.
func checkSaveLoad[T any](t *testing.T, name string, save func(string) error, load func(string) (*T, error), same func(*T) bool, fixture string) *T {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := save(path); err != nil {
		t.Fatal(err)
	}
	if back, err := load(path); err != nil || !same(back) {
		t.Fatalf("load after save: %v", err)
	}
	fix, err := load(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	return fix
}

// decodeCase is an input a decoder must refuse with an error wrapping
// want.
type decodeCase struct {
	name string
	in   []byte
	want error
}

func checkDecodeErrors[T any](t *testing.T, decode func(io.Reader) (T, error), cases []decodeCase) {
	t.Helper()
	for _, c := range cases {
		if _, err := decode(bytes.NewReader(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}
