package baseline

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/stl-defense/stl/tensor"
)

// D3 is the closest documented form of "Divide, Denoise, and Defend"
// (Moosavi-Dezfooli, Shrivastava and Tuzel 2018, arXiv:1802.06806), which
// this package could not reimplement faithfully from the text at hand: the
// D3 paper itself was not available, only what the STL paper (Sun et al.
// 2019, sections 2 and 4, Table 3) and the abstract of its patent (US
// 10,984,272) say of it. What they state, and what is ours:
//
//   - Stated: the image is divided into patches; each patch is replaced by a
//     sparse combination of natural image patches (a patch dictionary built
//     from clean training images); the dictionary is large, 10K to 40K
//     atoms (Table 3's "D3 (40K-5)", "(10K-5)", "(10K-4)").
//   - Inferred: the second number of those labels is the sparsity (atoms
//     per patch): 10K-4 has the lower clean accuracy of the two 10K rows, as
//     fewer atoms per patch would, while a smaller patch stride would have
//     raised it. Default 5 atoms out of 10,000.
//   - Ours: the sparse code is Orthogonal Matching Pursuit (Pati et al.
//     1993) with a fixed number of atoms; the atoms are clean training
//     patches drawn uniformly at random and scaled to unit norm (the patent
//     speaks of choosing them from "salient data" without saying how); 8x8
//     patches at stride 4, overlapping reconstructions averaged; no
//     randomization (the patent's abstract mentions choosing among candidate
//     denoised images without saying how, so none is drawn here).
//
// The transform is deterministic and has no useful gradient (a sparse
// support chosen by argmax): white-box attacks take it as the identity
// (BPDA). It is safe for concurrent use and accepts batches with the
// dictionary's channel count and sides of at least one patch.
type D3 struct {
	dict *D3Dictionary
	opts D3Options
}

// D3Options configures the D3 transform; the patch side is the
// dictionary's.
type D3Options struct {
	// Stride is the step between patch positions, in [1, patch side]; a
	// last position flush with the border is added when the steps do not
	// reach it. Default 4 (our choice: half of the 8 px patch).
	Stride int
	// Sparsity is the number of atoms OMP selects per patch. Default 5 (see
	// D3; the "-5" of Table 3).
	Sparsity int
}

// DefaultD3Options returns stride 4 and 5 atoms per patch.
func DefaultD3Options() D3Options { return D3Options{Stride: 4, Sparsity: 5} }

// maxD3Sparsity bounds Sparsity (the per-patch Cholesky factor is
// Sparsity^2 values).
const maxD3Sparsity = 256

// Validate reports a *ParamError for an out-of-range option; the bounds
// that depend on the dictionary are checked by NewD3.
func (o D3Options) Validate() error {
	switch {
	case o.Stride < 1:
		return &ParamError{Defense: "d3", Field: "Stride", Value: o.Stride, Reason: "must be >= 1"}
	case o.Sparsity < 1 || o.Sparsity > maxD3Sparsity:
		return &ParamError{Defense: "d3", Field: "Sparsity", Value: o.Sparsity, Reason: fmt.Sprintf("must be in [1, %d]", maxD3Sparsity)}
	}
	return nil
}

// ErrNoD3Dictionary is returned when D3 is built without a dictionary.
var ErrNoD3Dictionary = errors.New("defense d3: no patch dictionary (build one with BuildD3Dictionary or load one with LoadD3Dictionary)")

