package dataset

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/dataset/fetch"
	"github.com/stl-defense/stl/dataset/sample"
	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/progress"
)

// DefaultSpec is the data set commands use when the user names none: the
// CIFAR-10 sample embedded in the binary. Callers should tell the user when
// they fall back to it.
const DefaultSpec = "sample:cifar10"

// Samples lists the specs of the embedded samples.
var Samples = []string{"sample:cifar10", "sample:imagenet10"}

// IsSample reports whether spec names an embedded sample.
func IsSample(spec string) bool { return strings.HasPrefix(spec, "sample:") }

// LoadOptions tune LoadContext. The zero value is DefaultLoadOptions.
type LoadOptions struct {
	// Size is the side in pixels image folders and archives are resized to
	// (center square crop, area averaging), and selects the resolution of a
	// record folder holding several. 0 (the default) keeps images at their
	// own size, which must then agree, and takes the only resolution of a
	// record folder; the fetched "imagenette" (mixed sizes) then gets 64,
	// the paper's ImageNet-10 resolution (Section 5).
	Size int
	// Progress receives per-image reports while image folders are decoded
	// (binary records load in seconds and are not reported). nil: none.
	Progress progress.Reporter
}

// DefaultLoadOptions returns Size 0 (images at their own size) and no
// progress reporting.
func DefaultLoadOptions() LoadOptions { return LoadOptions{} }

// Validate returns an *OptionError for a Size outside 0..4096.
func (o LoadOptions) Validate() error {
	if o.Size < 0 || o.Size > 4096 {
		return option.New("dataset", "LoadOptions.Size", o.Size, "want 0..4096")
	}
	return nil
}

// Load is LoadContext with a background context and DefaultLoadOptions.
func Load(spec string) (train, test *Set, err error) {
	return LoadContext(context.Background(), spec, DefaultLoadOptions())
}

// LoadContext returns the train and test parts of the data set named by spec:
//
//   - "sample:cifar10", "sample:imagenet10": the embedded samples;
//
//   - "cifar10", "imagenette" (when no such path exists): the archive that
//     `stl data fetch` saved in fetch.DefaultDir();
//
//   - a CIFAR-10 binary folder (data_batch_*.bin[.gz], test_batch.bin[.gz]),
//     or a folder holding cifar-10-batches-bin/ or cifar-10-binary.tar.gz;
//
//   - an ImageNet-10 style record folder (train_HxW.bin[.gz], val_HxW.bin[.gz]
//     or test_HxW.bin[.gz], classes.txt);
//
//   - an image folder with train/ and val/ (or test/) subfolders of
//     <class>/*.png|jpg|jpeg, or a folder holding one imagenette2*.tgz;
//     ImageNet's val/ of images without class folders is labelled by
//     ReadImageNetVal;
//
//   - a .tar, .tar.gz or .tgz archive of either CIFAR-10 batches or such an
//     image folder;
//
//   - a folder written by Save: train.npy and test.npy (with .labels.npy and
//     .classes.txt), train_HxW.bin.gz records, or train/ and test/ PNGs.
//
// Image folders are resized to opts.Size. The context is checked between
// files and images. Errors name the file and record at fault. The sets
// returned are new allocations owned by the caller; LoadContext keeps no
// state and is safe for concurrent use.
func LoadContext(ctx context.Context, spec string, opts LoadOptions) (train, test *Set, err error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	if IsSample(spec) {
		return loadSample(spec)
	}
	path, err := ResolveSpec(spec)
	if err != nil {
		return nil, nil, err
	}
	if path != spec && spec == "imagenette" && opts.Size == 0 {
		opts.Size = 64 // Imagenette's images differ in size
	}
	spec = path
	st, err := os.Stat(spec)
	if err != nil {
		return nil, nil, err
	}
	if !st.IsDir() {
		return loadArchive(ctx, spec, opts)
	}
	kind, target := detectDir(spec)
	switch kind {
	case kindCIFAR:
		return ReadCIFAR10Dir(ctx, target)
	case kindRecords:
		return ReadRecordDir(ctx, target, opts.Size)
	case kindFolders:
		return readFolderSplits(ctx, target, opts)
	case kindArchive:
		return loadArchive(ctx, target, opts)
	case kindNPY:
		return readNPYDir(target)
	}
	return nil, nil, formatErr(spec, -1, ErrUnknownFormat,
		"want CIFAR-10 batches, train_HxW.bin/val_HxW.bin records, train/ and val/ image folders, or an archive")
}

type dirKind int

const (
	kindUnknown dirKind = iota
	kindCIFAR
	kindRecords
	kindFolders
	kindArchive
	kindNPY
)

