package csc

import (
	"fmt"
	"io"
	"math"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Dictionary is a set of M convolutional filters of C channels and R×S
// pixels, stored as Filters[((m*C+c)*R+r)*S+s]. A filter's origin is its
// top-left pixel (as in SPORCO: filters are zero-padded to the image size
// at the top-left corner). A Dictionary must not be modified while a Coder
// or Projection built on it is in use.
type Dictionary struct {
	M, C, R, S int
	Filters    []float32
}

// NewDictionary wraps a (M, C, R, S) tensor (without copying). It returns a
// *tensor.ShapeError for another rank and a *tensor.NonFiniteError for NaN
// or infinite values.
func NewDictionary(t *tensor.Tensor) (*Dictionary, error) {
	if len(t.Shape) != 4 {
		return nil, &tensor.ShapeError{Op: "csc.NewDictionary", Want: []int{-1, -1, -1, -1}, Got: t.Shape}
	}
	d := &Dictionary{M: t.Shape[0], C: t.Shape[1], R: t.Shape[2], S: t.Shape[3], Filters: t.Data}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// Validate checks the sizes and that every value is finite.
func (d *Dictionary) Validate() error {
	if d.M <= 0 || d.C <= 0 || d.R <= 0 || d.S <= 0 || len(d.Filters) != d.M*d.C*d.R*d.S {
		return &tensor.ShapeError{Op: "csc.Dictionary", Want: []int{d.M, d.C, d.R, d.S}, Got: []int{len(d.Filters)}}
	}
	if err := tensor.CheckFinite(d.Filters); err != nil {
		return fmt.Errorf("csc: dictionary: %w", err)
	}
	return nil
}

// Tensor returns the filters as a (M, C, R, S) tensor sharing memory.
func (d *Dictionary) Tensor() *tensor.Tensor {
	return &tensor.Tensor{Shape: []int{d.M, d.C, d.R, d.S}, Data: d.Filters}
}

// Clone returns a deep copy.
func (d *Dictionary) Clone() *Dictionary {
	c := *d
	c.Filters = append([]float32(nil), d.Filters...)
	return &c
}

// dictionaryFromSPORCO converts a SPORCO dictionary array of shape
// (R, S, C, M), or (R, S, M) for a single-channel one, into a new
// Dictionary.
func dictionaryFromSPORCO(t *tensor.Tensor) (*Dictionary, error) {
	sh := t.Shape
	var r, s, c, m int
	switch len(sh) {
	case 3:
		r, s, c, m = sh[0], sh[1], 1, sh[2]
	case 4:
		r, s, c, m = sh[0], sh[1], sh[2], sh[3]
	default:
		return nil, &tensor.ShapeError{Op: "csc: SPORCO dictionary (R,S,C,M)", Want: []int{-1, -1, -1, -1}, Got: sh}
	}
	if r*s*c*m != len(t.Data) || r*s*c*m == 0 {
		return nil, &tensor.ShapeError{Op: "csc: SPORCO dictionary", Want: sh, Got: []int{len(t.Data)}}
	}
	d := &Dictionary{M: m, C: c, R: r, S: s, Filters: make([]float32, len(t.Data))}
	for i := 0; i < r; i++ {
		for j := 0; j < s; j++ {
			for k := 0; k < c; k++ {
				for l := 0; l < m; l++ {
					d.Filters[((l*c+k)*r+i)*s+j] = t.Data[((i*s+j)*c+k)*m+l]
				}
			}
		}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// sporco returns the dictionary as a new (R, S, C, M) tensor, SPORCO's
// layout.
func (d *Dictionary) sporco() *tensor.Tensor {
	t := tensor.New(d.R, d.S, d.C, d.M)
	for l := 0; l < d.M; l++ {
		for k := 0; k < d.C; k++ {
			for i := 0; i < d.R; i++ {
				for j := 0; j < d.S; j++ {
					t.Data[((i*d.S+j)*d.C+k)*d.M+l] = d.Filters[((l*d.C+k)*d.R+i)*d.S+j]
				}
			}
		}
	}
	return t
}

// DecodeDictionary reads a dictionary from a .npy stream in SPORCO's
// layout, (R, S, C, M), or (R, S, M) for a single-channel one: the
// dictionary files' format, readable by SPORCO. A truncated stream gives
// io.ErrUnexpectedEOF, a malformed one an *npy.FormatError, another rank
// a *tensor.ShapeError and NaN or infinite values a
// *tensor.NonFiniteError.
func DecodeDictionary(r io.Reader) (*Dictionary, error) {
	t, err := npy.Read(r)
	if err != nil {
		return nil, err
	}
	return dictionaryFromSPORCO(t)
}

// EncodeDictionary writes d to w as a .npy array in SPORCO's (R, S, C, M)
// layout.
func EncodeDictionary(w io.Writer, d *Dictionary) error {
	return npy.Write(w, d.sporco())
}

// ReadDictionary reads a dictionary .npy file (see DecodeDictionary).
func ReadDictionary(path string) (*Dictionary, error) {
	t, err := npy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := dictionaryFromSPORCO(t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// WriteDictionary writes d atomically (temporary file and rename) to path
// as a .npy file in SPORCO's (R, S, C, M) layout.
func WriteDictionary(path string, d *Dictionary) error {
	return safefile.Write(path, func(w io.Writer) error { return EncodeDictionary(w, d) })
}

// filterNorm returns the L2 norm of filter m over all its channels.
func (d *Dictionary) filterNorm(m int) float64 {
	n := d.C * d.R * d.S
	s := 0.0
	for _, v := range d.Filters[m*n : (m+1)*n] {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// ImagesFromSPORCO converts SPORCO's image layout, (H, W), (H, W, C) or
// (H, W, C, N), into a new (N, C, H, W) batch.
func ImagesFromSPORCO(t *tensor.Tensor) (*tensor.Tensor, error) {
	sh := t.Shape
	h, w, c, n := 0, 0, 1, 1
	switch len(sh) {
	case 2:
		h, w = sh[0], sh[1]
	case 3:
		h, w, c = sh[0], sh[1], sh[2]
	case 4:
		h, w, c, n = sh[0], sh[1], sh[2], sh[3]
	default:
		return nil, &tensor.ShapeError{Op: "csc.ImagesFromSPORCO (H,W,C,N)", Want: []int{-1, -1, -1, -1}, Got: sh}
	}
	if h*w*c*n != len(t.Data) {
		return nil, &tensor.ShapeError{Op: "csc.ImagesFromSPORCO", Want: sh, Got: []int{len(t.Data)}}
	}
	out := tensor.New(n, c, h, w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for k := 0; k < c; k++ {
				for i := 0; i < n; i++ {
					out.Data[((i*c+k)*h+y)*w+x] = t.Data[((y*w+x)*c+k)*n+i]
				}
			}
		}
	}
	return out, nil
}

// ImagesToSPORCO converts a (N, C, H, W) batch to SPORCO's (H, W, C, N)
// layout, or (H, W, C) when dropN is set and N is 1.
func ImagesToSPORCO(t *tensor.Tensor, dropN bool) (*tensor.Tensor, error) {
	n, c, h, w, err := t.NCHW()
	if err != nil {
		return nil, err
	}
	out := tensor.New(h, w, c, n)
	for i := 0; i < n; i++ {
		for k := 0; k < c; k++ {
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					out.Data[((y*w+x)*c+k)*n+i] = t.Data[((i*c+k)*h+y)*w+x]
				}
			}
		}
	}
	if dropN && n == 1 {
		out.Shape = out.Shape[:3]
	}
	return out, nil
}

// MapsToSPORCO gathers the coefficient maps of the results of N images,
// all of one shape, into a new tensor in SPORCO's layout (H, W, Cx, N, M):
// Cx = 1 for maps shared by the channels, C when a single-channel
// dictionary coded the C channels of colour images separately (X of shape
// (C, M, H, W)). It returns a *tensor.ShapeError for results of different
// shapes or without maps.
func MapsToSPORCO(res []*Result) (*tensor.Tensor, error) {
	if len(res) == 0 || res[0] == nil || res[0].X == nil {
		return nil, &tensor.ShapeError{Op: "csc.MapsToSPORCO: no coefficient maps", Want: []int{-1, -1, -1}, Got: nil}
	}
	sh := res[0].X.Shape
	if len(sh) == 3 {
		sh = append([]int{1}, sh...)
	}
	if len(sh) != 4 {
		return nil, &tensor.ShapeError{Op: "csc.MapsToSPORCO", Want: []int{-1, -1, -1, -1}, Got: res[0].X.Shape}
	}
	cx, m, h, w := sh[0], sh[1], sh[2], sh[3]
	n := len(res)
	x := tensor.New(h, w, cx, n, m)
	for i, r := range res {
		if r == nil || r.X == nil || len(r.X.Data) != cx*m*h*w {
			var got []int
			if r != nil && r.X != nil {
				got = r.X.Shape
			}
			return nil, &tensor.ShapeError{Op: fmt.Sprintf("csc.MapsToSPORCO: result %d", i), Want: res[0].X.Shape, Got: got}
		}
		for c := 0; c < cx; c++ {
			for k := 0; k < m; k++ {
				for p := 0; p < h*w; p++ {
					x.Data[((p*cx+c)*n+i)*m+k] = r.X.Data[(c*m+k)*h*w+p]
				}
			}
		}
	}
	return x, nil
}
