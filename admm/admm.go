package admm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Problem supplies the steps of one ADMM problem in scaled form (U is the
// dual variable divided by rho). The loop calls, each iteration:
// XStep, Relax, YStep, UStep, Residuals, and then, when rho changes,
// ScaleDual and SetRho.
type Problem interface {
	// XStep minimizes the augmented Lagrangian over x for the current
	// y, u and rho.
	XStep(rho float64)
	// Relax forms the over-relaxed AX' = alpha AX - (1-alpha)(BY - c)
	// used by YStep and UStep, keeping the unrelaxed AX for Residuals.
	// alpha == 1 means no relaxation.
	Relax(alpha float64)
	// YStep minimizes over y for the current (relaxed) AX, u and rho. It
	// keeps the previous y for the dual residual.
	YStep(rho float64)
	// UStep updates the scaled dual: u += AX' + BY - c.
	UStep()
	// Residuals returns the norms of the current iterate (see Residuals).
	Residuals() Residuals
	// ScaleDual multiplies u by f; the loop calls it with f = old/new rho
	// when rho changes, keeping the unscaled dual unchanged.
	ScaleDual(f float64)
	// SetRho tells the problem rho changed, so it can refresh anything it
	// caches for a given rho.
	SetRho(rho float64)
}

// Residuals holds the norms the loop needs, all unscaled by rho.
type Residuals struct {
	Primal float64 // ||AX + BY - c|| with the unrelaxed AX
	Dual   float64 // ||A^T B (Y - Yprev)||
	AX     float64 // ||AX||
	BY     float64 // ||BY||
	C      float64 // ||c||
	ATU    float64 // ||A^T U|| (scaled dual)
	Nc, Nx int     // number of constraint rows and of x entries
}

// Objectiver is implemented by problems that can evaluate their objective;
// the loop then records it in each Stats when a Recorder is given.
type Objectiver interface {
	// Objective returns the total objective, the data fidelity and the
	// regularization terms at the current iterate.
	Objective() (obj, dfid, reg float64)
}

// Options configures the loop. Defaults follow SPORCO's ConvBPDN (see
// DefaultOptions).
type Options struct {
	// MaxIter is the maximum number of iterations per Run call (200).
	MaxIter int
	// AbsStopTol is the absolute stopping tolerance (0).
	AbsStopTol float64
	// RelStopTol is the relative stopping tolerance (5e-3).
	RelStopTol float64
	// Relax is the over-relaxation parameter alpha in (0, 2) (1.8).
	Relax float64
	// AutoRho enables adaptive rho by residual balancing (true).
	AutoRho bool
	// RhoPeriod is the number of iterations between rho updates (1).
	RhoPeriod int
	// RhoScaling is the maximum factor tau of one rho update (1000).
	RhoScaling float64
	// RsdlRatio is the residual ratio mu that triggers an update (1.2).
	RsdlRatio float64
	// RsdlTarget is the target ratio xi of primal to dual residual; the
	// problem supplies it (CBPDN: 1 + 18.3^(log10(lambda)+1)); 0 means 1.
	RsdlTarget float64
	// StdResiduals uses the standard (unnormalized) residuals of Boyd et
	// al. instead of normalized ones (false, as SPORCO's default).
	StdResiduals bool
	// Anderson, when > 0, is the memory of the Anderson acceleration of
	// the iteration (see Stater and anderson.go): the problem must
	// implement Stater. 0 (the default) runs plain ADMM. The stopping
	// rule is unchanged: it is checked on the plain step's residuals.
	Anderson int `json:",omitempty"`
}

// DefaultOptions returns SPORCO's ConvBPDN defaults with MaxIter 200 and
// RelStopTol 5e-3, the settings of the paper's reference implementation.
func DefaultOptions() Options {
	return Options{
		MaxIter:    200,
		AbsStopTol: 0,
		RelStopTol: 5e-3,
		Relax:      1.8,
		AutoRho:    true,
		RhoPeriod:  1,
		RhoScaling: 1000,
		RsdlRatio:  1.2,
	}
}

// OptionError reports an invalid option.
type OptionError struct {
	Field string
	Value any
	Want  string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("admm: option %s = %v: want %s", e.Field, e.Value, e.Want)
}

// Validate returns an *OptionError for the first invalid field.
func (o Options) Validate() error {
	bad := func(f string, v any, want string) error { return &OptionError{Field: f, Value: v, Want: want} }
	fin := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case o.MaxIter < 0:
		return bad("MaxIter", o.MaxIter, ">= 0")
	case !fin(o.AbsStopTol) || o.AbsStopTol < 0:
		return bad("AbsStopTol", o.AbsStopTol, "finite, >= 0")
	case !fin(o.RelStopTol) || o.RelStopTol < 0:
		return bad("RelStopTol", o.RelStopTol, "finite, >= 0")
	case !fin(o.Relax) || o.Relax <= 0 || o.Relax >= 2:
		return bad("Relax", o.Relax, "in (0, 2)")
	case o.AutoRho && o.RhoPeriod < 1:
		return bad("RhoPeriod", o.RhoPeriod, ">= 1")
	case o.AutoRho && (!fin(o.RhoScaling) || o.RhoScaling <= 1):
		return bad("RhoScaling", o.RhoScaling, "finite, > 1")
	case o.AutoRho && (!fin(o.RsdlRatio) || o.RsdlRatio < 1):
		return bad("RsdlRatio", o.RsdlRatio, "finite, >= 1")
	case !fin(o.RsdlTarget) || o.RsdlTarget < 0:
		return bad("RsdlTarget", o.RsdlTarget, "finite, >= 0 (0 = 1)")
	case o.Anderson < 0 || o.Anderson > MaxAnderson:
		return bad("Anderson", o.Anderson, fmt.Sprintf("in [0, %d]", MaxAnderson))
	}
	return nil
}

