package dataset

import (
	"errors"
	"fmt"
	"io"
	"unicode"

	"github.com/stl-defense/stl/internal/option"
)

// Sentinel causes carried by *FormatError, for errors.Is.
var (
	// ErrTruncated marks input that ends inside a record or header. It is
	// io.ErrUnexpectedEOF, so errors.Is(err, io.ErrUnexpectedEOF) holds too.
	ErrTruncated = io.ErrUnexpectedEOF
	// ErrLabel marks a label outside [0, number of classes).
	ErrLabel = errors.New("label out of range")
	// ErrNotImage marks a file in an image folder that cannot be decoded.
	ErrNotImage = errors.New("not a decodable PNG or JPEG image")
	// ErrShape marks images or files whose sizes disagree.
	ErrShape = errors.New("mixed or unexpected image sizes")
	// ErrCount marks a set whose image and label counts differ.
	ErrCount = errors.New("image and label counts differ")
	// ErrClassName marks a class name that is empty or holds a control
	// character (see CheckClassName).
	ErrClassName = errors.New("invalid class name")
	// ErrEmpty marks a data set, folder or archive with nothing usable in it.
	ErrEmpty = errors.New("no images")
	// ErrUnknownFormat marks a spec or file whose layout cannot be detected.
	ErrUnknownFormat = errors.New("unrecognised data set layout")
)

// FormatError reports malformed input: which file, which record or image in
// it (Record is -1 when the problem is not tied to one), and why. Err holds
// the cause (one of the sentinels above, a gzip/tar/image error, or an I/O
// error) and is returned by Unwrap.
type FormatError struct {
	File   string // file, archive member ("archive.tgz:train/x/1.png") or spec
	Record int    // zero-based record or image index, -1 if none
	Msg    string // what was wrong, may be empty
	Err    error
}

func (e *FormatError) Error() string {
	s := "dataset: " + e.File
	if e.Record >= 0 {
		s += fmt.Sprintf(": record %d", e.Record)
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(file string, record int, err error, format string, a ...any) *FormatError {
	return &FormatError{File: file, Record: record, Msg: fmt.Sprintf(format, a...), Err: err}
}

// CheckClassName is the one rule every reader applies to class names (class
// lists, class folders, .classes.txt files): a name is non-empty and holds no
// control character (no tab, line break or carriage return), so it survives a
// round trip through every format that stores it one per line.
func CheckClassName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrClassName)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w %q: holds the control character %U", ErrClassName, name, r)
		}
	}
	return nil
}

// OptionError reports an invalid option field (AugmentOptions,
// FolderOptions, LoadOptions); it is the project's one option error type,
// shared with packages nn and dnnl.
type OptionError = option.Error
