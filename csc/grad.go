package csc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// GradMethod selects how Projection.VJP and Projection.JVP differentiate
// the CBPDN step of the projection. The Tikhonov split and the clip are
// differentiated exactly whatever the method.
type GradMethod int

const (
	// GradImplicit differentiates the CBPDN solution x* through its
	// optimality conditions. The lasso solution is piecewise linear in the
	// signal h: on its support S (fixed in a neighbourhood of almost every
	// h), x*_S = (D_S^T D_S)^{-1} (D_S^T h - lambda sign(x*_S)), so
	// d(D x*) = P_S dh with P_S = D_S (D_S^T D_S)^+ D_S^T the orthogonal
	// projector onto the span of the support's atoms (symmetric: the VJP
	// and the JVP are the same map). P_S g is computed by CGLS on
	// min_a ||D_S a - g|| with D and D^T applied as convolutions in the
	// Fourier domain, masked to S. S is the support of the forward run's
	// solution (ADMM's sparse variable), so the gradient is exact for the
	// solution the forward run computed to the degree that run converged.
	GradImplicit GradMethod = iota
	// GradUnrolled is reverse mode (VJP) or forward mode (JVP) through K
	// iterations of the forward run's ADMM (Fourier-domain x step,
	// over-relaxation, soft thresholding, dual update and the dual's
	// rescaling at rho changes), with the penalty schedule rho_k the
	// forward run chose held fixed (the residual-balancing decisions are
	// piecewise constant in the image, so this is the derivative of the
	// map the forward run computes almost everywhere).
	GradUnrolled
)

var gradMethodNames = []string{GradImplicit: "implicit", GradUnrolled: "unrolled"}

// String returns "implicit" or "unrolled".
func (m GradMethod) String() string {
	if m >= 0 && int(m) < len(gradMethodNames) {
		return gradMethodNames[m]
	}
	return fmt.Sprintf("GradMethod(%d)", int(m))
}

// GradOptions configures Projection.VJP and Projection.JVP.
type GradOptions struct {
	// Method is GradImplicit (the default) or GradUnrolled.
	Method GradMethod
	// CGTol is GradImplicit's stopping rule: CGLS stops when
	// ||D_S^T r|| <= CGTol ||D_S^T g|| (1e-6, about what float32 FFT
	// operators resolve).
	CGTol float64
	// CGMaxIter caps GradImplicit's CGLS iterations per coded part (500);
	// reaching it is reported in GradStats.Converged, not as an error.
	CGMaxIter int
	// Output, when not nil, is a map applied to each image's projection
	// after Project (a caller's output mapping, e.g. a per-image
	// rescaling), differentiated after the projection: VJP differentiates
	// Output∘Project, and so does JVP. Default nil (the identity).
	Output OutputMap
	// Iterations is GradUnrolled's K: 0 (default) differentiates exactly
	// the forward run (its stopping rule included, hence the map
	// Project computes); K > 0 runs and differentiates K iterations
	// without the stopping rule, the penalty continuing by the forward
	// run's adaptive rule.
	Iterations int
}

// OutputMap is the derivative of a map M applied to one image's
// projection y (C×H×W values as Project returns them). Both methods
// overwrite g in place: VJP with (dM/dy)^T g, JVP with (dM/dy) g. y must
// not be modified. Implementations are called concurrently from the
// projection's workers.
type OutputMap interface {
	VJP(y, g []float32)
	JVP(y, g []float32)
}

// DefaultGradOptions returns the defaults documented on GradOptions.
func DefaultGradOptions() GradOptions {
	return GradOptions{Method: GradImplicit, CGTol: 1e-6, CGMaxIter: 500}
}

// Validate returns an *OptionError for the first invalid field.
func (o GradOptions) Validate() error {
	switch {
	case o.Method != GradImplicit && o.Method != GradUnrolled:
		return &OptionError{Field: "Method", Value: o.Method, Want: "GradImplicit or GradUnrolled"}
	case !(o.CGTol > 0) || math.IsInf(o.CGTol, 0):
		return &OptionError{Field: "CGTol", Value: o.CGTol, Want: "finite, > 0"}
	case o.CGMaxIter < 1:
		return &OptionError{Field: "CGMaxIter", Value: o.CGMaxIter, Want: ">= 1"}
	case o.Iterations < 0 || o.Iterations > 1<<20:
		return &OptionError{Field: "Iterations", Value: o.Iterations, Want: "in [0, 2^20] (0: the forward run's)"}
	}
	return nil
}

// GradStats describes the differentiation at one image.
type GradStats struct {
	// Iterations is the number of ADMM iterations of the forward run (the
	// unrolled depth for GradUnrolled), the maximum over coded parts.
	Iterations int
	// Support is the number of non-zero coefficients (summed over parts).
	Support int
	// CGIterations is the largest number of CGLS iterations of a part
	// (GradImplicit; 0 otherwise).
	CGIterations int
	// Converged is false when CGLS reached CGMaxIter (GradImplicit).
	Converged bool
}

