package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/tensor"
)

// byteToUnit maps a pixel byte b to b/255, the [0, 1] scale of a Set.
var byteToUnit = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// unitToByte maps v in [0, 1] to the nearest byte, round(255 v), clamping
// values outside. byteToUnit followed by unitToByte is the identity.
func unitToByte(v float32) byte {
	x := float64(v)*255 + 0.5
	switch {
	case !(x > 0): // also NaN
		return 0
	case x >= 255:
		return 255
	}
	return byte(x)
}

// BinaryReader reads planar binary records (one label byte, then C planes
// of H*W bytes) one at a time, for sets that do not fit in memory. It is not
// safe for concurrent use.
type BinaryReader struct {
	r          io.Reader
	file       string
	shape      Shape
	numClasses int
	rec        int
	buf        []byte
}

// NewBinaryReader returns a reader of records of the given shape from r.
// file names the input in errors. Labels must be in [0, numClasses). It
// returns an error for an invalid shape or numClasses outside [1, 256].
func NewBinaryReader(r io.Reader, file string, shape Shape, numClasses int) (*BinaryReader, error) {
	if !shape.valid() {
		return nil, fmt.Errorf("dataset: invalid record shape %v", shape)
	}
	if numClasses < 1 || numClasses > 256 {
		return nil, fmt.Errorf("dataset: %d classes, want 1..256 for one label byte", numClasses)
	}
	return &BinaryReader{r: r, file: file, shape: shape, numClasses: numClasses, buf: make([]byte, shape.RecordSize())}, nil
}

// Shape returns the image geometry of the records.
func (b *BinaryReader) Shape() Shape { return b.shape }

// Record returns the index of the next record to be read.
func (b *BinaryReader) Record() int { return b.rec }

// Next decodes the next record into dst (len C*H*W, values b/255) and
// returns its label. At the clean end of input it returns io.EOF. A record
// cut short is a *FormatError wrapping ErrTruncated, a bad label one wrapping
// ErrLabel, and a read error (such as a corrupt gzip stream) one wrapping
// the cause; each names the file and record.
func (b *BinaryReader) Next(dst []float32) (label int, err error) {
	if len(dst) != b.shape.Pixels() {
		return 0, fmt.Errorf("dataset: Next into %d values, want %d", len(dst), b.shape.Pixels())
	}
	n, err := io.ReadFull(b.r, b.buf)
	switch {
	case err == io.EOF:
		return 0, io.EOF
	case err == io.ErrUnexpectedEOF:
		return 0, formatErr(b.file, b.rec, ErrTruncated, "record ends after %d of %d bytes", n, len(b.buf))
	case err != nil:
		return 0, formatErr(b.file, b.rec, err, "read")
	}
	label = int(b.buf[0])
	if label >= b.numClasses {
		return 0, formatErr(b.file, b.rec, ErrLabel, "label %d, %d classes", label, b.numClasses)
	}
	for i, v := range b.buf[1:] {
		dst[i] = byteToUnit[v]
	}
	b.rec++
	return label, nil
}

// ReadBinary reads every record from r into a new Set named file, with the
// given classes (their number bounds the labels). sizeHint, when positive,
// is the expected number of records and only saves reallocation. Errors are
// those of BinaryReader.Next; an input with no records is an error wrapping
// ErrEmpty.
func ReadBinary(r io.Reader, file string, shape Shape, classes []string, sizeHint int) (*Set, error) {
	br, err := NewBinaryReader(r, file, shape, len(classes))
	if err != nil {
		return nil, err
	}
	acc := newAccumulator(shape)
	acc.reserve(sizeHint)
	if err := acc.readAll(br); err != nil {
		return nil, err
	}
	if acc.len() == 0 {
		return nil, formatErr(file, -1, ErrEmpty, "no records")
	}
	return acc.set(file, classes)
}

// accumulator collects decoded records of one shape in a growing flat
// buffer, so that several files (the CIFAR-10 train batches) land in one
// tensor without a second copy.
type accumulator struct {
	shape  Shape
	p      int
	data   []float32
	labels []int
}

