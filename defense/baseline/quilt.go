package baseline

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// QuiltOptions configures image quilting (Guo et al. 2018, section 4): the
// image is rebuilt from patches of a clean database. Each patch position of
// a grid with step Patch-Overlap is replaced by one of the K nearest (in L2)
// database patches, picked uniformly at random, and neighbouring patches are
// joined along the minimum-error boundary cut of Efros and Freeman (2001).
// The patch side is the database's.
type QuiltOptions struct {
	// Overlap is the width in pixels shared by neighbouring patches, in
	// [1, Patch-1]. Default 2, Guo et al.'s.
	Overlap int
	// K is the number of nearest patches one is drawn from. Default 10.
	K int
	// Seed seeds the draws. Default 1.
	Seed uint64
}

// DefaultQuiltOptions returns the published parameters: overlap 2, K 10.
func DefaultQuiltOptions() QuiltOptions { return QuiltOptions{Overlap: 2, K: 10, Seed: 1} }

// Validate reports a *ParamError for an out-of-range option; the bounds that
// depend on the database are checked by NewQuilting.
func (o QuiltOptions) Validate() error {
	if o.Overlap < 1 {
		return &ParamError{Defense: "quilt", Field: "Overlap", Value: o.Overlap, Reason: "must be >= 1"}
	}
	if o.K < 1 {
		return &ParamError{Defense: "quilt", Field: "K", Value: o.K, Reason: "must be >= 1"}
	}
	return nil
}

// ErrNoPatchDB is returned when quilting is built without a patch database.
var ErrNoPatchDB = errors.New("defense quilt: no patch database (build one with BuildPatchDB or load one with LoadPatchDB)")

// Quilting is the image quilting defense. It is randomized when K > 1, safe
// for concurrent use, and accepts batches with the database's channel
// count. Images whose side is not Patch + a multiple of Patch-Overlap are
// extended by mirroring, quilted and cropped back.
type Quilting struct {
	db    *PatchDB
	opts  QuiltOptions
	seeds *seedSource
}

