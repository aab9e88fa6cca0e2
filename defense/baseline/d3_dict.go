package baseline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/tensor"
)

// D3Dictionary is the patch dictionary of D3: Len atoms of Channels x Patch
// x Patch values, each a clean training patch scaled to unit L2 norm,
// flattened in (channel, row, column) order in Data. It is read-only once
// built and safe for concurrent use.
type D3Dictionary struct {
	Patch    int
	Channels int
	Data     []float32
}

// Len returns the number of atoms.
func (d *D3Dictionary) Len() int { return len(d.Data) / d.dim() }

func (d *D3Dictionary) dim() int { return d.Channels * d.Patch * d.Patch }

func (d *D3Dictionary) atom(i int) []float32 { n := d.dim(); return d.Data[i*n : (i+1)*n] }

// check reports whether the sizes are in range and Data holds whole atoms.
func (d *D3Dictionary) check() error {
	if d.Patch < 2 || d.Patch > maxD3Patch || d.Channels < 1 || d.Channels > maxQuiltChannels || len(d.Data) == 0 || len(d.Data)%d.dim() != 0 {
		return fmt.Errorf("%w: patch %d, channels %d, %d values", ErrD3DictionaryFormat, d.Patch, d.Channels, len(d.Data))
	}
	return nil
}

// D3DictionaryOptions configures BuildD3Dictionary.
type D3DictionaryOptions struct {
	// Patch is the patch side in pixels. Default 8 (our choice; the D3
	// text at hand does not give it).
	Patch int
	// Atoms is the dictionary size. Default 10000, the "10K" of the STL
	// paper's Table 3 rows "D3 (10K-5)" and "D3 (10K-4)".
	Atoms int
	// Stride is the step between the patch positions drawn from in each
	// training image. Default 1 (every position).
	Stride int
	// Seed seeds the draw of the atoms. Default 1.
	Seed uint64
}

// DefaultD3DictionaryOptions returns 10,000 atoms of 8x8 patches drawn from
// every position.
func DefaultD3DictionaryOptions() D3DictionaryOptions {
	return D3DictionaryOptions{Patch: 8, Atoms: 10000, Stride: 1, Seed: 1}
}

const (
	maxD3Patch  = 64
	maxD3Atoms  = 1 << 20
	d3DictMagic = "STLD3D01"
	// d3MinNorm is the smallest L2 norm of a training patch taken as an
	// atom: a blank (black) patch cannot be scaled to unit norm.
	d3MinNorm = 1e-3
	// d3NormTol is how far from 1 a decoded atom's norm may be.
	d3NormTol = 1e-3
)

// Validate reports a *ParamError for an out-of-range option.
func (o D3DictionaryOptions) Validate() error {
	bad := func(f string, v any, r string) error {
		return &ParamError{Defense: "d3", Field: f, Value: v, Reason: r}
	}
	switch {
	case o.Patch < 2 || o.Patch > maxD3Patch:
		return bad("Patch", o.Patch, fmt.Sprintf("must be in [2, %d]", maxD3Patch))
	case o.Atoms < 1 || o.Atoms > maxD3Atoms:
		return bad("Atoms", o.Atoms, fmt.Sprintf("must be in [1, %d]", maxD3Atoms))
	case o.Stride < 1:
		return bad("Stride", o.Stride, "must be >= 1")
	}
	return nil
}

