package baseline

import (
	"bytes"
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
