// Package npy reads and writes NumPy .npy files (format versions 1.0 to 3.0)
// as tensors, so that dictionaries, images and adversarial sets move between
// this project and NumPy/SPORCO unchanged.
//
// Read accepts little- and big-endian float32, float64, uint8, int32 and
// int64 arrays in C or Fortran order and returns float32 values in C order
// with the file's shape. Write always writes little-endian float32 ('<f4') in
// C order, so a float32 tensor written and read back is bit-identical.
// ReadInts and WriteInts do the same for integer label arrays ('<i8').
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/tensor"
)

var magic = []byte("\x93NUMPY")

// MaxElements bounds the number of elements a file may declare; larger
// headers are rejected before anything is allocated.
const MaxElements = 1 << 31

// FormatError reports a malformed .npy header or an unsupported layout.
type FormatError struct{ Msg string }

func (e *FormatError) Error() string { return "npy: " + e.Msg }

func formatErr(format string, a ...any) error { return &FormatError{fmt.Sprintf(format, a...)} }

// Header is the parsed description of an array.
type Header struct {
	Descr   string // e.g. "<f4"
	Fortran bool
	Shape   []int
}

// kind returns the element decoder for the header's dtype.
func (h *Header) elem() (size int, order binary.ByteOrder, kind byte, err error) {
	d := h.Descr
	if len(d) < 3 {
		return 0, nil, 0, formatErr("unsupported dtype %q", d)
	}
	switch d[0] {
	case '<', '|', '=':
		order = binary.LittleEndian
	case '>':
		order = binary.BigEndian
	default:
		return 0, nil, 0, formatErr("unsupported dtype %q", d)
	}
	switch d[1:] {
	case "f4":
		return 4, order, 'f', nil
	case "f8":
		return 8, order, 'f', nil
	case "u1":
		return 1, order, 'u', nil
	case "i4":
		return 4, order, 'i', nil
	case "i8":
		return 8, order, 'i', nil
	}
	return 0, nil, 0, formatErr("unsupported dtype %q (want f4, f8, u1, i4 or i8)", d)
}

// ReadHeader reads the magic string and header dictionary from r, leaving r
// at the first data byte. A truncated header is io.ErrUnexpectedEOF.
func ReadHeader(r io.Reader) (*Header, error) {
	pre := make([]byte, 8)
	if _, err := io.ReadFull(r, pre); err != nil {
		return nil, eof(err)
	}
	if !bytes.Equal(pre[:6], magic) {
		return nil, formatErr("not a .npy file (bad magic)")
	}
	var hlen int
	switch pre[6] {
	case 1:
		b := make([]byte, 2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, eof(err)
		}
		hlen = int(binary.LittleEndian.Uint16(b))
	case 2, 3:
		b := make([]byte, 4)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, eof(err)
		}
		hlen = int(binary.LittleEndian.Uint32(b))
		if hlen > 1<<20 {
			return nil, formatErr("header length %d too large", hlen)
		}
	default:
		return nil, formatErr("unsupported format version %d.%d", pre[6], pre[7])
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, eof(err)
	}
	return parseHeader(string(hb))
}

func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseHeader parses the Python dict literal of a .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (8, 8, 3, 64), }.
func parseHeader(s string) (*Header, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, formatErr("header is not a dictionary: %.60q", s)
	}
	h := &Header{}
	var haveDescr, haveOrder, haveShape bool
	body := s[1 : len(s)-1]
	for len(strings.TrimSpace(body)) > 0 {
		body = strings.TrimLeft(body, " ,")
		if body == "" {
			break
		}
		key, rest, err := quoted(body)
		if err != nil {
			return nil, err
		}
		rest = strings.TrimLeft(rest, " ")
		if !strings.HasPrefix(rest, ":") {
			return nil, formatErr("header: missing ':' after %q", key)
		}
		rest = strings.TrimLeft(rest[1:], " ")
		switch key {
		case "descr":
			h.Descr, rest, err = quoted(rest)
			if err != nil {
				return nil, err
			}
			haveDescr = true
		case "fortran_order":
			switch {
			case strings.HasPrefix(rest, "False"):
				h.Fortran, rest = false, rest[5:]
			case strings.HasPrefix(rest, "True"):
				h.Fortran, rest = true, rest[4:]
			default:
				return nil, formatErr("header: bad fortran_order")
			}
			haveOrder = true
		case "shape":
			if !strings.HasPrefix(rest, "(") {
				return nil, formatErr("header: shape is not a tuple")
			}
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return nil, formatErr("header: unterminated shape")
			}
			n := 1
			h.Shape = []int{}
			for _, f := range strings.Split(rest[1:end], ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				d, err := strconv.Atoi(strings.TrimSuffix(f, "L"))
				if err != nil || d < 0 {
					return nil, formatErr("header: bad dimension %q", f)
				}
				if d > 0 && n > MaxElements/d {
					return nil, formatErr("header: shape %s has more than %d elements", rest[:end+1], MaxElements)
				}
				n *= d
				h.Shape = append(h.Shape, d)
			}
			rest = rest[end+1:]
			haveShape = true
		default:
			return nil, formatErr("header: unknown key %q", key)
		}
		body = rest
	}
	if !haveDescr || !haveOrder || !haveShape {
		return nil, formatErr("header lacks descr, fortran_order or shape")
	}
	return h, nil
}

