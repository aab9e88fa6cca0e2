package dataset

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stl-defense/stl/dataset/sample"
)

func TestLoadSamples(t *testing.T) {
	tests := []struct {
		spec             string
		shape            Shape
		nTrain, nTest    int
		firstClass, last string
	}{
		{"sample:cifar10", CIFARShape, 2000, 500, "airplane", "truck"},
		{"sample:imagenet10", ImageNet64, 500, 200, "tench", "parachute"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			train, test, err := Load(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []struct {
				s *Set
				n int
			}{{train, tc.nTrain}, {test, tc.nTest}} {
				if err := p.s.Validate(); err != nil {
					t.Fatal(err)
				}
				if p.s.Len() != p.n || p.s.Shape() != tc.shape {
					t.Errorf("%s: %d images of %v, want %d of %v", p.s.Name, p.s.Len(), p.s.Shape(), p.n, tc.shape)
				}
				for c, k := range p.s.ClassCounts() {
					if k != p.n/10 {
						t.Errorf("%s: class %d has %d images, want %d", p.s.Name, c, k, p.n/10)
					}
				}
				// Real images: the mean is mid-gray-ish and the pixels vary.
				var sum float64
				for _, v := range p.s.Images.Data {
					sum += float64(v)
				}
				if m := sum / float64(len(p.s.Images.Data)); m < 0.35 || m > 0.6 {
					t.Errorf("%s: mean pixel %.3f, not natural images", p.s.Name, m)
				}
			}
			if train.Classes[0] != tc.firstClass || train.Classes[9] != tc.last {
				t.Errorf("classes %v", train.Classes)
			}
			// The first 100 images (a prefix) are roughly balanced: shuffled order.
			counts := train.Head(100).ClassCounts()
			for c, k := range counts {
				if k < 3 || k > 20 {
					t.Errorf("prefix of 100 has %d of class %d: sample is not shuffled", k, c)
				}
			}
		})
	}
	if _, _, err := Load("sample:mnist"); err == nil || !strings.Contains(err.Error(), "sample:cifar10") {
		t.Errorf("unknown sample: err = %v, want one listing the samples", err)
	}
}

// TestSampleChecksums checks the embedded files against the SHA-256 listed
// in the sample README, so the README and the data cannot drift apart.
func TestSampleChecksums(t *testing.T) {
	readme := SampleReadme()
	i := strings.Index(readme, "## sha256")
	if i < 0 {
		t.Fatal("sample README has no sha256 section")
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(readme[i:]))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || len(f[0]) != 64 {
			continue
		}
		b, err := fs.ReadFile(sample.FS, f[1])
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != f[0] {
			t.Errorf("%s: sha256 %s, README says %s", f[1], got, f[0])
		}
		n++
	}
	if n != 6 {
		t.Errorf("README lists %d checksums, want 6", n)
	}
}

// writeCIFARDir writes a tiny CIFAR-10 folder: two train batches (one
// gzipped, named so that numeric order differs from string order) and a
// test batch.
func writeCIFARDir(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, "data_batch_2.bin"), records(3, CIFARShape, 2), 0o644))
	must(os.WriteFile(filepath.Join(dir, "data_batch_10.bin.gz"), gz(t, records(2, CIFARShape, 9)), 0o644))
	must(os.WriteFile(filepath.Join(dir, "test_batch.bin"), records(4, CIFARShape, 5, 6), 0o644))
	must(os.WriteFile(filepath.Join(dir, "batches.meta.txt"), []byte(strings.Join(CIFAR10Classes, "\n")+"\n\n"), 0o644))
}