// NewQuilting validates opts against db and returns the transform. It
// returns ErrNoPatchDB for a nil or empty db.
func NewQuilting(db *PatchDB, opts QuiltOptions) (*Quilting, error) {
	if db == nil || len(db.Data) == 0 || db.Patch < 2 || db.Channels < 1 || len(db.Data)%db.dim() != 0 {
		return nil, ErrNoPatchDB
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Overlap >= db.Patch {
		return nil, &ParamError{Defense: "quilt", Field: "Overlap", Value: opts.Overlap, Reason: "must be below the database's patch side"}
	}
	if opts.K > db.Len() {
		return nil, &ParamError{Defense: "quilt", Field: "K", Value: opts.K, Reason: "more than the patches in the database"}
	}
	if db.norms == nil {
		db.computeNorms()
	}
	return &Quilting{db: db, opts: opts, seeds: newSeedSource(opts.Seed)}, nil
}

// Name implements defense.Transform.
func (q *Quilting) Name() string { return "Quilting" }

// Skip implements defense.Skipper: it discards the seeds of n images.
func (q *Quilting) Skip(n int) bool { q.seeds.skip(n); return true }

// Randomized implements defense.Transform.
func (q *Quilting) Randomized() bool { return q.opts.K > 1 }

// Apply implements defense.Transform. It returns a *ChannelsError when the batch
// does not have the database's channel count.
func (q *Quilting) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	out, n, c, h, w, err := baselineInput("quilt", x)
	if err != nil {
		return nil, err
	}
	if c != q.db.Channels {
		return nil, &ChannelsError{Defense: "quilt", Want: []int{q.db.Channels}, Got: c}
	}
	seeds := q.seeds.draw(n)
	per := c * h * w
	err = forEachImage(ctx, n, func(i int) error {
		img := out.Data[i*per : (i+1)*per]
		q.quiltImage(img, img, c, h, w, imageRand(seeds[i]), nil)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// quiltGrid returns the padded side and the number of patch positions along
// a side of n pixels.
func quiltGrid(n, patch, step int) (padded, blocks int) {
	if n <= patch {
		return patch, 1
	}
	blocks = (n-patch+step-1)/step + 1
	return patch + (blocks-1)*step, blocks
}

// quiltImage quilts the image src (c x h x w) into dst (which may alias
// src). When chosen is not nil it receives the database index used at each
// grid position, in raster order (for the tests).
func (q *Quilting) quiltImage(dst, src []float32, c, h, w int, rng *rand.Rand, chosen *[]int) {
	P, O := q.db.Patch, q.opts.Overlap
	step := P - O
	ph, by := quiltGrid(h, P, step)
	pw, bx := quiltGrid(w, P, step)
	plane, pplane := h*w, ph*pw
	// Mirror-extend the image to the grid.
	padded := make([]float32, c*pplane)
	for ch := 0; ch < c; ch++ {
		for r := 0; r < ph; r++ {
			sr := halfSymIndex(r, h)
			for col := 0; col < pw; col++ {
				padded[ch*pplane+r*pw+col] = src[ch*plane+sr*w+halfSymIndex(col, w)]
			}
		}
	}
	// Query patches, in the database's (channel, row, column) order.
	d := q.db.dim()
	m := by * bx
	queries := make([]float32, m*d)
	for b := 0; b < m; b++ {
		y0, x0 := (b/bx)*step, (b%bx)*step
		qp := queries[b*d : (b+1)*d]
		for ch := 0; ch < c; ch++ {
			for r := 0; r < P; r++ {
				copy(qp[(ch*P+r)*P:(ch*P+r+1)*P], padded[ch*pplane+(y0+r)*pw+x0:])
			}
		}
	}
	nearest := q.knn(queries, m)
	idx := make([]int, m)
	for b := range idx {
		idx[b] = nearest[b][rng.IntN(len(nearest[b]))]
	}
	if chosen != nil {
		*chosen = idx
	}
	// Synthesize in raster order with minimum-error boundary cuts.
	synth := make([]float32, c*pplane)
	errs := make([]float64, P*O)
	cum := make([]float64, P*O)
	cutV := make([]int, P) // per tile row: first column taken from the tile
	cutH := make([]int, P) // per tile column: first row taken from the tile
	for b := 0; b < m; b++ {
		iy, ix := b/bx, b%bx
		y0, x0 := iy*step, ix*step
		tile := q.db.patchAt(idx[b])
		for k := range cutV {
			cutV[k], cutH[k] = 0, 0
		}
		if ix > 0 { // left overlap: a top-to-bottom cut through columns [0, O)
			for r := 0; r < P; r++ {
				for o := 0; o < O; o++ {
					var e float64
					for ch := 0; ch < c; ch++ {
						dd := float64(tile[(ch*P+r)*P+o] - synth[ch*pplane+(y0+r)*pw+x0+o])
						e += dd * dd
					}
					errs[r*O+o] = e
				}
			}
			minCut(cutV, errs, cum, P, O)
		}
		if iy > 0 { // top overlap: a left-to-right cut through rows [0, O)
			for col := 0; col < P; col++ {
				for o := 0; o < O; o++ {
					var e float64
					for ch := 0; ch < c; ch++ {
						dd := float64(tile[(ch*P+o)*P+col] - synth[ch*pplane+(y0+o)*pw+x0+col])
						e += dd * dd
					}
					errs[col*O+o] = e // transposed: the path runs along columns
				}
			}
			minCut(cutH, errs, cum, P, O)
		}
		for r := 0; r < P; r++ {
			for col := 0; col < P; col++ {
				if col < cutV[r] || r < cutH[col] {
					continue // keep what is already there
				}
				for ch := 0; ch < c; ch++ {
					synth[ch*pplane+(y0+r)*pw+x0+col] = tile[(ch*P+r)*P+col]
				}
			}
		}
	}
	for ch := 0; ch < c; ch++ {
		for r := 0; r < h; r++ {
			copy(dst[ch*plane+r*w:ch*plane+(r+1)*w], synth[ch*pplane+r*pw:])
		}
	}
}

// minCut finds the minimum-error path through an L x O error surface e
// (e[t*O+o]: step t along the seam, offset o across it), moving at most one
// offset per step, by dynamic programming, and writes the path's offset at
// each step into cut. cum is scratch of the size of e.
func minCut(cut []int, e, cum []float64, L, O int) {
	copy(cum[:O], e[:O])
	for t := 1; t < L; t++ {
		for o := 0; o < O; o++ {
			best := cum[(t-1)*O+o]
			if o > 0 {
				best = math.Min(best, cum[(t-1)*O+o-1])
			}
			if o < O-1 {
				best = math.Min(best, cum[(t-1)*O+o+1])
			}
			cum[t*O+o] = e[t*O+o] + best
		}
	}
	o := 0
	for j := 1; j < O; j++ {
		if cum[(L-1)*O+j] < cum[(L-1)*O+o] {
			o = j
		}
	}
	cut[L-1] = o
	for t := L - 2; t >= 0; t-- {
		best := o
		for _, j := range []int{o - 1, o + 1} {
			if j >= 0 && j < O && cum[t*O+j] < cum[t*O+best] {
				best = j
			}
		}
		o = best
		cut[t] = o
	}
}

// quiltChunk is the number of database rows scored per matrix product,
// bounding the score buffer to quiltChunk x (queries per image) floats.
const quiltChunk = 4096

// knn returns, for each of the m query patches (rows of queries), the
// indices of its K nearest database patches in L2 distance (ties broken by
// the lower index), using ||p||^2 - 2 <p, q>, which orders the database as
// the distance to q does.
func (q *Quilting) knn(queries []float32, m int) [][]int {
	K, d, n := q.opts.K, q.db.dim(), q.db.Len()
	bestD := make([]float32, m*K)
	bestI := make([]int, m*K)
	for i := range bestD {
		bestD[i] = float32(math.Inf(1))
		bestI[i] = -1
	}
	// worst[j] is the K-th best distance of query j so far: most candidates
	// fail this one comparison.
	worst := make([]float32, m)
	for j := range worst {
		worst[j] = float32(math.Inf(1))
	}
	scores := make([]float32, min(quiltChunk, n)*m)
	for start := 0; start < n; start += quiltChunk {
		rows := min(quiltChunk, n-start)
		quiltScores(scores, q.db.Data[start*d:], queries, rows, m, d)
		for i := 0; i < rows; i++ {
			norm := q.db.norms[start+i]
			srow := scores[i*m : (i+1)*m]
			worst := worst[:len(srow)]
			for j, s := range srow {
				dist := norm - 2*s
				if dist >= worst[j] {
					continue
				}
				// Insert into the sorted list of the K best.
				bd := bestD[j*K : (j+1)*K]
				bi := bestI[j*K : (j+1)*K]
				p := K - 1
				for p > 0 && bd[p-1] > dist {
					bd[p], bi[p] = bd[p-1], bi[p-1]
					p--
				}
				bd[p], bi[p] = dist, start+i
				worst[j] = bd[K-1]
			}
		}
	}
	out := make([][]int, m)
	for j := range out {
		out[j] = bestI[j*K : (j+1)*K]
	}
	return out
}
