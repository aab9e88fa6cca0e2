package csc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Coder solves CBPDN (see the package documentation) with one dictionary on
// images of any size at least the filter size. It caches the dictionary's
// spectrum and Woodbury factorization per image size. A Coder is safe for
// concurrent use.
type Coder struct {
	dict *Dictionary
	opt  Options

	mu      sync.Mutex
	spectra map[[2]int]*spectrumEntry

	normOnce sync.Once // MethodActiveSet's atom norms
	norm2    []float64
	gramOnce sync.Once // MethodActiveSet's filter cross-correlations
	gram     []float32
}

type spectrumEntry struct {
	once sync.Once
	sp   *spectrum
	err  error
	pool sync.Pool // idle *workspace of this size, reused across calls
}

// NewCoder validates d and opt and returns a Coder. d must not be modified
// while the Coder is in use.
func NewCoder(d *Dictionary, opt Options) (*Coder, error) {
	if d == nil {
		return nil, errors.New("csc: nil dictionary")
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	return &Coder{dict: d, opt: opt, spectra: make(map[[2]int]*spectrumEntry)}, nil
}

// Dictionary returns the Coder's dictionary.
func (c *Coder) Dictionary() *Dictionary { return c.dict }

// Options returns the Coder's options.
func (c *Coder) Options() Options { return c.opt }

func (c *Coder) spectrum(h, w int) (*spectrum, error) {
	e := c.entry(h, w)
	e.once.Do(func() { e.sp, e.err = newSpectrum(c.dict, h, w) })
	return e.sp, e.err
}

func (c *Coder) entry(h, w int) *spectrumEntry {
	c.mu.Lock()
	e, ok := c.spectra[[2]int{h, w}]
	if !ok {
		e = &spectrumEntry{}
		c.spectra[[2]int{h, w}] = e
	}
	c.mu.Unlock()
	return e
}

// Result is the outcome of CBPDN on one image.
type Result struct {
	// X holds the coefficient maps (M, H, W): ADMM's sparse variable y.
	// A single-channel dictionary applied to a C-channel image codes each
	// channel separately; X is then (C, M, H, W).
	X *tensor.Tensor
	// Objective = DFid + Reg, evaluated exactly in float64 on X.
	Objective, DFid, Reg float64
	// Iterations done; Converged reports whether the stopping rule was met
	// (false: MaxIter reached).
	Iterations int
	Converged  bool
	// Rho is the final ADMM penalty.
	Rho float64
	// Seconds is the wall time of the solve, objective evaluation excluded.
	Seconds float64
}

// InputError reports an image that cannot be coded with the dictionary.
type InputError struct {
	Index int // image index in the batch
	Msg   string
	Err   error // the underlying error (a *tensor.NonFiniteError), may be nil
}

func (e *InputError) Error() string { return fmt.Sprintf("csc: image %d: %s", e.Index, e.Msg) }

// Unwrap returns the underlying error.
func (e *InputError) Unwrap() error { return e.Err }

// checkImages validates a (N, C, H, W) batch against the dictionary: its
// shape (checkShape) and that every value is finite.
func (c *Coder) checkImages(s *tensor.Tensor) (n, ch, h, w int, err error) {
	if n, ch, h, w, err = c.checkShape(s); err != nil {
		return
	}
	if e := tensor.CheckFinite(s.Data); e != nil {
		err = &InputError{Index: e.(*tensor.NonFiniteError).Index / (ch * h * w), Msg: e.Error(), Err: e}
	}
	return
}

// checkShape validates the shape of a (N, C, H, W) batch against the
// dictionary, without looking at the values.
func (c *Coder) checkShape(s *tensor.Tensor) (n, ch, h, w int, err error) {
	if s == nil {
		return 0, 0, 0, 0, errors.New("csc: nil image tensor")
	}
	n, ch, h, w, err = s.NCHW()
	if err != nil {
		return
	}
	d := c.dict
	switch {
	case n*ch*h*w != len(s.Data):
		err = &tensor.ShapeError{Op: "csc", Want: s.Shape, Got: []int{len(s.Data)}}
	case n == 0 || h == 0 || w == 0:
		err = &tensor.ShapeError{Op: "csc: empty images", Want: []int{-1, d.C, -1, -1}, Got: s.Shape}
	case ch != d.C && d.C != 1:
		err = &tensor.ShapeError{Op: fmt.Sprintf("csc: images have %d channels, dictionary has %d", ch, d.C),
			Want: []int{n, d.C, h, w}, Got: s.Shape}
	case h < d.R || w < d.S:
		err = &tensor.ShapeError{Op: fmt.Sprintf("csc: image %dx%d smaller than the %dx%d filters", h, w, d.R, d.S),
			Want: []int{n, ch, d.R, d.S}, Got: s.Shape}
	}
	return
}

// Solve codes one image of shape (C, H, W) or (1, C, H, W). rec, which may
// be nil, receives every iteration's statistics (with the objective,
// computed exactly, which costs time). Bad input returns a
// *tensor.ShapeError or *InputError; cancellation returns ctx.Err().
func (c *Coder) Solve(ctx context.Context, s *tensor.Tensor, rec admm.Recorder) (*Result, error) {
	if s != nil && len(s.Shape) == 3 {
		s = &tensor.Tensor{Shape: append([]int{1}, s.Shape...), Data: s.Data}
	}
	n, _, h, w, err := c.checkImages(s)
	if err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, &tensor.ShapeError{Op: "csc.Solve: one image", Want: []int{1, s.Shape[1], h, w}, Got: s.Shape}
	}
	ws, err := c.newWorkspace(h, w)
	if err != nil {
		return nil, err
	}
	defer c.release(ws)
	return c.solveImage(ctx, ws, s.Data, s.Shape[1], rec)
}

