package csc

import (
	"context"

	"github.com/stl-defense/stl/admm"
)

// tape records what reverse and forward mode through the ADMM iterations
// of one CBPDN solve need: per iteration k, the penalty rho_k it used, the
// factor its dual was rescaled by afterwards (1 when rho did not change)
// and the soft thresholding's pass mask (the coefficients it left
// non-zero), with the relaxation alpha.
type tape struct {
	rho   []float32
	scale []float32
	mask  [][]uint64
	alpha float32
}

// recording is the CBPDN problem that writes its tape as the generic loop
// runs it; the iterates are those of solveInPlace bit for bit.
type recording struct {
	*problem
	tp *tape
}

// YStep runs the fused relaxation / shrinkage / dual step and records rho
// and the pass mask (y != 0 exactly where |v| > lambda/rho).
func (r *recording) YStep(rho float64) {
	r.problem.YStep(rho)
	r.tp.rho = append(r.tp.rho, float32(rho))
	r.tp.scale = append(r.tp.scale, 1)
	r.tp.mask = append(r.tp.mask, bitsOf(r.y))
}

// ScaleDual rescales the dual and records the factor.
func (r *recording) ScaleDual(f float64) {
	r.problem.ScaleDual(f)
	r.tp.scale[len(r.tp.scale)-1] *= float32(f)
}

// record runs CBPDN on s from a zero start as solveInPlace does, leaving
// the solution in ws.y, and returns its tape: with k == 0 the forward
// run exactly (stopping rule included), with k > 0 exactly k iterations
// (no stopping rule; rho keeps its adaptive rule).
func (c *Coder) record(ctx context.Context, ws *workspace, s []float32, k int) (*tape, error) {
	rp := &recording{problem: c.start(ws, s), tp: &tape{}}
	aopt := c.opt.admmOptions()
	aopt.Anderson = 0 // the tape holds plain ADMM steps only
	if k > 0 {
		aopt.MaxIter, aopt.RelStopTol, aopt.AbsStopTol = k, 0, 0
	}
	solver, err := admm.New(rp, aopt, c.opt.rho0())
	if err != nil {
		return nil, err
	}
	if k == 0 {
		_, err = solver.Run(ctx, nil)
	}
	for done := 0; err == nil && done < k; {
		var res admm.Result
		res, err = solver.RunN(ctx, k-done, nil)
		done += res.Iterations
	}
	if err != nil {
		return nil, err
	}
	rp.tp.alpha = rp.alpha
	return rp.tp, nil
}

// unrolledVJP writes into out (C×H×W) the gradient with respect to the
// coded signal of <g, D y_K>, y_K the last sparse iterate of the taped
// run: reverse mode through each iteration
//
//	x = (D^T D + rho I)^{-1} (D^T s + rho (y - u))
//	v = alpha x + (1 - alpha) y + u;  y' = soft(v, lambda/rho);  u' = scale (v - y')
//
// with (D^T D + rho I)^{-1} self-adjoint and solved in the Fourier domain
// as in the forward run. The contributions D q of the iterations to the
// gradient are summed in the Fourier domain and transformed once.
func (ws *workspace) unrolledVJP(tp *tape, out, g []float32) {
	sp := ws.sp
	hw, f := ws.h*ws.w, sp.f
	gy := ws.applyAdjoint(nil, g)
	gu := make([]float32, len(gy))
	acc := make([]complex64, sp.c*f)
	zero := make([]complex64, sp.m*f) // formSolve's right-hand side term
	a, b := tp.alpha, 1-tp.alpha
	for k := len(tp.rho) - 1; k >= 0; k-- {
		rho := tp.rho[k]
		if c := tp.scale[k]; c != 1 {
			for i := range gu {
				gu[i] *= c
			}
		}
		m := tp.mask[k]
		ar := a / rho // formSolve multiplies by rho before solving
		for i := range gu {
			v := gu[i]
			if has(m, i) {
				v = gy[i]
			}
			ws.x[i], gy[i], gu[i] = ar*v, b*v, v
		}
		ws.batch.Forward(ws.xf, ws.x)
		sp.formSolve(ws.xf, zero, rho, 1/float32(hw), ws.t) // (D^T D + rho I)^{-1} a gv
		sp.mulD(acc, ws.xf)
		ws.batch.InverseUnnormalized(ws.x, ws.xf)
		for i, q := range ws.x {
			gy[i] += rho * q
			gu[i] -= rho * q
		}
	}
	for c := 0; c < sp.c; c++ {
		ws.plan.Inverse(ws.tmp, acc[c*f:(c+1)*f])
		for j, v := range ws.tmp {
			out[c*hw+j] = float32(hw) * v
		}
	}
}

// unrolledJVP writes into out (C×H×W) the derivative of D y_K in the
// direction v of the coded signal: forward mode through the taped
// iterations (the same steps as unrolledVJP, linearized, in the order of
// the forward run).
func (ws *workspace) unrolledJVP(tp *tape, out, v []float32) {
	sp := ws.sp
	hw := ws.h * ws.w
	n := sp.m * hw
	dy, du := make([]float32, n), make([]float32, n)
	ws.setSignal(v) // ws.dsf = DFT of D^T v
	a, b := tp.alpha, 1-tp.alpha
	for k, rho := range tp.rho {
		sub(ws.x, dy, du)
		ws.batch.Forward(ws.xf, ws.x)
		sp.formSolve(ws.xf, ws.dsf, rho, 1/float32(hw), ws.t)
		ws.batch.InverseUnnormalized(ws.x, ws.xf)
		m, c := tp.mask[k], tp.scale[k]
		for i, dx := range ws.x {
			dv := a*dx + b*dy[i] + du[i]
			if has(m, i) {
				dy[i], du[i] = dv, 0
			} else {
				dy[i], du[i] = 0, c*dv
			}
		}
	}
	ws.apply(out, dy)
}