func quoted(s string) (val, rest string, err error) {
	if len(s) == 0 || (s[0] != '\'' && s[0] != '"') {
		return "", "", formatErr("header: expected a quoted string at %.20q", s)
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", formatErr("header: unterminated string")
	}
	return s[1 : 1+end], s[2+end:], nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// readRaw reads the data of h from r as float64 values in C order. Memory
// grows with the bytes actually read, so a header that claims more data than
// the input holds fails with io.ErrUnexpectedEOF without a large allocation.
func readRaw(r io.Reader, h *Header, put func(i int, v float64)) error {
	size, order, kind, err := h.elem()
	if err != nil {
		return err
	}
	n := numel(h.Shape)
	buf := make([]byte, 1<<16)
	per := len(buf) / size
	for i := 0; i < n; i += per {
		m := min(per, n-i)
		b := buf[:m*size]
		if _, err := io.ReadFull(r, b); err != nil {
			return eof(err)
		}
		for j := 0; j < m; j++ {
			e := b[j*size : (j+1)*size]
			var v float64
			switch {
			case kind == 'f' && size == 4:
				v = float64(math.Float32frombits(order.Uint32(e)))
			case kind == 'f':
				v = math.Float64frombits(order.Uint64(e))
			case kind == 'u':
				v = float64(e[0])
			case size == 4:
				v = float64(int32(order.Uint32(e)))
			default:
				v = float64(int64(order.Uint64(e)))
			}
			put(i+j, v)
		}
	}
	return nil
}

// fortranToC maps the flat index of a Fortran-ordered array to its C-order
// index.
func fortranToC(shape []int) func(int) int {
	return func(f int) int {
		c := 0
		stride := 1
		idx := make([]int, len(shape))
		for k := 0; k < len(shape); k++ {
			idx[k] = f % shape[k]
			f /= shape[k]
		}
		for k := len(shape) - 1; k >= 0; k-- {
			c += idx[k] * stride
			stride *= shape[k]
		}
		return c
	}
}

// Read decodes a .npy array from r into a float32 tensor in C order. Integer
// and float64 data are converted to float32. It returns a *FormatError for a
// malformed or unsupported file and io.ErrUnexpectedEOF for a truncated one.
func Read(r io.Reader) (*tensor.Tensor, error) {
	br := bufio.NewReader(r)
	h, err := ReadHeader(br)
	if err != nil {
		return nil, err
	}
	data := make([]float32, 0, min(numel(h.Shape), 1<<20))
	if err := readRaw(br, h, func(_ int, v float64) { data = append(data, float32(v)) }); err != nil {
		return nil, err
	}
	if h.Fortran && len(h.Shape) > 1 {
		c := make([]float32, len(data))
		idx := fortranToC(h.Shape)
		for i, v := range data {
			c[idx(i)] = v
		}
		data = c
	}
	return &tensor.Tensor{Shape: h.Shape, Data: data}, nil
}

// ReadInts decodes a one-dimensional integer (or integral float) array, such
// as class labels.
func ReadInts(r io.Reader) ([]int, error) {
	t, err := Read(r)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != 1 {
		return nil, formatErr("labels must be one-dimensional, got shape %v", t.Shape)
	}
	out := make([]int, len(t.Data))
	for i, v := range t.Data {
		if v != float32(math.Trunc(float64(v))) {
			return nil, formatErr("value %v at %d is not an integer", v, i)
		}
		out[i] = int(v)
	}
	return out, nil
}

func writeHeader(w io.Writer, descr string, shape []int) error {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh)
	// Pad so that magic(6)+version(2)+len(2)+dict+'\n' is a multiple of 64.
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	dict += strings.Repeat(" ", pad) + "\n"
	if len(dict) > math.MaxUint16 {
		return formatErr("shape %v too long for a version 1.0 header", shape)
	}
	hdr := append([]byte{}, magic...)
	hdr = append(hdr, 1, 0)
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(len(dict)))
	hdr = append(hdr, dict...)
	_, err := w.Write(hdr)
	return err
}

