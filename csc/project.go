package csc

import (
	"context"
	"errors"
	"math"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// ProjectOptions configures the STL projection.
type ProjectOptions struct {
	// CSC configures the coding of the highpass part (lambda 0.2, SPORCO's
	// ADMM defaults, 200 iterations at most, RelStopTol 5e-3).
	CSC Options
	// TikhonovLambda is the lowpass filter's regularization (5, as the
	// official implementation).
	TikhonovLambda float64
	// Pad is the symmetric padding of the lowpass filter in pixels (16).
	Pad int
	// Clip limits the output to [0, 1], the pixel range of the classifiers
	// (true). Without it, lowpass + D x may leave [0, 1] slightly.
	Clip bool
}

// DefaultProjectOptions returns the defaults documented on ProjectOptions.
func DefaultProjectOptions() ProjectOptions {
	return ProjectOptions{CSC: DefaultOptions(), TikhonovLambda: 5, Pad: 16, Clip: true}
}

// Validate returns an *OptionError for the first invalid field.
func (o ProjectOptions) Validate() error {
	if err := o.CSC.Validate(); err != nil {
		return err
	}
	_, err := NewTikhonov(o.TikhonovLambda, o.Pad)
	return err
}

// Projection applies the STL projection of the paper (section 3.2) as the
// official implementation does: each channel is split into a Tikhonov
// lowpass l and a highpass h = s - l, h is coded by CBPDN on the
// dictionary, and the output is l + D x, clipped to [0, 1] by default. A
// Projection is safe for concurrent use.
type Projection struct {
	coder *Coder
	opt   ProjectOptions
}

// NewProjection validates its arguments and returns a Projection.
func NewProjection(d *Dictionary, opt ProjectOptions) (*Projection, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	c, err := NewCoder(d, opt.CSC)
	if err != nil {
		return nil, err
	}
	return &Projection{coder: c, opt: opt}, nil
}

// Coder returns the CBPDN solver the Projection uses.
func (p *Projection) Coder() *Coder { return p.coder }

// ProjectStats describes the projection of one image.
type ProjectStats struct {
	Iterations int
	Converged  bool
	Objective  float64 // CBPDN objective on the highpass part (float64, exact)
	Seconds    float64
}

// Project writes the projection of every image of the (N, C, H, W) batch
// src into dst, which must have the same shape (dst may be src). Images
// are spread over opt.CSC.Workers goroutines; results do not depend on
// their number. Bad input returns a *tensor.ShapeError or an *InputError
// (wrapping a *tensor.NonFiniteError for NaN or infinite values).
func (p *Projection) Project(ctx context.Context, dst, src *tensor.Tensor) error {
	_, err := p.ProjectBatch(ctx, dst, src, nil)
	return err
}

// ProjectFinite is Project for a batch whose values the caller has already
// checked to be finite (tensor.CheckFinite), as the defense's entry points
// do: it skips that scan; shapes are still checked. Non-finite values give
// non-finite output rather than an error.
func (p *Projection) ProjectFinite(ctx context.Context, dst, src *tensor.Tensor) error {
	_, err := p.project(ctx, dst, src, nil, false, nil, nil)
	return err
}

// ProjectBatch is Project with progress reports to rep (may be nil) and
// per-image statistics.
func (p *Projection) ProjectBatch(ctx context.Context, dst, src *tensor.Tensor, rep progress.Reporter) ([]ProjectStats, error) {
	return p.project(ctx, dst, src, rep, true, nil, nil)
}

// project is ProjectBatch, scanning src for non-finite values when scan is
// set, with image i started from from[i] when from is not nil and not
// from[i] nil, and its final state stored in to[i] when to is not nil (see
// ProjectFrom; both checked by the caller).
func (p *Projection) project(ctx context.Context, dst, src *tensor.Tensor, rep progress.Reporter, scan bool, from, to []*State) ([]ProjectStats, error) {
	check := p.coder.checkShape
	if scan {
		check = p.coder.checkImages
	}
	n, c, h, w, err := check(src)
	if err != nil {
		return nil, err
	}
	if dst == nil {
		return nil, errors.New("csc: Project: nil destination")
	}
	if !tensor.SameShape(dst, src) || len(dst.Data) != len(src.Data) {
		return nil, &tensor.ShapeError{Op: "csc.Project: destination", Want: src.Shape, Got: dst.Shape}
	}
	per := c * h * w
	stats := make([]ProjectStats, n)
	d := p.coder.dict
	err = p.coder.parallel(ctx, n, h, w, rep, "stl projection", func(ctx context.Context, ws *workspace, i int) error {
		if ws.tk == nil {
			ws.tk, _ = NewTikhonov(p.opt.TikhonovLambda, p.opt.Pad)
			ws.lo = make([]float32, per)
			ws.hi = make([]float32, per)
		}
		s := src.Data[i*per : (i+1)*per]
		for ch := 0; ch < c; ch++ {
			if err := ws.tk.Split(ws.lo[ch*h*w:(ch+1)*h*w], ws.hi[ch*h*w:(ch+1)*h*w], s[ch*h*w:(ch+1)*h*w], h, w); err != nil {
				return err
			}
		}
		// Code the highpass part (channel by channel for a single-channel
		// dictionary) and add D x to the lowpass part, from the
		// workspace's coefficient maps without copying them.
		st := ProjectStats{Converged: true}
		parts := 1
		if d.C != c {
			parts = c
		}
		if ws.dx == nil {
			ws.dx = make([]float64, per)
		}
		var start *State
		if from != nil {
			start = from[i]
		}
		if to != nil {
			to[i] = to[i].reset(parts, d.M*h*w)
		}
		for part := 0; part < parts; part++ {
			n := d.C * h * w
			var y0, u0 []float32
			var rho0 float64
			if start != nil {
				y0, u0, rho0 = start.part(part, d.M*h*w)
			}
			r, err := p.coder.solveFrom(ctx, ws, ws.hi[part*n:(part+1)*n], y0, u0, rho0, nil)
			if err != nil {
				return err
			}
			if to != nil {
				to[i].save(part, ws.y, ws.u, r.Rho)
			}
			st.Iterations = max(st.Iterations, r.Iterations)
			st.Converged = st.Converged && r.Converged
			st.Objective += r.Objective
			st.Seconds += r.Seconds
			if p.coder.opt.Method == MethodActiveSet {
				ws.active.reconstruction(ws.dx[part*n : (part+1)*n])
			} else {
				reconstruct(ws.dx[part*n:(part+1)*n], d, h, w, ws.y)
			}
		}
		out := dst.Data[i*per : (i+1)*per]
		for j, v := range ws.dx {
			o := float64(ws.lo[j]) + v
			if p.opt.Clip {
				o = math.Min(1, math.Max(0, o))
			}
			out[j] = float32(o)
		}
		stats[i] = st
		return nil
	})
	if err != nil {
		return nil, err
	}
	return stats, nil
}