func newAccumulator(shape Shape) *accumulator {
	return &accumulator{shape: shape, p: shape.Pixels()}
}

func (a *accumulator) len() int { return len(a.labels) }

// reserve makes room for n more records. n comes from headers that input
// controls, so it is trusted for at most 64 MiB of pixels; beyond that the
// buffer grows by doubling as records arrive.
func (a *accumulator) reserve(n int) { a.reserveTrusted(max(0, min(n, (1<<24)/a.p))) }

// reserveTrusted makes room for n more records, n bounded by real file
// sizes (see fileHint).
func (a *accumulator) reserveTrusted(n int) {
	n = max(0, n)
	if need := len(a.data) + n*a.p; need > cap(a.data) {
		grown := make([]float32, len(a.data), need)
		copy(grown, a.data)
		a.data = grown
	}
	if need := len(a.labels) + n; need > cap(a.labels) {
		a.labels = append(make([]int, 0, need), a.labels...)
	}
}

// readAll appends every record of br.
func (a *accumulator) readAll(br *BinaryReader) error {
	p := a.p
	var spill []float32
	for {
		// Decode in place while there is room; when full, decode into a
		// spare record first so that the end of input never triggers a
		// growth of the whole buffer.
		full := len(a.data)+p > cap(a.data)
		dst := a.data[len(a.data):min(len(a.data)+p, cap(a.data))]
		if full {
			if spill == nil {
				spill = make([]float32, p)
			}
			dst = spill
		}
		l, err := br.Next(dst)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if full {
			a.data = append(a.data, spill...)
		} else {
			a.data = a.data[:len(a.data)+p]
		}
		a.labels = append(a.labels, l)
	}
}

// set wraps the collected records (without copying) in a Set.
func (a *accumulator) set(name string, classes []string) (*Set, error) {
	t, err := tensor.FromData(a.data, len(a.labels), a.shape.C, a.shape.H, a.shape.W)
	if err != nil {
		return nil, err
	}
	return &Set{Images: t, Labels: a.labels, Classes: append([]string(nil), classes...), Name: name}, nil
}

// NextBatch decodes up to len(labels) records into images (which must hold
// len(labels)*C*H*W values) and labels, and returns how many it read. It
// returns 0, io.EOF when no record is left, and the errors of Next. This is
// the streaming access for sets that do not fit in memory.
func (b *BinaryReader) NextBatch(images []float32, labels []int) (int, error) {
	p := b.shape.Pixels()
	if len(images) != len(labels)*p {
		return 0, fmt.Errorf("dataset: NextBatch into %d values for %d labels, want %d", len(images), len(labels), len(labels)*p)
	}
	for i := range labels {
		l, err := b.Next(images[i*p : (i+1)*p])
		if err == io.EOF {
			if i == 0 {
				return 0, io.EOF
			}
			return i, nil
		}
		if err != nil {
			return i, err
		}
		labels[i] = l
	}
	return len(labels), nil
}

// BinaryFile is a BinaryReader over a file on disk, gzipped or not; Close
// releases the file.
type BinaryFile struct {
	*BinaryReader
	f  *os.File
	gz *gzip.Reader
	// Hint is the number of records the file holds by its size (for a gzip
	// file, by the size in its trailer, trusted up to 64 times the file
	// size), 0 if unknown. It is only a hint.
	Hint int
}

// OpenBinaryFile opens path for streaming records of the given shape.
// Gzip compression is detected by the content (magic bytes), not the name.
func OpenBinaryFile(path string, shape Shape, numClasses int) (*BinaryFile, error) {
	if !shape.valid() {
		return nil, fmt.Errorf("dataset: invalid record shape %v", shape)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	bf := &BinaryFile{f: f}
	var r io.Reader
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var magic [2]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if n == 2 && magic == [2]byte{0x1f, 0x8b} {
		bf.Hint = gzipHint(f, st.Size(), shape.RecordSize())
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<16))
		if err != nil {
			f.Close()
			return nil, formatErr(path, -1, err, "gzip header")
		}
		bf.gz, r = zr, zr
	} else {
		bf.Hint = int(st.Size() / int64(shape.RecordSize()))
		if st.Size()%int64(shape.RecordSize()) != 0 {
			bf.Hint++
		}
		r = bufio.NewReaderSize(f, 1<<16)
	}
	br, err := NewBinaryReader(r, path, shape, numClasses)
	if err != nil {
		f.Close()
		return nil, err
	}
	bf.BinaryReader = br
	return bf, nil
}

