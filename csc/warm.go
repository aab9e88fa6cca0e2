package csc

import (
	"context"
	"fmt"
	"math"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// State is the ADMM state the projection of one image ended in: the
// coefficient maps y, the scaled dual u and the penalty rho of each coded
// part (one part for a dictionary with the images' channel count; one per
// channel for a single-channel dictionary on colour images). Starting the
// projection of a nearby image from it (a warm start, Boyd et al. 2011,
// section 3.4.4 and 4.4) saves ADMM iterations: the projection of an
// attacked image from its clean image's state, or the projection of an
// attack's next iterate from the previous one's. A State is written by
// ProjectFrom and only read when passed as a start; it is not safe for
// concurrent writes.
type State struct {
	// Y and U are (Parts, M, H, W), concatenated over the parts.
	Y, U []float32
	// Rho holds one penalty per part.
	Rho []float64
}

// reset returns s (allocated when nil) sized for parts parts of n values.
func (s *State) reset(parts, n int) *State {
	if s == nil {
		s = &State{}
	}
	if len(s.Y) != parts*n {
		s.Y, s.U = make([]float32, parts*n), make([]float32, parts*n)
	}
	if len(s.Rho) != parts {
		s.Rho = make([]float64, parts)
	}
	return s
}

// part returns part k's maps, dual and penalty.
func (s *State) part(k, n int) (y, u []float32, rho float64) {
	return s.Y[k*n : (k+1)*n], s.U[k*n : (k+1)*n], s.Rho[k]
}

// save stores part k's final maps, dual and penalty.
func (s *State) save(k int, y, u []float32, rho float64) {
	n := len(y)
	copy(s.Y[k*n:(k+1)*n], y)
	copy(s.U[k*n:(k+1)*n], u)
	s.Rho[k] = rho
}

// StateError reports a warm start that does not fit the image it starts.
type StateError struct {
	Index int // image index in the batch
	Msg   string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("csc: warm start of image %d: %s", e.Index, e.Msg)
}

// check validates s as the start of an image coded in parts parts of n
// values.
func (s *State) check(i, parts, n int) error {
	switch {
	case len(s.Y) != parts*n || len(s.U) != parts*n || len(s.Rho) != parts:
		return &StateError{Index: i, Msg: fmt.Sprintf("%d maps, %d dual values and %d penalties, want %d, %d and %d (another size or dictionary)",
			len(s.Y), len(s.U), len(s.Rho), parts*n, parts*n, parts)}
	case tensor.CheckFinite(s.Y) != nil || tensor.CheckFinite(s.U) != nil:
		return &StateError{Index: i, Msg: "non-finite maps or dual"}
	}
	for _, r := range s.Rho {
		if !(r > 0) || math.IsInf(r, 0) {
			return &StateError{Index: i, Msg: fmt.Sprintf("penalty %v, want finite and > 0", r)}
		}
	}
	return nil
}

// ProjectFrom is ProjectBatch with warm starts: when from is not nil, the
// ADMM of image i starts from from[i] (from zero, as ProjectBatch, where
// from[i] is nil), and when to is not nil, to[i] receives image i's final
// State (allocated when nil; to may be from, each start being read before
// it is overwritten). The problem is unchanged; a warm start only changes
// where the iterates stop. A warm-started image is stopped by SPORCO's rule
// with tolerance WarmRelStopTol (when the Options' is the default): its
// objective is then within 1e-4 relative of a cold start's per image and
// no higher on average on the reference problems (tested). It pays when
// the start is the state of a nearby image: an attack's previous iterate,
// or the clean image of an attacked one (docs/csc.md has the measured
// iterations); the previous image of a batch is no such start (measured:
// false convergence at 32x32). A start that does not fit (other size,
// dictionary or channel count, non-finite values, rho not > 0) returns a
// *StateError; from and to must have the batch's length when not nil.
func (p *Projection) ProjectFrom(ctx context.Context, dst, src *tensor.Tensor, from, to []*State, rep progress.Reporter) ([]ProjectStats, error) {
	n, c, h, w, err := p.coder.checkImages(src)
	if err != nil {
		return nil, err
	}
	if (from != nil && len(from) != n) || (to != nil && len(to) != n) {
		return nil, fmt.Errorf("csc: ProjectFrom: %d starts and %d states for %d images", len(from), len(to), n)
	}
	d := p.coder.dict
	parts := 1
	if d.C != c {
		parts = c
	}
	for i, s := range from {
		if s != nil {
			if err := s.check(i, parts, d.M*h*w); err != nil {
				return nil, err
			}
		}
	}
	return p.project(ctx, dst, src, rep, false, from, to)
}