// detectDir decides how to read a folder, looking one level into
// cifar-10-batches-bin/ for an extracted archive.
func detectDir(dir string) (dirKind, string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return kindUnknown, dir
	}
	names := map[string]bool{}
	var archives []string
	for _, e := range ents {
		n := e.Name()
		names[n] = e.IsDir()
		if !e.IsDir() && (n == "cifar-10-binary.tar.gz" || strings.HasPrefix(n, "imagenette2") && strings.HasSuffix(n, ".tgz")) {
			archives = append(archives, filepath.Join(dir, n))
		}
	}
	hasTrain, hasTest, hasRec := false, false, false
	for n, isDir := range names {
		if m := cifarBatch.FindStringSubmatch(n); m != nil && !isDir {
			if m[1] == "test_batch" {
				hasTest = true
			} else {
				hasTrain = true
			}
		}
		if recordFile.MatchString(n) && !isDir {
			hasRec = true
		}
	}
	switch {
	case hasTrain && hasTest:
		return kindCIFAR, dir
	case hasRec:
		return kindRecords, dir
	}
	if _, ok := names["train.npy"]; ok {
		if _, ok := names["test.npy"]; ok {
			return kindNPY, dir
		}
	}
	if isDir, ok := names["cifar-10-batches-bin"]; ok && isDir {
		return kindCIFAR, filepath.Join(dir, "cifar-10-batches-bin")
	}
	if names["train"] && (names["val"] || names["test"]) {
		return kindFolders, dir
	}
	if len(archives) == 1 {
		return kindArchive, archives[0]
	}
	return kindUnknown, dir
}

// ResolveSpec returns the path a non-sample spec refers to: spec itself
// when it exists, else, for the name of a fetch.Sources entry ("cifar10",
// "imagenette"), its folder in fetch.DefaultDir(). The error for a name not
// yet fetched says how to fetch it.
func ResolveSpec(spec string) (string, error) {
	_, err := os.Stat(spec)
	if err == nil {
		return spec, nil
	}
	if src, ok := fetch.Sources[spec]; ok && !strings.ContainsAny(spec, `/\`) {
		dir, derr := fetch.DefaultDir()
		if derr != nil {
			return "", derr
		}
		if _, derr := os.Stat(filepath.Join(dir, src.Name, src.File)); derr != nil {
			return "", fmt.Errorf("dataset: %s is not in the data directory %s; run: stl data fetch %s", spec, dir, spec)
		}
		return filepath.Join(dir, src.Name), nil
	}
	return "", fmt.Errorf("dataset: %q is neither a sample (%s), a fetched data set (%s) nor a readable path: %w",
		spec, strings.Join(Samples, ", "), strings.Join(fetch.Names(), ", "), err)
}

// loadSample decodes an embedded sample.
func loadSample(spec string) (train, test *Set, err error) {
	name := strings.TrimPrefix(spec, "sample:")
	var shape Shape
	var trainFile, testFile, classFile string
	switch name {
	case "cifar10":
		shape, trainFile, testFile, classFile = CIFARShape, "cifar10/train.bin.gz", "cifar10/test.bin.gz", "cifar10/batches.meta.txt"
	case "imagenet10":
		shape, trainFile, testFile, classFile = ImageNet64, "imagenet10/train_64x64.bin.gz", "imagenet10/test_64x64.bin.gz", "imagenet10/classes.txt"
	default:
		return nil, nil, fmt.Errorf("dataset: unknown sample %q, have %s", spec, strings.Join(Samples, ", "))
	}
	cf, err := sample.FS.Open(classFile)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: sample %s is missing from this build: %w", spec, err)
	}
	classes, err := ReadClassNames(cf, spec+":"+classFile)
	cf.Close()
	if err != nil {
		return nil, nil, err
	}
	read := func(file, part string) (*Set, error) {
		b, err := fs.ReadFile(sample.FS, file)
		if err != nil {
			return nil, fmt.Errorf("dataset: sample %s is missing from this build: %w", spec, err)
		}
		r, done, err := maybeGunzip(bytes.NewReader(b), spec+":"+file)
		if err != nil {
			return nil, err
		}
		defer done()
		// Our own files: the gzip trailer's size is exact.
		hint := 0
		if len(b) > 18 {
			hint = int(binary.LittleEndian.Uint32(b[len(b)-4:])) / shape.RecordSize()
		}
		br, err := NewBinaryReader(r, spec+":"+file, shape, len(classes))
		if err != nil {
			return nil, err
		}
		acc := newAccumulator(shape)
		acc.reserveTrusted(hint)
		if err := acc.readAll(br); err != nil {
			return nil, err
		}
		s, err := acc.set(spec+":"+file, classes)
		if err != nil {
			return nil, err
		}
		s.Name = spec + "/" + part
		return s, nil
	}
	if train, err = read(trainFile, "train"); err != nil {
		return nil, nil, err
	}
	if test, err = read(testFile, "test"); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// SampleReadme returns the provenance README of the embedded samples.
func SampleReadme() string {
	b, _ := fs.ReadFile(sample.FS, "README.md")
	return string(b)
}
