package csc

import (
	"context"
	"math"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/fft"
)

// cdlImage is the state of one training image in dictionary learning:
// its coefficient step (CBPDN) and its part of the dictionary step.
type cdlImage struct {
	y, u   []float32   // CBPDN state (M, H*W)
	sf     []complex64 // image DFT (C, F)
	prob   *problem
	solver *admm.Solver
	// dictionary step
	du  []complex64 // scaled dual u_k (C, M, F)
	dk  []complex64 // this iteration's d_k (C, M, F)
	yf  []complex64 // DFT of y (M, F)
	obj [2]float64  // data fidelity, l1 norm (before lambda)
	nrm [3]float64  // ||d_k||², ||d_k - g||², ||u_k||²
}

// initImages gives every training image its state: the CBPDN maps and
// solver of the coefficient step (the image's DFT computed with plan) and
// the dual and dictionary copy of the dictionary step.
func (l *learner) initImages(plan fft.RealPlan2D) error {
	opt, c, cf := l.opt, l.c, len(l.gf)
	l.per = make([]cdlImage, l.n)
	tmp := fft.MakeFloat32(l.hw)
	for k := range l.per {
		p := &l.per[k]
		p.y = fft.MakeFloat32(l.m * l.hw)
		p.u = fft.MakeFloat32(l.m * l.hw)
		p.sf = make([]complex64, c*l.f)
		p.du = make([]complex64, cf)
		p.dk = make([]complex64, cf)
		p.yf = fft.MakeComplex64(l.m * l.f)
		s := l.imgs.Data[k*c*l.hw : (k+1)*c*l.hw]
		for ch := 0; ch < c; ch++ {
			copy(tmp, s[ch*l.hw:(ch+1)*l.hw])
			plan.Forward(p.sf[ch*l.f:(ch+1)*l.f], tmp)
		}
		p.prob = &problem{y: p.y, u: p.u, s: s, lambda: float32(opt.Lambda), lam64: opt.Lambda}
		ao := opt.CodeADMM
		if ao.RsdlTarget == 0 {
			ao.RsdlTarget = 1 + math.Pow(18.3, math.Log10(opt.Lambda)+1)
		}
		rho0 := opt.CodeRho0
		if rho0 == 0 {
			rho0 = 50*opt.Lambda + 1
		}
		var err error
		if p.solver, err = admm.New(p.prob, ao, rho0); err != nil {
			return err
		}
	}
	return nil
}

// codeStep is the coefficient step of one outer iteration: one CBPDN
// iteration per image with the current dictionary, on the workers'
// workspaces ws (rebuilt for the dictionary's new spectrum); the new
// coefficient maps are handed to the dictionary step in the Fourier
// domain (yf). Cancellation returns ctx.Err().
func (l *learner) codeStep(ctx context.Context, ws []*workspace) error {
	sp, err := newSpectrum(l.dict, l.h, l.w)
	if err != nil {
		return err
	}
	for g := range ws {
		if ws[g], err = newWorkspace(sp); err != nil {
			return err
		}
	}
	return l.forEach(ctx, l.n, func(g, k int) {
		p := &l.per[k]
		w := ws[g]
		copy(w.sf, p.sf)
		w.computeDSf()
		p.prob.ws, p.prob.dict = w, l.dict
		if _, err := p.solver.RunN(ctx, 1, nil); err != nil {
			return // cancellation; reported by forEach
		}
		// Hand the coefficient maps to the dictionary step.
		w.batch.Forward(p.yf, p.y)
	})
}