// VJP returns (dT/dx)^T gy for every image of the (N, C, H, W) batch x,
// T being the projection (Project), in dst (allocated when nil, else of
// x's shape; it may not alias x or gy), with per-image statistics. gy has
// x's shape. The chain is differentiated exactly: opt.Output when set,
// the clip (a pixel
// passes the gradient when the unclipped output lies in [0, 1]), the
// reconstruction lowpass + D x, the CBPDN step by opt.Method, and the
// Tikhonov split (LowpassAdjoint). Each image costs one forward solve plus
// the method's backward work. Images are spread over the CSC options'
// workers; results do not depend on their number. Bad input (shapes,
// non-finite values, bad options) returns an error; cancellation
// ctx.Err(). Safe for concurrent use.
func (p *Projection) VJP(ctx context.Context, dst, x, gy *tensor.Tensor, opt GradOptions) (*tensor.Tensor, []GradStats, error) {
	return p.derivative(ctx, dst, x, gy, opt, true)
}

// JVP returns (dT/dx) v for every image of x, the forward-mode twin of
// VJP (same arguments, same chain, same method), for checks such as
// <J v, w> = <v, J^T w>.
func (p *Projection) JVP(ctx context.Context, dst, x, v *tensor.Tensor, opt GradOptions) (*tensor.Tensor, []GradStats, error) {
	return p.derivative(ctx, dst, x, v, opt, false)
}