// Write encodes t as a little-endian float32 C-order .npy array. It returns
// a *tensor.ShapeError when t's shape does not match its data.
func Write(w io.Writer, t *tensor.Tensor) error {
	if numel(t.Shape) != len(t.Data) {
		return &tensor.ShapeError{Op: "npy.Write", Want: t.Shape, Got: []int{len(t.Data)}}
	}
	rw, err := NewRowWriter(w, t.Shape)
	if err != nil {
		return err
	}
	if err := rw.Write(t); err != nil {
		return err
	}
	return rw.Close()
}

// RowWriter writes a little-endian float32 C-order .npy array of a shape
// known in advance by blocks of rows (entries along the first dimension),
// so that an array larger than memory is written from its parts; the
// bytes are those Write writes for the whole array. Not safe for
// concurrent use.
type RowWriter struct {
	w          io.Writer
	shape      []int
	rows, done int
	buf        []byte
}

// NewRowWriter writes the header of an array of shape (at least one
// dimension) to w and returns the writer of its rows.
func NewRowWriter(w io.Writer, shape []int) (*RowWriter, error) {
	if len(shape) == 0 || slices.ContainsFunc(shape, func(d int) bool { return d < 0 }) {
		return nil, formatErr("shape %v: want at least one dimension, none negative", shape)
	}
	if err := writeHeader(w, "<f4", shape); err != nil {
		return nil, err
	}
	return &RowWriter{w: w, shape: append([]int(nil), shape...), rows: shape[0], buf: make([]byte, 0, 1<<16)}, nil
}

// Write appends the rows of t, whose shape past the first dimension must
// be the array's, returning a *tensor.ShapeError otherwise or when they
// would exceed the array's rows.
func (rw *RowWriter) Write(t *tensor.Tensor) error {
	if len(t.Shape) != len(rw.shape) || !slices.Equal(t.Shape[1:], rw.shape[1:]) || numel(t.Shape) != len(t.Data) || rw.done+t.Shape[0] > rw.rows {
		return &tensor.ShapeError{Op: "npy.RowWriter.Write", Want: append([]int{rw.rows - rw.done}, rw.shape[1:]...), Got: t.Shape}
	}
	for i, v := range t.Data {
		rw.buf = binary.LittleEndian.AppendUint32(rw.buf, math.Float32bits(v))
		if len(rw.buf) == cap(rw.buf) || i == len(t.Data)-1 {
			if _, err := rw.w.Write(rw.buf); err != nil {
				return err
			}
			rw.buf = rw.buf[:0]
		}
	}
	rw.done += t.Shape[0]
	return nil
}

// Close returns an error unless every row of the array was written; it
// does not close the underlying writer.
func (rw *RowWriter) Close() error {
	if rw.done != rw.rows {
		return formatErr("%d of %d rows written", rw.done, rw.rows)
	}
	return nil
}

// WriteInts encodes labels as a one-dimensional little-endian int64 array.
func WriteInts(w io.Writer, v []int) error {
	if err := writeHeader(w, "<i8", []int{len(v)}); err != nil {
		return err
	}
	buf := make([]byte, 0, 8*len(v))
	for _, x := range v {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(int64(x)))
	}
	_, err := w.Write(buf)
	return err
}

// ReadFile reads a .npy file; errors name the file.
func ReadFile(path string) (*tensor.Tensor, error) {
	return readFile(path, func(f *os.File) (*tensor.Tensor, error) { return Read(f) })
}

