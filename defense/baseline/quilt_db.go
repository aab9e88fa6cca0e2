package baseline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/tensor"
)

// PatchDB is the database of clean patches image quilting draws from (Guo
// et al. 2018, section 4, after Efros and Freeman 2001): Len patches of
// Channels x Patch x Patch pixels in [0,1], each flattened in (channel,
// row, column) order in Data. A PatchDB is read-only once built and safe for
// concurrent use.
type PatchDB struct {
	Patch    int
	Channels int
	Data     []float32
	norms    []float32 // squared norm of each patch, for the kNN search
}

// Len returns the number of patches.
func (db *PatchDB) Len() int { return len(db.Data) / db.dim() }

func (db *PatchDB) dim() int { return db.Channels * db.Patch * db.Patch }

// patchAt returns the i-th patch (a view).
func (db *PatchDB) patchAt(i int) []float32 { d := db.dim(); return db.Data[i*d : (i+1)*d] }

func (db *PatchDB) computeNorms() {
	d := db.dim()
	n := len(db.Data) / d
	db.norms = make([]float32, n)
	for i := 0; i < n; i++ {
		var s float32
		for _, v := range db.Data[i*d : (i+1)*d] {
			s += v * v
		}
		db.norms[i] = s
	}
}

// PatchDBOptions configures BuildPatchDB.
type PatchDBOptions struct {
	// Patch is the patch side in pixels. Default 5, Guo et al.'s.
	Patch int
	// Stride is the step between the patch positions considered in each
	// training image. Default 1 (every position).
	Stride int
	// MaxPatches caps the database size: when the training set offers more
	// patches, MaxPatches of them are drawn uniformly without replacement.
	// Default 100000 (Guo et al. use 1,000,000 ImageNet patches; the kNN
	// search costs time linear in this number). 0 keeps them all.
	MaxPatches int
	// Seed seeds the subsampling. Default 1.
	Seed uint64
}

// DefaultPatchDBOptions returns 5x5 patches at every position, at most
// 100,000 of them.
func DefaultPatchDBOptions() PatchDBOptions {
	return PatchDBOptions{Patch: 5, Stride: 1, MaxPatches: 100000, Seed: 1}
}

// Validate reports a *ParamError for an out-of-range option.
func (o PatchDBOptions) Validate() error {
	bad := func(f string, v any, r string) error {
		return &ParamError{Defense: "quilt", Field: f, Value: v, Reason: r}
	}
	switch {
	case o.Patch < 2 || o.Patch > maxQuiltPatch:
		return bad("Patch", o.Patch, fmt.Sprintf("must be in [2, %d]", maxQuiltPatch))
	case o.Stride < 1:
		return bad("Stride", o.Stride, "must be >= 1")
	case o.MaxPatches < 0:
		return bad("MaxPatches", o.MaxPatches, "must be >= 0")
	}
	return nil
}

const (
	maxQuiltPatch    = 64
	maxQuiltChannels = 16
	patchDBMagic     = "STLQDB01"
)

// BuildPatchDB extracts the patches of a clean training batch (N, C, H, W)
// in [0,1]. It checks ctx once per image. It returns a *ParamError for bad
// options or images smaller than a patch, and the input errors of Apply for
// a bad batch.
func BuildPatchDB(ctx context.Context, train *tensor.Tensor, opts PatchDBOptions) (*PatchDB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	g, err := newPatchGrid("quilt", train, opts.Patch, opts.Stride)
	if err != nil {
		return nil, err
	}
	perImage := g.ny * g.nx
	total := g.n * perImage
	keep := total
	if opts.MaxPatches > 0 && opts.MaxPatches < total {
		keep = opts.MaxPatches
	}
	// Choose which patch indices to keep, in increasing order so the
	// database follows the training set's order.
	var chosen []bool
	if keep < total {
		chosen = make([]bool, total)
		rng := rand.New(rand.NewPCG(opts.Seed, 0x0_9a7c4))
		for _, t := range sampleDistinct(rng, total, keep) {
			chosen[t] = true
		}
	}
	db := &PatchDB{Patch: opts.Patch, Channels: g.c}
	db.Data = make([]float32, 0, keep*db.dim())
	for t := 0; t < total; t++ {
		if t%perImage == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if chosen == nil || chosen[t] {
			db.Data = g.appendPatch(db.Data, t)
		}
	}
	db.computeNorms()
	return db, nil
}

// patchGrid is a batch of training images (N, C, H, W) and the positions
// of patches of a side and stride in them, numbered image by image in
// raster order: what the quilting database and the D3 dictionary are drawn
// from.
type patchGrid struct {
	x                     *tensor.Tensor
	n, c, h, w            int
	patch, stride, ny, nx int
}