// gzipHint reads the uncompressed size (mod 2^32) from a gzip trailer and
// converts it to records; it trusts the value only within a sane ratio.
func gzipHint(f *os.File, size int64, rec int) int {
	if size < 18 {
		return 0
	}
	var tail [4]byte
	if _, err := f.ReadAt(tail[:], size-4); err != nil {
		return 0
	}
	isize := int64(binary.LittleEndian.Uint32(tail[:]))
	if isize > 64*size {
		return 0
	}
	return int(isize / int64(rec))
}

// Close closes the underlying file.
func (b *BinaryFile) Close() error {
	if b.gz != nil {
		b.gz.Close()
	}
	return b.f.Close()
}

// ReadBinaryFile reads a whole binary record file (gzipped or not, see
// OpenBinaryFile) into a Set named path.
func ReadBinaryFile(path string, shape Shape, classes []string) (*Set, error) {
	bf, err := OpenBinaryFile(path, shape, len(classes))
	if err != nil {
		return nil, err
	}
	defer bf.Close()
	acc := newAccumulator(shape)
	acc.reserveTrusted(bf.Hint)
	if err := acc.readAll(bf.BinaryReader); err != nil {
		return nil, err
	}
	if acc.len() == 0 {
		return nil, formatErr(path, -1, ErrEmpty, "no records")
	}
	return acc.set(path, classes)
}

// readBinaryFileInto appends the records of path to acc.
func readBinaryFileInto(acc *accumulator, path string, numClasses int) error {
	bf, err := OpenBinaryFile(path, acc.shape, numClasses)
	if err != nil {
		return err
	}
	defer bf.Close()
	n := acc.len()
	if err := acc.readAll(bf.BinaryReader); err != nil {
		return err
	}
	if acc.len() == n {
		return formatErr(path, -1, ErrEmpty, "no records")
	}
	return nil
}

// WriteBinary writes s as planar binary records to w, pixels rounded to the
// nearest 1/255 (values outside [0, 1] are clamped). Labels must fit a byte.
func WriteBinary(w io.Writer, s *Set) error {
	n, c, h, wd, err := s.Images.NCHW()
	if err != nil {
		return err
	}
	if n != len(s.Labels) {
		return formatErr(s.Name, -1, ErrCount, "%d images but %d labels", n, len(s.Labels))
	}
	p := c * h * wd
	buf := make([]byte, 1+p)
	for i := 0; i < n; i++ {
		l := s.Labels[i]
		if l < 0 || l > 255 {
			return formatErr(s.Name, i, ErrLabel, "label %d does not fit a byte", l)
		}
		buf[0] = byte(l)
		for k, v := range s.Images.Data[i*p : (i+1)*p] {
			buf[1+k] = unitToByte(v)
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// WriteBinaryFile writes s as binary records to path atomically (temporary
// file and rename), gzip-compressed when path ends in ".gz". The gzip header
// carries no name or time, so equal sets give equal files.
func WriteBinaryFile(path string, s *Set) error {
	return safefile.Write(path, func(w io.Writer) error {
		if !strings.HasSuffix(path, ".gz") {
			return WriteBinary(w, s)
		}
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return err
		}
		if err := WriteBinary(zw, s); err != nil {
			return err
		}
		return zw.Close()
	})
}

// Quantize rounds every pixel of s in place to the nearest multiple of
// 1/255, the values a binary record file keeps.
func Quantize(s *Set) {
	for i, v := range s.Images.Data {
		s.Images.Data[i] = byteToUnit[unitToByte(v)]
	}
}