// MaxAnderson is the largest Anderson memory Validate accepts.
const MaxAnderson = 32

// ErrNotStater reports Anderson acceleration asked of a problem that does
// not implement Stater.
var ErrNotStater = errors.New("admm: Anderson acceleration needs a problem implementing Stater")

// Stats describes one iteration. Objective, DFid and Reg are NaN when the
// problem does not implement Objectiver.
type Stats struct {
	Iter                 int     // 0-based iteration count since the Solver was made
	Objective, DFid, Reg float64 // objective terms at this iterate
	Primal, Dual         float64 // residuals (normalized unless StdResiduals)
	EpsPrimal, EpsDual   float64 // stopping thresholds for them
	Rho                  float64 // rho used in this iteration
	Elapsed              time.Duration
}

// Recorder receives the statistics of every iteration. The terminal
// output, JSON output and tests are all Recorders. Record is called from
// the goroutine running the loop.
type Recorder interface {
	Record(Stats)
}

// RecorderFunc adapts a function to a Recorder.
type RecorderFunc func(Stats)

// Record implements Recorder.
func (f RecorderFunc) Record(s Stats) { f(s) }

// Result summarizes a Run.
type Result struct {
	Iterations int   // iterations done by this Run
	Converged  bool  // stopping rule met (false: MaxIter reached)
	Last       Stats // statistics of the last iteration (no Objective unless recorded)
}

// Solver runs the loop on one Problem. Its state (rho, iteration count)
// persists between Run calls, so Run can be called repeatedly to continue
// (warm start), as dictionary learning does with one iteration at a time.
// A Solver is not safe for concurrent use.
type Solver struct {
	p       Problem
	opt     Options
	rho     float64
	k       int
	elapsed time.Duration
	acc     *anderson // nil without acceleration
	state   Stater
}

// ErrRho reports a non-positive or non-finite initial rho.
var ErrRho = errors.New("admm: rho must be finite and > 0")

// New returns a Solver for p starting at penalty rho0. It validates opt.
func New(p Problem, opt Options, rho0 float64) (*Solver, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if !(rho0 > 0) || math.IsInf(rho0, 0) {
		return nil, fmt.Errorf("%w (got %v)", ErrRho, rho0)
	}
	if opt.RsdlTarget == 0 {
		opt.RsdlTarget = 1
	}
	s := &Solver{p: p, opt: opt, rho: rho0}
	if opt.Anderson > 0 {
		st, ok := p.(Stater)
		if !ok {
			return nil, ErrNotStater
		}
		s.acc, s.state = newAnderson(opt.Anderson), st
	}
	p.SetRho(rho0)
	return s, nil
}

// Rho returns the current penalty parameter.
func (s *Solver) Rho() float64 { return s.rho }

// Iterations returns the total number of iterations done so far.
func (s *Solver) Iterations() int { return s.k }