// newPatchGrid checks train as the training batch of the named baseline
// (the input errors of Apply, at most 16 channels, sides of at least one
// patch: a *ChannelsError or *ParamError otherwise).
func newPatchGrid(name string, train *tensor.Tensor, patch, stride int) (*patchGrid, error) {
	x, n, c, h, w, err := baselineInput(name, train)
	if err != nil {
		return nil, err
	}
	if c > maxQuiltChannels {
		return nil, &ChannelsError{Defense: name, Want: []int{1, maxQuiltChannels}, Got: c}
	}
	if h < patch || w < patch {
		return nil, &ParamError{Defense: name, Field: "Patch", Value: patch, Reason: fmt.Sprintf("larger than the %dx%d training images", h, w)}
	}
	return &patchGrid{x: x, n: n, c: c, h: h, w: w, patch: patch, stride: stride,
		ny: (h-patch)/stride + 1, nx: (w-patch)/stride + 1}, nil
}

// appendPatch appends patch number t, flattened in (channel, row,
// column) order, to dst.
func (g *patchGrid) appendPatch(dst []float32, t int) []float32 {
	plane := g.h * g.w
	img := g.x.Data[(t/(g.ny*g.nx))*g.c*plane:]
	y0, x0 := (t%(g.ny*g.nx))/g.nx*g.stride, t%g.nx*g.stride
	for ch := 0; ch < g.c; ch++ {
		for r := 0; r < g.patch; r++ {
			dst = append(dst, img[ch*plane+(y0+r)*g.w+x0:][:g.patch]...)
		}
	}
	return dst
}

// ErrPatchDBFormat marks a malformed patch database file.
var ErrPatchDBFormat = errors.New("malformed patch database")

// Encode writes db in its binary format: the 8-byte magic "STLQDB01", the
// patch side and the channel count as little-endian uint32, the number of
// patches as a little-endian uint64, then the pixel values as little-endian
// float32.
func (db *PatchDB) Encode(w io.Writer) error {
	var hdr [24]byte
	copy(hdr[:8], patchDBMagic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(db.Patch))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(db.Channels))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(db.Len()))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if err := writeFloat32s(w, db.Data); err != nil {
		return err
	}
	return nil
}

// DecodePatchDB reads a database written by Encode. The header is checked
// before anything is allocated and the values are read in chunks, so a
// corrupt count cannot make it allocate more than the input holds. A
// truncated input returns an error wrapping io.ErrUnexpectedEOF; a malformed
// one (bad magic, sizes out of range, values outside [0,1]) one wrapping
// ErrPatchDBFormat.
func DecodePatchDB(r io.Reader) (*PatchDB, error) {
	var hdr [24]byte
	if err := readHeader(r, hdr[:], patchDBMagic, "patch database", ErrPatchDBFormat); err != nil {
		return nil, err
	}
	P := binary.LittleEndian.Uint32(hdr[8:])
	C := binary.LittleEndian.Uint32(hdr[12:])
	n := binary.LittleEndian.Uint64(hdr[16:])
	if P < 2 || P > maxQuiltPatch || C < 1 || C > maxQuiltChannels {
		return nil, fmt.Errorf("%w: patch %d, channels %d out of range", ErrPatchDBFormat, P, C)
	}
	d := uint64(P) * uint64(P) * uint64(C)
	if n < 1 || n > (1<<31)/d {
		return nil, fmt.Errorf("%w: %d patches out of range", ErrPatchDBFormat, n)
	}
	db := &PatchDB{Patch: int(P), Channels: int(C)}
	total := int(n * d)
	// Grow with what is actually read, so that a header claiming a large
	// database costs nothing until its values arrive.
	db.Data = make([]float32, 0, min(total, f32Chunk))
	chunk := make([]float32, min(total, f32Chunk))
	for len(db.Data) < total {
		m := min(total-len(db.Data), f32Chunk)
		if err := readFloat32s(r, chunk[:m]); err != nil {
			return nil, fmt.Errorf("patch database values: %w", err)
		}
		for _, v := range chunk[:m] {
			if !(v >= 0 && v <= 1) {
				return nil, fmt.Errorf("%w: value %v at %d outside [0,1]", ErrPatchDBFormat, v, len(db.Data))
			}
			db.Data = append(db.Data, v)
		}
	}
	db.computeNorms()
	return db, nil
}

// Save writes db to path atomically.
func (db *PatchDB) Save(path string) error {
	return safefile.Write(path, db.Encode)
}

// LoadPatchDB reads a database saved by Save.
func LoadPatchDB(path string) (*PatchDB, error) { return loadFile(path, DecodePatchDB) }