func tarFile(t testing.TB, files map[string][]byte, order []string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, name := range order {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[name])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// cifarTar builds a small cifar-10-binary.tar.gz look-alike.
func cifarTar(t testing.TB) []byte {
	files := map[string][]byte{
		"cifar-10-batches-bin/data_batch_1.bin": records(3, CIFARShape, 1),
		"cifar-10-batches-bin/data_batch_2.bin": records(2, CIFARShape, 2),
		"cifar-10-batches-bin/test_batch.bin":   records(2, CIFARShape, 3),
		"cifar-10-batches-bin/batches.meta.txt": []byte(strings.Join(CIFAR10Classes, "\n")),
		"cifar-10-batches-bin/readme.html":      []byte("<html>"),
	}
	return gz(t, tarFile(t, files, []string{
		"cifar-10-batches-bin/data_batch_2.bin", "cifar-10-batches-bin/readme.html",
		"cifar-10-batches-bin/test_batch.bin", "cifar-10-batches-bin/data_batch_1.bin",
		"cifar-10-batches-bin/batches.meta.txt"}))
}

func TestLoadDirectories(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	// CIFAR folder, directly and as an extracted archive one level down.
	writeCIFARDir(t, filepath.Join(root, "cifar"))
	writeCIFARDir(t, filepath.Join(root, "extracted", "cifar-10-batches-bin"))
	// The archive itself, as a file and inside a folder.
	os.MkdirAll(filepath.Join(root, "dl"), 0o755)
	os.WriteFile(filepath.Join(root, "dl", "cifar-10-binary.tar.gz"), cifarTar(t), 0o644)
	// An ImageNet-10 style record folder.
	rec := filepath.Join(root, "inet")
	os.MkdirAll(rec, 0o755)
	os.WriteFile(filepath.Join(rec, "train_4x4.bin.gz"), gz(t, records(5, Shape{3, 4, 4}, 0, 1)), 0o644)
	os.WriteFile(filepath.Join(rec, "val_4x4.bin"), records(2, Shape{3, 4, 4}, 1), 0o644)
	os.WriteFile(filepath.Join(rec, "classes.txt"), []byte("0\tn01\ttench\n1\tn02\tEnglish springer\n"), 0o644)

	tests := []struct {
		spec        string
		trainLabels []int
		testLen     int
		classes     []string
		shape       Shape
	}{
		{filepath.Join(root, "cifar"), []int{2, 2, 2, 9, 9}, 4, CIFAR10Classes, CIFARShape},
		{filepath.Join(root, "extracted"), []int{2, 2, 2, 9, 9}, 4, CIFAR10Classes, CIFARShape},
		{filepath.Join(root, "dl"), []int{1, 1, 1, 2, 2}, 2, CIFAR10Classes, CIFARShape},
		{filepath.Join(root, "dl", "cifar-10-binary.tar.gz"), []int{1, 1, 1, 2, 2}, 2, CIFAR10Classes, CIFARShape},
		{rec, []int{0, 1, 0, 1, 0}, 2, []string{"tench", "English springer"}, Shape{3, 4, 4}},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.spec), func(t *testing.T) {
			opts := DefaultLoadOptions()
			opts.Size = 0
			train, test, err := LoadContext(ctx, tc.spec, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(train.Labels, tc.trainLabels) || test.Len() != tc.testLen {
				t.Errorf("train labels %v, %d test images", train.Labels, test.Len())
			}
			if !reflect.DeepEqual(train.Classes, tc.classes) || !reflect.DeepEqual(test.Classes, tc.classes) {
				t.Errorf("classes %v / %v", train.Classes, test.Classes)
			}
			if train.Shape() != tc.shape {
				t.Errorf("shape %v", train.Shape())
			}
		})
	}
	if _, _, err := LoadContext(ctx, root, DefaultLoadOptions()); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("unrecognised folder: err = %v", err)
	}
	if _, _, err := LoadContext(ctx, filepath.Join(root, "nope"), DefaultLoadOptions()); err == nil {
		t.Error("missing path: no error")
	}
	if _, _, err := LoadContext(ctx, rec, LoadOptions{Size: 8}); !errors.Is(err, ErrEmpty) {
		t.Errorf("absent size: err = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := LoadContext(cancelled, filepath.Join(root, "cifar"), DefaultLoadOptions()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestCIFARArchiveErrors(t *testing.T) {
	good := cifarTar(t)
	ungz := func(b []byte) []byte {
		r, _, err := maybeGunzip(bytes.NewReader(b), "x")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		out.ReadFrom(r)
		return out.Bytes()
	}
	plain := ungz(good)
	badMember := tarFile(t, map[string][]byte{
		"d/data_batch_1.bin": records(2, CIFARShape, 1)[:5000],
		"d/test_batch.bin":   records(1, CIFARShape, 1),
	}, []string{"d/test_batch.bin", "d/data_batch_1.bin"})
	badLabel := tarFile(t, map[string][]byte{
		"d/data_batch_1.bin": records(2, CIFARShape, 1, 10),
		"d/test_batch.bin":   records(1, CIFARShape, 1),
	}, []string{"d/test_batch.bin", "d/data_batch_1.bin"})
	tests := []struct {
		name   string
		data   []byte
		want   error
		naming string
	}{
		{"truncated gzip", good[:len(good)/2], ErrTruncated, "a.tgz"},
		{"truncated tar", plain[:len(plain)-2000], ErrTruncated, "a.tgz"},
		{"not an archive", []byte("hello, this is text and not a tar file at all........"), nil, "a.tgz"},
		{"member truncated", badMember, ErrTruncated, "a.tgz:d/data_batch_1.bin: record 1"},
		{"member label", badLabel, ErrLabel, "a.tgz:d/data_batch_1.bin: record 1"},
		{"no test batch", tarFile(t, map[string][]byte{"data_batch_1.bin": records(1, CIFARShape, 0)}, []string{"data_batch_1.bin"}), ErrEmpty, "a.tgz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadCIFAR10Archive(context.Background(), bytes.NewReader(tc.data), "a.tgz")
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.naming) {
				t.Errorf("err = %q does not name %q", err, tc.naming)
			}
		})
	}
}