// derivative is VJP (adjoint) or JVP.
func (p *Projection) derivative(ctx context.Context, dst, x, g *tensor.Tensor, opt GradOptions, adjoint bool) (*tensor.Tensor, []GradStats, error) {
	if err := opt.Validate(); err != nil {
		return nil, nil, err
	}
	n, c, h, w, err := p.coder.checkImages(x)
	if err != nil {
		return nil, nil, err
	}
	if g == nil || !tensor.SameShape(g, x) || len(g.Data) != len(x.Data) {
		var got []int
		if g != nil {
			got = g.Shape
		}
		return nil, nil, &tensor.ShapeError{Op: "csc: projection derivative: direction", Want: x.Shape, Got: got}
	}
	if err := tensor.CheckFinite(g.Data); err != nil {
		return nil, nil, fmt.Errorf("csc: projection derivative: direction: %w", err)
	}
	if dst == nil {
		dst = tensor.New(x.Shape...)
	} else if !tensor.SameShape(dst, x) || len(dst.Data) != len(x.Data) {
		return nil, nil, &tensor.ShapeError{Op: "csc: projection derivative: destination", Want: x.Shape, Got: dst.Shape}
	}
	if &dst.Data[0] == &x.Data[0] || &dst.Data[0] == &g.Data[0] {
		return nil, nil, errors.New("csc: projection derivative: destination aliases an input")
	}
	per := c * h * w
	stats := make([]GradStats, n)
	err = p.coder.parallel(ctx, n, h, w, nil, "stl projection derivative", func(ctx context.Context, ws *workspace, i int) error {
		lin, err := p.linearize(ctx, ws, x.Data[i*per:(i+1)*per], c, opt)
		if err != nil {
			return err
		}
		out := dst.Data[i*per : (i+1)*per]
		if adjoint {
			err = lin.vjp(ws, out, g.Data[i*per:(i+1)*per])
		} else {
			err = lin.jvp(ws, out, g.Data[i*per:(i+1)*per])
		}
		stats[i] = lin.stats
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return dst, stats, nil
}

// linearization holds what the derivative at one image needs from its
// forward run: the Tikhonov filter, the clip's pass mask, and per coded
// part the support (GradImplicit) or the tape (GradUnrolled).
type linearization struct {
	p       *Projection
	opt     GradOptions
	tk      *Tikhonov
	c, h, w int
	parts   int
	pass    []bool     // (C*H*W) the clip passes the gradient
	out     []float32  // (C*H*W) the projection, when opt.Output is set
	support [][]uint64 // per part: bitset of non-zero coefficients
	tapes   []*tape    // per part
	stats   GradStats
}

// linearize runs the forward projection of one image s (C×H×W) and
// records its linearization.
func (p *Projection) linearize(ctx context.Context, ws *workspace, s []float32, c int, opt GradOptions) (*linearization, error) {
	h, w := ws.h, ws.w
	hw := h * w
	d := p.coder.dict
	tk, err := NewTikhonov(p.opt.TikhonovLambda, p.opt.Pad)
	if err != nil {
		return nil, err
	}
	lin := &linearization{p: p, opt: opt, tk: tk, c: c, h: h, w: w, parts: 1, pass: make([]bool, len(s))}
	lin.stats.Converged = true
	if d.C != c {
		lin.parts = c
	}
	lo := make([]float32, len(s))
	hi := make([]float32, len(s))
	for ch := 0; ch < c; ch++ {
		if err := tk.Split(lo[ch*hw:(ch+1)*hw], hi[ch*hw:(ch+1)*hw], s[ch*hw:(ch+1)*hw], h, w); err != nil {
			return nil, err
		}
	}
	rec := make([]float64, len(s))
	pn := d.C * hw
	for part := 0; part < lin.parts; part++ {
		var iters int
		if opt.Method == GradUnrolled {
			tp, err := p.coder.record(ctx, ws, hi[part*pn:(part+1)*pn], opt.Iterations)
			if err != nil {
				return nil, err
			}
			lin.tapes = append(lin.tapes, tp)
			iters = len(tp.rho)
		} else {
			r, err := p.coder.solveInPlace(ctx, ws, hi[part*pn:(part+1)*pn], nil)
			if err != nil {
				return nil, err
			}
			iters = r.Iterations
		}
		sup := bitsOf(ws.y)
		lin.support = append(lin.support, sup)
		lin.stats.Support += popcount(sup)
		lin.stats.Iterations = max(lin.stats.Iterations, iters)
		reconstruct(rec[part*pn:(part+1)*pn], d, h, w, ws.y)
	}
	if opt.Output != nil {
		lin.out = make([]float32, len(s))
	}
	for j, v := range rec {
		o := float64(lo[j]) + v
		lin.pass[j] = !p.opt.Clip || (o >= 0 && o <= 1)
		if lin.out != nil {
			if p.opt.Clip {
				o = math.Min(1, math.Max(0, o))
			}
			lin.out[j] = float32(o)
		}
	}
	return lin, nil
}

// vjp writes J^T g into out: g through the output map's VJP and the clip's
// mask (g'), then J_part^T g' per coded part (a), then a + L^T (g' - a).
func (lin *linearization) vjp(ws *workspace, out, g []float32) error {
	gp := make([]float32, len(g))
	if lin.out != nil {
		g = slices.Clone(g)
		lin.opt.Output.VJP(lin.out, g)
	}
	for j, v := range g {
		if lin.pass[j] {
			gp[j] = v
		}
	}
	a := make([]float32, len(g))
	if err := lin.codeDerivative(ws, a, gp, true); err != nil {
		return err
	}
	hw := lin.h * lin.w
	diff := make([]float32, hw)
	for ch := 0; ch < lin.c; ch++ {
		for j := range diff {
			diff[j] = gp[ch*hw+j] - a[ch*hw+j]
		}
		o := out[ch*hw : (ch+1)*hw]
		if err := lin.tk.LowpassAdjoint(o, diff, lin.h, lin.w); err != nil {
			return err
		}
		for j := range o {
			o[j] += a[ch*hw+j]
		}
	}
	return nil
}

// jvp writes J v into out: the split of v (lowpass L v, highpass
// v - L v), J_part on the highpass part, the sum, the clip's mask, the
// output map's JVP.
func (lin *linearization) jvp(ws *workspace, out, v []float32) error {
	hw := lin.h * lin.w
	lo := make([]float32, len(v))
	hi := make([]float32, len(v))
	for ch := 0; ch < lin.c; ch++ {
		if err := lin.tk.Split(lo[ch*hw:(ch+1)*hw], hi[ch*hw:(ch+1)*hw], v[ch*hw:(ch+1)*hw], lin.h, lin.w); err != nil {
			return err
		}
	}
	if err := lin.codeDerivative(ws, out, hi, false); err != nil {
		return err
	}
	for j := range out {
		out[j] += lo[j]
		if !lin.pass[j] {
			out[j] = 0
		}
	}
	if lin.out != nil {
		lin.opt.Output.JVP(lin.out, out)
	}
	return nil
}

// codeDerivative applies, per coded part, the derivative of h -> D x*(h)
// (adjoint when adjoint is set) to in, writing out.
func (lin *linearization) codeDerivative(ws *workspace, out, in []float32, adjoint bool) error {
	pn := lin.p.coder.dict.C * lin.h * lin.w
	for part := 0; part < lin.parts; part++ {
		o, v := out[part*pn:(part+1)*pn], in[part*pn:(part+1)*pn]
		if lin.opt.Method == GradUnrolled {
			if adjoint {
				ws.unrolledVJP(lin.tapes[part], o, v)
			} else {
				ws.unrolledJVP(lin.tapes[part], o, v)
			}
			continue
		}
		it, ok := ws.projectSupport(o, v, lin.support[part], lin.opt.CGTol, lin.opt.CGMaxIter)
		lin.stats.CGIterations = max(lin.stats.CGIterations, it)
		lin.stats.Converged = lin.stats.Converged && ok
	}
	return nil
}

// bitsOf returns the bitset of the non-zero entries of x.
func bitsOf(x []float32) []uint64 {
	b := make([]uint64, (len(x)+63)/64)
	for i, v := range x {
		if v != 0 {
			b[i>>6] |= 1 << (i & 63)
		}
	}
	return b
}

// popcount returns the number of set bits of b.
func popcount(b []uint64) int {
	n := 0
	for _, v := range b {
		for ; v != 0; v &= v - 1 {
			n++
		}
	}
	return n
}

// has reports bit i of b.
func has(b []uint64, i int) bool { return b[i>>6]>>(i&63)&1 != 0 }