// BuildD3Dictionary draws opts.Atoms patches of the clean training batch
// (N, C, H, W) in [0,1] uniformly at random without replacement among the
// patch positions (stride opts.Stride) of all images, skipping blank ones
// (L2 norm below 1e-3), and scales each to unit norm. At most 4*Atoms
// positions are drawn; when too few of them are not blank it returns a
// *ParamError, as for options out of range or images smaller than a patch.
// A bad batch gives the input errors of Apply. It checks ctx once per
// thousand atoms. The result depends only on the batch and the options.
func BuildD3Dictionary(ctx context.Context, train *tensor.Tensor, opts D3DictionaryOptions) (*D3Dictionary, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	g, err := newPatchGrid("d3", train, opts.Patch, opts.Stride)
	if err != nil {
		return nil, err
	}
	total := g.n * g.ny * g.nx
	rng := rand.New(rand.NewPCG(opts.Seed, 0xd3_d1c7))
	draw := sampleDistinct(rng, total, min(total, 4*opts.Atoms))
	dict := &D3Dictionary{Patch: opts.Patch, Channels: g.c}
	d := dict.dim()
	dict.Data = make([]float32, 0, opts.Atoms*d)
	patch := make([]float32, 0, d)
	for k, t := range draw {
		if len(dict.Data) == opts.Atoms*d {
			break
		}
		if k%1000 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		patch = g.appendPatch(patch[:0], t)
		norm := math.Sqrt(dot32(patch, patch))
		if norm < d3MinNorm {
			continue
		}
		for _, v := range patch {
			dict.Data = append(dict.Data, float32(float64(v)/norm))
		}
	}
	if got := len(dict.Data) / d; got < opts.Atoms {
		return nil, &ParamError{Defense: "d3", Field: "Atoms", Value: opts.Atoms,
			Reason: fmt.Sprintf("only %d of the %d patches drawn from %d positions are not blank", got, len(draw), total)}
	}
	return dict, nil
}

// ErrD3DictionaryFormat marks a malformed D3 dictionary file.
var ErrD3DictionaryFormat = errors.New("malformed D3 dictionary")

// Encode writes the dictionary in its binary format: the 8-byte magic
// "STLD3D01", the patch side and the channel count as little-endian
// uint32, the number of atoms as a little-endian uint64, then the values
// as little-endian float32.
func (d *D3Dictionary) Encode(w io.Writer) error {
	if err := d.check(); err != nil {
		return err
	}
	var hdr [24]byte
	copy(hdr[:8], d3DictMagic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(d.Patch))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(d.Channels))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(d.Len()))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	return writeFloat32s(w, d.Data)
}

// DecodeD3Dictionary reads a dictionary written by Encode. The header is
// checked before anything is allocated and the values are read as they
// arrive, so a corrupt count cannot make it allocate more than the input
// holds. A truncated input returns an error wrapping io.ErrUnexpectedEOF; a
// malformed one (bad magic, sizes out of range, an atom whose norm is not
// 1 within 1e-3, a value that is not finite) one wrapping
// ErrD3DictionaryFormat.
func DecodeD3Dictionary(r io.Reader) (*D3Dictionary, error) {
	var hdr [24]byte
	if err := readHeader(r, hdr[:], d3DictMagic, "D3 dictionary", ErrD3DictionaryFormat); err != nil {
		return nil, err
	}
	P := binary.LittleEndian.Uint32(hdr[8:])
	C := binary.LittleEndian.Uint32(hdr[12:])
	n := binary.LittleEndian.Uint64(hdr[16:])
	if P < 2 || P > maxD3Patch || C < 1 || C > maxQuiltChannels {
		return nil, fmt.Errorf("%w: patch %d, channels %d out of range", ErrD3DictionaryFormat, P, C)
	}
	if n < 1 || n > maxD3Atoms {
		return nil, fmt.Errorf("%w: %d atoms out of range", ErrD3DictionaryFormat, n)
	}
	dict := &D3Dictionary{Patch: int(P), Channels: int(C)}
	d := dict.dim()
	data, err := readFloat32sGrow(r, int(n)*d)
	if err != nil {
		return nil, fmt.Errorf("D3 dictionary values: %w", err)
	}
	dict.Data = data
	for i := 0; i < int(n); i++ {
		a := dict.atom(i)
		norm := math.Sqrt(dot32(a, a))
		if !(math.Abs(norm-1) <= d3NormTol) {
			return nil, fmt.Errorf("%w: atom %d has norm %v, want 1", ErrD3DictionaryFormat, i, norm)
		}
	}
	return dict, nil
}

// Save writes the dictionary to path atomically.
func (d *D3Dictionary) Save(path string) error { return safefile.Write(path, d.Encode) }

// LoadD3Dictionary reads a dictionary saved by Save.
func LoadD3Dictionary(path string) (*D3Dictionary, error) {
	return loadFile(path, DecodeD3Dictionary)
}
