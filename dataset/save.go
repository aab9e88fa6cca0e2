package dataset

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/progress"
)

// Format names an on-disk layout Save writes and Load reads back.
type Format string

// Formats. What each keeps:
//
//   - FormatBinary: 8-bit planar records, gzipped (train_HxW.bin.gz,
//     test_HxW.bin.gz, classes.txt). Compact, the CIFAR-10 layout; pixels
//     are rounded to the nearest 1/255, so float32 adversarial images do
//     not survive exactly. Up to 256 classes.
//   - FormatNPY: float32 .npy (train.npy, train.labels.npy,
//     train.classes.txt, and the same for test). Bit-identical; 4 bytes per
//     value; readable by numpy.load.
//   - FormatPNG: train/<class>/<index>.png and test/<class>/... 8-bit, for
//     looking at; Load reads them back in class order.
const (
	FormatBinary Format = "bin"
	FormatNPY    Format = "npy"
	FormatPNG    Format = "png"
)

// Formats lists the formats Save accepts.
var Formats = []Format{FormatBinary, FormatNPY, FormatPNG}

// Save writes train and test (either may be nil, not both) into dir in the
// given format such that LoadContext(dir) returns them (see Format for what
// each keeps). Every file is written atomically; rep gets per-image
// progress for PNG.
func Save(dir string, train, test *Set, f Format, rep progress.Reporter) error {
	if train == nil && test == nil {
		return fmt.Errorf("dataset: Save with no set")
	}
	parts := []struct {
		name string
		set  *Set
	}{{"train", train}, {"test", test}}
	for _, p := range parts {
		if p.set == nil {
			continue
		}
		switch f {
		case FormatBinary:
			sh := p.set.Shape()
			if sh.C != 3 {
				return fmt.Errorf("dataset: binary records hold RGB images, %s has %d channels", p.set.Name, sh.C)
			}
			name := fmt.Sprintf("%s_%dx%d.bin.gz", p.name, sh.H, sh.W)
			if err := WriteBinaryFile(filepath.Join(dir, name), p.set); err != nil {
				return err
			}
			if err := writeClasses(filepath.Join(dir, "classes.txt"), p.set.Classes, true); err != nil {
				return err
			}
		case FormatNPY:
			if err := WriteNPY(filepath.Join(dir, p.name+".npy"), p.set); err != nil {
				return err
			}
		case FormatPNG:
			if err := WritePNGFolder(filepath.Join(dir, p.name), p.set, rep); err != nil {
				return err
			}
			// Folder names sort differently from labels: keep the order.
			if err := writeClasses(filepath.Join(dir, "classes.txt"), p.set.Classes, true); err != nil {
				return err
			}
		default:
			return fmt.Errorf("dataset: unknown format %q, want one of %v", f, Formats)
		}
	}
	return nil
}

// writeClasses writes class names one per line, as "label<TAB>name" when
// numbered (the classes.txt layout).
func writeClasses(path string, classes []string, numbered bool) error {
	var b strings.Builder
	for i, c := range classes {
		if strings.ContainsAny(c, "\t\n\r") {
			return fmt.Errorf("dataset: class name %q holds a tab or line break", c)
		}
		if numbered {
			fmt.Fprintf(&b, "%d\t", i)
		}
		b.WriteString(c + "\n")
	}
	return safefile.WriteBytes(path, []byte(b.String()))
}

// readNPYDir reads train.npy and test.npy written by Save.
func readNPYDir(dir string) (train, test *Set, err error) {
	if train, err = ReadNPY(filepath.Join(dir, "train.npy")); err != nil {
		return nil, nil, err
	}
	if test, err = ReadNPY(filepath.Join(dir, "test.npy")); err != nil {
		return nil, nil, err
	}
	base := filepath.Base(dir)
	train.Name, test.Name = base+"/train", base+"/test"
	return train, test, nil
}