// readFile opens path and decodes it with read; errors name the file.
func readFile[T any](path string, read func(*os.File) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	v, err := read(f)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// WriteFile atomically writes t to path as float32 .npy.
func WriteFile(path string, t *tensor.Tensor) error {
	return safefile.Write(path, func(w io.Writer) error { return Write(w, t) })
}

// ReadIntsFile reads a one-dimensional integer .npy file; errors name the file.
func ReadIntsFile(path string) ([]int, error) {
	return readFile(path, func(f *os.File) ([]int, error) { return ReadInts(f) })
}

// WriteIntsFile atomically writes labels to path as int64 .npy.
func WriteIntsFile(path string, v []int) error {
	return safefile.Write(path, func(w io.Writer) error { return WriteInts(w, v) })
}

// ReadRows decodes rows lo..hi-1 of the first axis of the .npy array in r
// (images lo..hi-1 of an (N, C, H, W) file) into a float32 tensor of shape
// (hi-lo, ...), seeking past the rows before lo: only those rows are read.
// A Fortran-ordered array, whose rows are not contiguous, is read whole and
// cut. It returns a *FormatError for a malformed file or a range outside
// 0 <= lo <= hi <= N, and io.ErrUnexpectedEOF for a truncated one.
func ReadRows(r io.ReadSeeker, lo, hi int) (*tensor.Tensor, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if len(h.Shape) == 0 {
		return nil, formatErr("a scalar has no rows")
	}
	if lo < 0 || hi < lo || hi > h.Shape[0] {
		return nil, formatErr("rows %d..%d of an array of %d", lo, hi, h.Shape[0])
	}
	size, _, _, err := h.elem()
	if err != nil {
		return nil, err
	}
	row := numel(h.Shape[1:])
	shape := append([]int{hi - lo}, h.Shape[1:]...)
	if h.Fortran && len(h.Shape) > 1 {
		data := make([]float32, 0, min(numel(h.Shape), 1<<20))
		if err := readRaw(bufio.NewReader(r), h, func(_ int, v float64) { data = append(data, float32(v)) }); err != nil {
			return nil, err
		}
		whole := make([]float32, len(data))
		idx := fortranToC(h.Shape)
		for i, v := range data {
			whole[idx(i)] = v
		}
		return &tensor.Tensor{Shape: shape, Data: whole[lo*row : hi*row]}, nil
	}
	// The rows must be in the input: checked before allocating them, so
	// that the result is allocated once, at its size.
	start, err := r.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	end, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if need := int64(hi) * int64(row) * int64(size); end-start < need {
		return nil, io.ErrUnexpectedEOF
	}
	if _, err := r.Seek(start+int64(lo)*int64(row)*int64(size), io.SeekStart); err != nil {
		return nil, err
	}
	part := &Header{Descr: h.Descr, Shape: shape}
	data := make([]float32, numel(shape))
	if err := readRaw(bufio.NewReader(r), part, func(i int, v float64) { data[i] = float32(v) }); err != nil {
		return nil, err
	}
	return &tensor.Tensor{Shape: shape, Data: data}, nil
}

// ReadRowsFile reads rows lo..hi-1 of the .npy file at path (ReadRows);
// errors name the file.
func ReadRowsFile(path string, lo, hi int) (*tensor.Tensor, error) {
	return readFile(path, func(f *os.File) (*tensor.Tensor, error) { return ReadRows(f, lo, hi) })
}

// concatBlock bounds the bytes of rows ConcatFiles holds at a time (a
// variable for the tests).
var concatBlock = 16 << 20

// ConcatFiles atomically writes to path the float32 arrays of the .npy files
// parts concatenated along their first axis, in order, reading each by
// blocks of rows (ReadRows), so that arrays larger than memory are merged;
// the bytes are those Write writes for the whole array. Every part must
// have the first one's shape past the first axis; the merged shape is
// returned. path must not be one of the parts.
func ConcatFiles(path string, parts []string) ([]int, error) {
	if len(parts) == 0 {
		return nil, formatErr("no arrays to concatenate")
	}
	rows := make([]int, len(parts))
	var shape []int
	for i, p := range parts {
		h, err := ReadHeaderFile(p)
		if err != nil {
			return nil, err
		}
		if len(h.Shape) == 0 {
			return nil, fmt.Errorf("%s: %w", p, formatErr("a scalar has no rows"))
		}
		if i == 0 {
			shape = slices.Clone(h.Shape)
		} else if !slices.Equal(h.Shape[1:], shape[1:]) {
			return nil, fmt.Errorf("%s: %w", p, formatErr("shape %v, want (N, %v) as in %s", h.Shape, shape[1:], parts[0]))
		} else {
			shape[0] += h.Shape[0]
		}
		rows[i] = h.Shape[0]
	}
	read := func(part, lo, hi int) (*tensor.Tensor, error) { return ReadRowsFile(parts[part], lo, hi) }
	if err := WriteRowsFile(path, shape, rows, concatBlock, read); err != nil {
		return nil, err
	}
	return shape, nil
}

// WriteRowsFile atomically writes to path a float32 array of shape whose
// rows come, in order, from parts: rows[i] rows of part i, read by
// read(i, lo, hi) in blocks of at most blockBytes (at least one row), so
// that an array larger than memory is written from its parts (RowWriter).
func WriteRowsFile(path string, shape, rows []int, blockBytes int, read func(part, lo, hi int) (*tensor.Tensor, error)) error {
	block := max(1, blockBytes/(4*max(1, numel(shape[1:]))))
	return safefile.Write(path, func(w io.Writer) error {
		rw, err := NewRowWriter(w, shape)
		if err != nil {
			return err
		}
		for i, n := range rows {
			for lo := 0; lo < n; lo += block {
				t, err := read(i, lo, min(lo+block, n))
				if err != nil {
					return err
				}
				if err := rw.Write(t); err != nil {
					return err
				}
			}
		}
		return rw.Close()
	})
}

// ReadHeaderFile reads the header of the .npy file at path; errors name
// the file.
func ReadHeaderFile(path string) (*Header, error) {
	return readFile(path, func(f *os.File) (*Header, error) { return ReadHeader(f) })
}