func TestReadClassNames(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"cat\ndog\n", []string{"cat", "dog"}, false},
		{"0\tn01\ttench\n1\tn02\tEnglish springer\n", []string{"tench", "English springer"}, false},
		{"1\tn01\ttench\n", nil, true},
		{"\n\n", nil, true},
		{"0\r0\n", nil, true},            // the fuzzer's find: a carriage return inside a name
		{"air\rplane\ncar\n", nil, true}, // as in a batches.meta.txt
		{"a\x00b\n", nil, true},
	}
	for _, tc := range tests {
		got, err := ReadClassNames(strings.NewReader(tc.in), "c.txt")
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ReadClassNames(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestLoadFetchedByName(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STL_DATA", dir)
	t.Chdir(t.TempDir()) // no ./cifar10 path to shadow the name
	if _, _, err := Load("cifar10"); err == nil || !strings.Contains(err.Error(), "stl data fetch cifar10") {
		t.Errorf("not fetched: err = %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "cifar10"), 0o755)
	os.WriteFile(filepath.Join(dir, "cifar10", "cifar-10-binary.tar.gz"), cifarTar(t), 0o644)
	train, test, err := Load("cifar10")
	if err != nil || train.Len() != 5 || test.Len() != 2 {
		t.Errorf("fetched: %v", err)
	}
}

func TestPermuteBlocks(t *testing.T) {
	for _, keys := range [][]int{{3, 1, 2}, {2, 1}, {1, 2, 3}, {4, 3, 2, 1}, {2, 3, 4, 1}, {5, 1, 4, 2, 3}} {
		s := toySet(2*len(keys), Shape{1, 1, 2}, 200)
		for i := range s.Labels {
			s.Labels[i] = keys[i/2]*10 + i%2
		}
		permuteBlocks(s, append([]int(nil), keys...), 2)
		for i := 1; i < len(s.Labels); i++ {
			if s.Labels[i] <= s.Labels[i-1] {
				t.Fatalf("keys %v: labels %v not sorted", keys, s.Labels)
			}
		}
		for i, l := range s.Labels { // pixels moved with their labels
			orig := -1
			for b, k := range keys {
				if k == l/10 {
					orig = 2*b + l%10
				}
			}
			if s.Image(i)[0] != byteToUnit[orig] {
				t.Fatalf("keys %v: slot %d holds pixels of image %v, want %d", keys, i, s.Image(i)[0]*255, orig)
			}
		}
	}
}