// Run iterates until the stopping rule holds, opt.MaxIter iterations have
// been done in this call, or ctx is cancelled (checked once per iteration;
// the error is then ctx.Err() and the problem holds the last iterate). rec
// may be nil.
func (s *Solver) Run(ctx context.Context, rec Recorder) (Result, error) {
	return s.RunN(ctx, s.opt.MaxIter, rec)
}

// RunN is Run with an explicit iteration limit n for this call.
func (s *Solver) RunN(ctx context.Context, n int, rec Recorder) (Result, error) {
	var res Result
	obj, canObj := s.p.(Objectiver)
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		t0 := time.Now()
		rho := s.rho
		if s.acc != nil {
			z, _ := s.state.State()
			s.acc.begin(z)
		}
		s.p.XStep(rho)
		s.p.Relax(s.opt.Relax)
		s.p.YStep(rho)
		s.p.UStep()
		r, d, epri, edua := s.residuals(s.p.Residuals())
		st := Stats{Iter: s.k, Primal: r, Dual: d, EpsPrimal: epri, EpsDual: edua, Rho: rho,
			Objective: math.NaN(), DFid: math.NaN(), Reg: math.NaN()}
		if rec != nil && canObj {
			st.Objective, st.DFid, st.Reg = obj.Objective()
		}
		s.updateRho(r, d)
		s.elapsed += time.Since(t0)
		st.Elapsed = s.elapsed
		if rec != nil {
			rec.Record(st)
		}
		s.k++
		res.Iterations++
		res.Last = st
		if r <= epri && d <= edua {
			res.Converged = true
			break
		}
		if s.acc != nil && i < n-1 {
			z, dual := s.state.State()
			if rho != s.rho {
				s.acc.scaleDual(dual, float32(rho/s.rho))
			}
			s.acc.step(z)
		}
	}
	return res, nil
}

// residuals computes the primal and dual residuals and their thresholds as
// SPORCO's ADMM.compute_residuals does.
func (s *Solver) residuals(rs Residuals) (r, d, epri, edua float64) {
	rho := s.rho
	rn := math.Max(rs.AX, math.Max(rs.BY, rs.C))
	sn := rho * rs.ATU
	if s.opt.StdResiduals {
		r = rs.Primal
		d = rho * rs.Dual
		epri = math.Sqrt(float64(rs.Nc))*s.opt.AbsStopTol + rn*s.opt.RelStopTol
		edua = math.Sqrt(float64(rs.Nx))*s.opt.AbsStopTol + sn*s.opt.RelStopTol
		return
	}
	if rn == 0 {
		rn = 1
	}
	if sn == 0 {
		sn = 1
	}
	r = rs.Primal / rn
	d = rho * rs.Dual / sn
	epri = math.Sqrt(float64(rs.Nc))*s.opt.AbsStopTol/rn + s.opt.RelStopTol
	edua = math.Sqrt(float64(rs.Nx))*s.opt.AbsStopTol/sn + s.opt.RelStopTol
	return
}

// updateRho is SPORCO's residual balancing with automatic scaling
// (Wohlberg 2017, "ADMM penalty parameter selection by residual
// balancing"): when r > xi*mu*s, rho grows by min(tau, sqrt(r/(xi s)));
// when s > (mu/xi) r it shrinks by the same rule; the scaled dual is
// rescaled to keep the unscaled one.
func (s *Solver) updateRho(r, d float64) {
	o := s.opt
	if !o.AutoRho || s.k == 0 || (s.k+1)%o.RhoPeriod != 0 {
		return
	}
	tau, mu, xi := o.RhoScaling, o.RsdlRatio, o.RsdlTarget
	mlt := tau
	if r != 0 && d != 0 {
		if r > d*xi {
			mlt = math.Sqrt(r / (d * xi))
		} else {
			mlt = math.Sqrt(d * xi / r)
		}
		if mlt > tau {
			mlt = tau
		}
	}
	f := 1.0
	switch {
	case r > xi*mu*d:
		f = mlt
	case d > (mu/xi)*r:
		f = 1 / mlt
	}
	if f == 1 {
		return
	}
	// SPORCO keeps rho in the solver's dtype (float32 here).
	s.rho = float64(float32(s.rho * f))
	s.p.ScaleDual(1 / f)
	s.p.SetRho(s.rho)
}