// SolveBatch codes every image of a (N, C, H, W) batch independently, on
// opt.Workers goroutines; results are identical to solving the images one
// by one, whatever the number of workers. rep (may be nil) is told of every
// finished image. On error (bad input, cancellation) no results are
// returned.
func (c *Coder) SolveBatch(ctx context.Context, s *tensor.Tensor, rep progress.Reporter) ([]*Result, error) {
	n, ch, h, w, err := c.checkImages(s)
	if err != nil {
		return nil, err
	}
	out := make([]*Result, n)
	per := ch * h * w
	err = c.parallel(ctx, n, h, w, rep, "csc solve", func(ctx context.Context, ws *workspace, i int) error {
		r, err := c.solveImage(ctx, ws, s.Data[i*per:(i+1)*per], ch, nil)
		out[i] = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parallel runs job(i) for i in [0, n) on the configured number of
// workers, each with its own workspace for h×w images.
func (c *Coder) parallel(ctx context.Context, n, h, w int, rep progress.Reporter, stage string,
	job func(ctx context.Context, ws *workspace, i int) error) error {
	rep = progress.Or(rep)
	workers := c.opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		ws, err := c.newWorkspace(h, w)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.release(ws)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := job(ctx, ws, i); err != nil {
					errOnce.Do(func() { firstErr = err })
					cancel()
					return
				}
				rep.Report(stage, int(done.Add(1)), n, "")
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// workspace holds one worker's scratch memory for h×w images. It is not
// safe for concurrent use.
type workspace struct {
	sp    *spectrum
	plan  fft.RealPlan2D
	batch fft.BatchPlan2D // the M coefficient maps at once
	h, w  int
	xf    []complex64 // (M, F)
	x     []float32   // (M, H*W)
	tmp   []float32   // H*W
	t     []complex64 // (C, F)
	dsf   []complex64 // (M, F): D^H s in the Fourier domain
	sf    []complex64 // (C, F)
	y, u  []float32   // (M, H*W): state of the current single-image solve
	yu    []float32   // y and u, contiguous (admm.Stater)
	rec   []float64   // (C, H*W): float64 reconstruction for the objective

	tk     *Tikhonov // projection only, made on first use
	lo, hi []float32 // (C, H*W) projection only
	dx     []float64 // (C, H*W) projection only: D x

	active *activeWork // MethodActiveSet only, made on first use
}

// newWorkspace returns an idle workspace for h×w images from the pool, or a
// new one. Hand it back with release.
func (c *Coder) newWorkspace(h, w int) (*workspace, error) {
	sp, err := c.spectrum(h, w)
	if err != nil {
		return nil, err
	}
	if ws, ok := c.entry(h, w).pool.Get().(*workspace); ok {
		return ws, nil
	}
	return newWorkspace(sp)
}

// release returns ws to the pool of its size.
func (c *Coder) release(ws *workspace) { c.entry(ws.h, ws.w).pool.Put(ws) }

func newWorkspace(sp *spectrum) (*workspace, error) {
	p, err := fft.New(sp.h, sp.w)
	if err != nil {
		return nil, err
	}
	bp, err := fft.NewBatch(sp.h, sp.w, sp.m)
	if err != nil {
		return nil, err
	}
	hw, f, M, C := sp.h*sp.w, sp.f, sp.m, sp.c
	yu := fft.MakeFloat32(2 * M * hw)
	return &workspace{
		sp: sp, plan: p, batch: bp, h: sp.h, w: sp.w,
		xf:  fft.MakeComplex64(M * f),
		x:   fft.MakeFloat32(M * hw),
		tmp: fft.MakeFloat32(hw),
		t:   make([]complex64, sp.scratchLen()),
		dsf: make([]complex64, M*f),
		sf:  fft.MakeComplex64(C * f),
		y:   yu[: M*hw : M*hw],
		u:   yu[M*hw:],
		yu:  yu,
		rec: make([]float64, C*hw),
	}, nil
}

// setSignal computes s's DFT and D^H s for the workspace's spectrum.
func (ws *workspace) setSignal(s []float32) {
	sp := ws.sp
	f, hw := sp.f, ws.h*ws.w
	for c := 0; c < sp.c; c++ {
		copy(ws.tmp, s[c*hw:(c+1)*hw])
		ws.plan.Forward(ws.sf[c*f:(c+1)*f], ws.tmp)
	}
	ws.computeDSf()
}

func (ws *workspace) computeDSf() {
	sp := ws.sp
	dhs(ws.dsf, sp.df, ws.sf, sp.m, sp.c, sp.f)
}

// solveImage codes one image of nch channels: with the dictionary's
// channel count as one problem (coefficient maps shared by the channels),
// or, for a single-channel dictionary and nch > 1, channel by channel
// (SPORCO's behaviour), X then being (nch, M, H, W), the objective the sum
// over channels, Iterations the maximum and Converged true when every
// channel converged. rec sees the channels' iterations one after the other.
func (c *Coder) solveImage(ctx context.Context, ws *workspace, s []float32, nch int, rec admm.Recorder) (*Result, error) {
	if nch == c.dict.C {
		return c.solveOne(ctx, ws, s, rec)
	}
	hw := ws.h * ws.w
	m := c.dict.M
	out := &Result{X: tensor.New(nch, m, ws.h, ws.w), Converged: true}
	for ch := 0; ch < nch; ch++ {
		r, err := c.solveOne(ctx, ws, s[ch*hw:(ch+1)*hw], rec)
		if err != nil {
			return nil, err
		}
		copy(out.X.Data[ch*m*hw:], r.X.Data)
		out.Objective += r.Objective
		out.DFid += r.DFid
		out.Reg += r.Reg
		out.Iterations = max(out.Iterations, r.Iterations)
		out.Converged = out.Converged && r.Converged
		out.Rho = r.Rho
		out.Seconds += r.Seconds
	}
	return out, nil
}

// solveOne runs CBPDN on one image s (dictionary's C channels × H × W
// values) from a zero start.
func (c *Coder) solveOne(ctx context.Context, ws *workspace, s []float32, rec admm.Recorder) (*Result, error) {
	r, err := c.solveInPlace(ctx, ws, s, rec)
	if err != nil {
		return nil, err
	}
	r.X = tensor.New(c.dict.M, ws.h, ws.w)
	copy(r.X.Data, ws.y)
	return r, nil
}

// solveInPlace runs CBPDN on one image s (dictionary's C channels × H × W
// values) from a zero start and leaves the coefficient maps in ws.y; the
// Result's X is nil.
func (c *Coder) solveInPlace(ctx context.Context, ws *workspace, s []float32, rec admm.Recorder) (*Result, error) {
	return c.solveFrom(ctx, ws, s, nil, nil, 0, rec)
}

// solveFrom is solveInPlace started from the coefficient maps y0, the
// scaled dual u0 and the penalty rho0 (a warm start; see State), or from
// zero and the default penalty when y0 is nil.
func (c *Coder) solveFrom(ctx context.Context, ws *workspace, s, y0, u0 []float32, rho0 float64, rec admm.Recorder) (*Result, error) {
	if c.opt.Method == MethodActiveSet {
		return c.solveActive(ctx, ws, s, y0)
	}
	t0 := time.Now()
	p := c.start(ws, s)
	ao := c.opt.admmOptions()
	if y0 == nil {
		rho0 = c.opt.rho0()
	} else {
		copy(ws.y, y0)
		copy(ws.u, u0)
		ao = c.opt.warmOptions(ao)
	}
	solver, err := admm.New(p, ao, rho0)
	if err != nil {
		return nil, err
	}
	res, err := solver.Run(ctx, rec)
	if err != nil {
		return nil, err
	}
	secs := time.Since(t0).Seconds()
	obj, dfid, reg := objective(c.dict, ws.h, ws.w, ws.y, s, c.opt.Lambda, ws.rec)
	return &Result{Objective: obj, DFid: dfid, Reg: reg, Iterations: res.Iterations,
		Converged: res.Converged, Rho: solver.Rho(), Seconds: secs}, nil
}

// start sets up CBPDN on s (dictionary's C channels × H × W values) from
// a zero start in ws.
func (c *Coder) start(ws *workspace, s []float32) *problem {
	ws.setSignal(s)
	clear(ws.y)
	clear(ws.u)
	return &problem{ws: ws, y: ws.y, u: ws.u, yu: ws.yu, s: s, dict: c.dict, lambda: float32(c.opt.Lambda), lam64: c.opt.Lambda}
}

// problem is CBPDN on one image as an admm.Problem with A = I, B = -I,
// c = 0: f(x) = 1/2 ||D x - s||^2, g(y) = lambda ||y||_1 (Wohlberg 2016,
// section III). The relaxation, y step, u step and residual norms are fused
// into one pass over the coefficient maps (YStep); UStep does nothing.
type problem struct {
	ws     *workspace
	y, u   []float32 // (M, H*W) state
	yu     []float32 // y and u contiguous when they are (nil in learning)
	s      []float32 // the image, for Objective
	dict   *Dictionary
	lambda float32
	lam64  float64
	alpha  float32
	res    admm.Residuals
}

// XStep solves (D^H D + rho I) x = D^H s + rho (y - u) in the Fourier
// domain.
func (p *problem) XStep(rho float64) {
	ws := p.ws
	sp := ws.sp
	hw := ws.h * ws.w
	r := float32(rho)
	sub(ws.x, p.y, p.u) // ws.x is free until the inverse transforms below
	ws.batch.Forward(ws.xf, ws.x)
	sp.formSolve(ws.xf, ws.dsf, r, 1/float32(hw), ws.t)
	ws.batch.InverseUnnormalized(ws.x, ws.xf)
}

// Relax records alpha; the relaxation is applied in YStep.
func (p *problem) Relax(alpha float64) { p.alpha = float32(alpha) }

// YStep applies, per coefficient, xr = alpha x + (1-alpha) y,
// y = soft(xr + u, lambda/rho), u += xr - y, and accumulates the residual
// norms.
func (p *problem) YStep(rho float64) {
	x := p.ws.x
	r, d, ax, by, uu := fusedYU(x, p.y, p.u, p.alpha, p.lambda/float32(rho))
	p.res = admm.Residuals{Primal: math.Sqrt(r), Dual: math.Sqrt(d), AX: math.Sqrt(ax), BY: math.Sqrt(by),
		ATU: math.Sqrt(uu), Nc: len(x), Nx: len(x)}
}

// UStep does nothing: the dual update is fused into YStep.
func (p *problem) UStep() {}

// Residuals implements admm.Problem.
func (p *problem) Residuals() admm.Residuals { return p.res }

// ScaleDual implements admm.Problem.
func (p *problem) ScaleDual(f float64) {
	g := float32(f)
	for i := range p.u {
		p.u[i] *= g
	}
}

// State implements admm.Stater: y and u are contiguous in the workspace.
// Dictionary learning's problems have no yu (Anderson acceleration needs
// many iterations per Run and the learner does one), so State is empty.
func (p *problem) State() ([]float32, int) { return p.yu, len(p.y) }

// SetRho does nothing: the Woodbury factorization holds for every rho.
func (p *problem) SetRho(float64) {}

// Objective implements admm.Objectiver, exactly on y.
func (p *problem) Objective() (float64, float64, float64) {
	return objective(p.dict, p.ws.h, p.ws.w, p.y, p.s, p.lam64, p.ws.rec)
}

// subGo stores a - b in dst.
func subGo(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] - b[i]
	}
}

// fusedYUGo is the pure-Go fused relaxation / y step / u step / residual
// pass.
func fusedYUGo(x, y, u []float32, alpha, thr float32) (r, d, ax, by, uu float64) {
	y = y[:len(x)]
	u = u[:len(x)]
	b := 1 - alpha
	var rr, dd, aa, bb, cc float32
	const blk = 256 // float32 partial sums over short blocks, float64 across
	for i0 := 0; i0 < len(x); i0 += blk {
		i1 := min(i0+blk, len(x))
		rr, dd, aa, bb, cc = 0, 0, 0, 0, 0
		for i := i0; i < i1; i++ {
			xv, yo := x[i], y[i]
			v := alpha*xv + b*yo + u[i]
			yn := float32(0)
			if v > thr {
				yn = v - thr
			} else if v < -thr {
				yn = v + thr
			}
			un := v - yn
			y[i], u[i] = yn, un
			e := xv - yn
			rr += e * e
			e = yn - yo
			dd += e * e
			aa += xv * xv
			bb += yn * yn
			cc += un * un
		}
		r += float64(rr)
		d += float64(dd)
		ax += float64(aa)
		by += float64(bb)
		uu += float64(cc)
	}
	return
}

// objective evaluates 1/2 sum_c ||sum_m d_{c,m} (*) x_m - s_c||^2 and
// lambda ||x||_1 in float64, by a sparse circular convolution over the
// non-zero coefficients. rec is scratch of C*H*W values.
func objective(d *Dictionary, h, w int, x, s []float32, lambda float64, rec []float64) (obj, dfid, reg float64) {
	rec = rec[:d.C*h*w]
	reconstruct(rec, d, h, w, x)
	for i, v := range rec {
		e := v - float64(s[i])
		dfid += e * e
	}
	dfid /= 2
	for _, v := range x {
		reg += math.Abs(float64(v))
	}
	reg *= lambda
	return dfid + reg, dfid, reg
}

// reconstruct stores sum_m d_{c,m} (*) x_m (circular convolution, filter
// origin at its top-left pixel) in rec (C, H, W), in float64, visiting
// only the non-zero coefficients of x (M, H, W).
func reconstruct(rec []float64, d *Dictionary, h, w int, x []float32) {
	clear(rec[:d.C*h*w])
	for i, v := range x[:d.M*h*w] {
		if v != 0 {
			atomDot(rec, d.Filters, d.C, d.R, d.S, h, w, i, float64(v))
		}
	}
}