// NewD3 validates opts against dict and returns the transform. It returns
// ErrNoD3Dictionary for a nil or empty dictionary.
func NewD3(dict *D3Dictionary, opts D3Options) (*D3, error) {
	if dict == nil || dict.check() != nil {
		return nil, ErrNoD3Dictionary
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Stride > dict.Patch {
		return nil, &ParamError{Defense: "d3", Field: "Stride", Value: opts.Stride, Reason: fmt.Sprintf("above the patch side %d: pixels would be left out", dict.Patch)}
	}
	if opts.Sparsity > min(dict.Len(), dict.dim()) {
		return nil, &ParamError{Defense: "d3", Field: "Sparsity", Value: opts.Sparsity, Reason: fmt.Sprintf("above the %d atoms of dimension %d", dict.Len(), dict.dim())}
	}
	return &D3{dict: dict, opts: opts}, nil
}

// Name implements defense.Transform.
func (t *D3) Name() string { return "D3" }

// Randomized implements defense.Transform: D3 as implemented here draws
// nothing.
func (t *D3) Randomized() bool { return false }

// Apply implements defense.Transform: every image is cut into overlapping
// patches, each patch replaced by its OMP reconstruction, and the patches
// averaged back, clipped to [0,1]. It returns a *ChannelsError for a
// channel count other than the dictionary's and a *ParamError for images
// smaller than a patch.
func (t *D3) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	out, n, c, h, w, err := baselineInput("d3", x)
	if err != nil {
		return nil, err
	}
	if c != t.dict.Channels {
		return nil, &ChannelsError{Defense: "d3", Want: []int{t.dict.Channels}, Got: c}
	}
	P := t.dict.Patch
	if h < P || w < P {
		return nil, &ParamError{Defense: "d3", Field: "Patch", Value: P, Reason: fmt.Sprintf("larger than the %dx%d images", h, w)}
	}
	ys, xs := patchStarts(h, P, t.opts.Stride), patchStarts(w, P, t.opts.Stride)
	per := c * h * w
	err = forEachImage(ctx, n, func(i int) error {
		img := out.Data[i*per : (i+1)*per]
		patches := extractPatches(img, c, h, w, P, ys, xs)
		t.dict.omp(patches, len(ys)*len(xs), t.opts.Sparsity)
		reassemble(img, patches, c, h, w, P, ys, xs)
		tensor.Clip(img, 0, 1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// patchStarts returns the first coordinates of the patches of side p along
// a side of n >= p pixels: 0, stride, 2*stride, ... and, when those stop
// short of the border, n-p.
func patchStarts(n, p, stride int) []int {
	var s []int
	for v := 0; v+p <= n; v += stride {
		s = append(s, v)
	}
	if last := s[len(s)-1]; last+p < n {
		s = append(s, n-p)
	}
	return s
}

// extractPatches returns the patches of img (c x h x w) at the grid ys x
// xs, in raster order, each flattened in (channel, row, column) order.
func extractPatches(img []float32, c, h, w, p int, ys, xs []int) []float32 {
	d := c * p * p
	out := make([]float32, 0, len(ys)*len(xs)*d)
	for _, y0 := range ys {
		for _, x0 := range xs {
			for ch := 0; ch < c; ch++ {
				for r := 0; r < p; r++ {
					row := img[ch*h*w+(y0+r)*w+x0:]
					out = append(out, row[:p]...)
				}
			}
		}
	}
	return out
}

// reassemble writes into img (c x h x w) the average, at each pixel, of
// the patches (as extractPatches lays them out) covering it. The sums are
// kept in float64, so patches equal to the image's own reassemble it
// exactly. Every pixel must be covered (patchStarts sees to it).
func reassemble(img, patches []float32, c, h, w, p int, ys, xs []int) {
	sum := make([]float64, c*h*w)
	count := make([]float64, h*w)
	k := 0
	for _, y0 := range ys {
		for _, x0 := range xs {
			for ch := 0; ch < c; ch++ {
				for r := 0; r < p; r++ {
					o := ch*h*w + (y0+r)*w + x0
					for col := 0; col < p; col++ {
						sum[o+col] += float64(patches[k])
						k++
					}
				}
			}
			for r := 0; r < p; r++ {
				for col := 0; col < p; col++ {
					count[(y0+r)*w+x0+col]++
				}
			}
		}
	}
	for ch := 0; ch < c; ch++ {
		for i, n := range count {
			img[ch*h*w+i] = float32(sum[ch*h*w+i] / n)
		}
	}
}

// d3Chunk is the number of atoms scored per matrix product, bounding the
// score buffer to d3Chunk x (patches per image) floats.
const d3Chunk = 2048

// omp replaces each of the m patches (rows of x, of the dictionary's
// dimension) with its Orthogonal Matching Pursuit approximation of at most
// sparsity atoms: starting from the residual r = x, it repeatedly selects
// the atom most correlated with r (largest |<a, r>|, ties to the lower
// index), and sets r to x minus the least-squares fit of x on the atoms
// selected so far. A patch stops early when its residual vanishes (below
// 1e-12 of its energy) or the next atom is linearly dependent on those
// selected. The correlations of all patches are computed at once by
// matrix products; the fits by a Cholesky factor grown one atom at a time,
// in float64.
func (dct *D3Dictionary) omp(x []float32, m, sparsity int) {
	d, K := dct.dim(), dct.Len()
	st := make([]ompState, m)
	resid := append([]float32(nil), x...)
	for j := range st {
		st[j] = newOMPState(x[j*d:(j+1)*d], sparsity)
	}
	scores := make([]float32, min(d3Chunk, K)*m)
	bestV := make([]float32, m)
	bestI := make([]int, m)
	for it := 0; it < sparsity; it++ {
		for j := range bestV {
			bestV[j], bestI[j] = -1, -1
		}
		for start := 0; start < K; start += d3Chunk {
			rows := min(d3Chunk, K-start)
			quiltScores(scores, dct.Data[start*d:], resid, rows, m, d)
			for i := 0; i < rows; i++ {
				for j, s := range scores[i*m : (i+1)*m] {
					if v := float32(math.Abs(float64(s))); v > bestV[j] && st[j].active && !st[j].has(start+i) {
						bestV[j], bestI[j] = v, start+i
					}
				}
			}
		}
		more := false
		for j := range st {
			if !st[j].active {
				continue
			}
			if bestI[j] < 0 || !st[j].add(dct.atom(bestI[j]), bestI[j]) {
				st[j].active = false
				continue
			}
			st[j].residual(resid[j*d : (j+1)*d])
			more = more || st[j].active
		}
		if !more {
			break
		}
	}
	for j := range st {
		rj, xj := resid[j*d:(j+1)*d], x[j*d:(j+1)*d]
		for k := range xj {
			xj[k] -= rj[k] // the approximation: x minus what is left
		}
	}
}

// ompState is the pursuit of one patch: its selected atoms, the Cholesky
// factor L (row-major, cap x cap, lower: L L^T is the selected atoms' Gram
// matrix), the atoms' correlations with the patch, and the coefficients of
// the current least-squares fit.
type ompState struct {
	x       []float64
	energy  float64
	support []int
	atoms   [][]float32 // views into the dictionary
	chol    []float64
	b       []float64 // <atom_i, x>
	coef    []float64
	cap     int
	active  bool
}

func newOMPState(x []float32, sparsity int) ompState {
	s := ompState{x: make([]float64, len(x)), cap: sparsity, chol: make([]float64, sparsity*sparsity)}
	for i, v := range x {
		s.x[i] = float64(v)
		s.energy += float64(v) * float64(v)
	}
	s.active = s.energy > 0
	return s
}

func (s *ompState) has(k int) bool {
	for _, i := range s.support {
		if i == k {
			return true
		}
	}
	return false
}

func dot32(a, b []float32) float64 {
	var v float64
	for i, x := range a {
		v += float64(x) * float64(b[i])
	}
	return v
}

// add appends atom a (index k) to the support, extending the Cholesky
// factor, and refits the coefficients. It returns false, leaving the
// support unchanged, when a is numerically in the span of the support.
func (s *ompState) add(a []float32, k int) bool {
	n := len(s.support)
	// The new row of L: w solves L w = g with g_i = <atom_i, a>, then
	// sqrt(<a, a> - |w|^2) on the diagonal.
	row := s.chol[n*s.cap : n*s.cap+n+1]
	aa := dot32(a, a)
	for i := 0; i < n; i++ {
		v := dot32(s.atoms[i], a)
		for j := 0; j < i; j++ {
			v -= s.chol[i*s.cap+j] * row[j]
		}
		row[i] = v / s.chol[i*s.cap+i]
	}
	diag := aa
	for i := 0; i < n; i++ {
		diag -= row[i] * row[i]
	}
	if !(diag > 1e-10*aa) {
		return false
	}
	row[n] = math.Sqrt(diag)
	var ax float64
	for t, v := range a {
		ax += float64(v) * s.x[t]
	}
	s.support = append(s.support, k)
	s.atoms = append(s.atoms, a)
	s.b = append(s.b, ax)
	// Solve L L^T coef = b: forward, then backward substitution.
	n++
	y := make([]float64, n)
	for i := 0; i < n; i++ {
		v := s.b[i]
		for j := 0; j < i; j++ {
			v -= s.chol[i*s.cap+j] * y[j]
		}
		y[i] = v / s.chol[i*s.cap+i]
	}
	s.coef = make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		v := y[i]
		for j := i + 1; j < n; j++ {
			v -= s.chol[j*s.cap+i] * s.coef[j]
		}
		s.coef[i] = v / s.chol[i*s.cap+i]
	}
	return true
}

// residual writes x minus the current fit into r, and deactivates the
// pursuit once the residual has (numerically) vanished.
func (s *ompState) residual(r []float32) {
	var e float64
	for t := range r {
		v := s.x[t]
		for i, a := range s.atoms {
			v -= s.coef[i] * float64(a[t])
		}
		r[t] = float32(v)
		e += v * v
	}
	if e <= 1e-12*s.energy {
		s.active = false
	}
}
