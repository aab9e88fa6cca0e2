package dataset

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// Fuzz tests. The normal test run replays the seeds below and those in
// testdata/fuzz/<name>/; run a fuzzer by hand with, for example,
//
//	go test ./dataset -run '^$' -fuzz FuzzReadBinary -fuzztime 20s

var fuzzShape = Shape{3, 2, 2} // 13-byte records

// FuzzReadBinary checks that any input either decodes to a set that
// re-encodes to exactly the input, or fails with a *FormatError; gzipped
// inputs go through the same path as files do.
func FuzzReadBinary(f *testing.F) {
	f.Add(records(2, fuzzShape, 1, 9))
	f.Add(records(2, fuzzShape, 1)[:20])
	f.Add(gz(f, records(3, fuzzShape, 4)))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, done, err := maybeGunzip(bytes.NewReader(data), "fuzz")
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("gzip header error %v is not a *FormatError", err)
			}
			return
		}
		defer done()
		set, err := ReadBinary(r, "fuzz", fuzzShape, CIFAR10Classes, 0)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			return
		}
		if err := set.Validate(); err != nil {
			t.Fatal(err)
		}
		if data[0] != 0x1f || len(data) < 2 || data[1] != 0x8b {
			var out bytes.Buffer
			if err := WriteBinary(&out, set); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Fatal("decoded set does not re-encode to the input")
			}
		}
	})
}

// FuzzReadCIFAR10Archive feeds arbitrary bytes to the archive reader: it
// must return sets that validate or an error, never panic or hang.
func FuzzReadCIFAR10Archive(f *testing.F) {
	f.Add(cifarTar(f))
	tiny := tarFile(f, map[string][]byte{
		"d/data_batch_1.bin": records(1, CIFARShape, 3),
		"d/test_batch.bin":   records(1, CIFARShape, 4),
		"d/batches.meta.txt": []byte("a\nb\n"),
	}, []string{"d/test_batch.bin", "d/data_batch_1.bin", "d/batches.meta.txt"})
	f.Add(tiny)
	f.Add(tiny[:700])
	f.Fuzz(func(t *testing.T, data []byte) {
		train, test, err := ReadCIFAR10Archive(context.Background(), bytes.NewReader(data), "fuzz.tgz")
		if err != nil {
			return
		}
		for _, s := range []*Set{train, test} {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted archive gives an invalid set: %v", err)
			}
		}
	})
}

// FuzzReadImageArchive does the same for image-folder archives, whose
// members go through the PNG and JPEG decoders.
func FuzzReadImageArchive(f *testing.F) {
	old := maxImagePixels
	maxImagePixels = 1 << 16
	defer func() { maxImagePixels = old }()
	var png1, jpg1 bytes.Buffer
	{
		dir := f.TempDir()
		writePNG(f, dir+"/a.png", 3, 2, 100)
		writeJPEG(f, dir+"/b.jpg", 2, 3, 50)
		png1.Write(mustRead(f, dir+"/a.png"))
		jpg1.Write(mustRead(f, dir+"/b.jpg"))
	}
	files := map[string][]byte{"r/train/a/1.png": png1.Bytes(), "r/val/a/2.jpg": jpg1.Bytes(), "r/train/b/3.jpg": jpg1.Bytes()}
	arch := tarFile(f, files, []string{"r/train/a/1.png", "r/val/a/2.jpg", "r/train/b/3.jpg"})
	f.Add(arch, uint8(2))
	f.Add(gz(f, arch), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, size uint8) {
		train, test, err := ReadImageArchive(context.Background(), bytes.NewReader(data), "fuzz.tgz", FolderOptions{Size: int(size % 9)})
		if err != nil {
			return
		}
		for _, s := range []*Set{train, test} {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted archive gives an invalid set: %v", err)
			}
		}
	})
}

// FuzzReadClassNames checks that accepted class lists are non-empty and
// hold no line breaks.
func FuzzReadClassNames(f *testing.F) {
	f.Add([]byte("cat\ndog\n"))
	f.Add([]byte("0\tn01\ttench\n1\tn02\tEnglish springer\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := ReadClassNames(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		if len(names) == 0 || len(names) > 256 {
			t.Fatalf("%d names accepted", len(names))
		}
		for _, n := range names {
			if bytes.ContainsAny([]byte(n), "\n\r") {
				t.Fatalf("name %q holds a line break", n)
			}
			if err := CheckClassName(n); err != nil {
				t.Fatalf("accepted name fails the class-name rule: %v", err)
			}
		}
	})
}
