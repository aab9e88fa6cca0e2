package csc

import "math"

// projectSupport writes P_S g into out, P_S = D_S (D_S^T D_S)^+ D_S^T the
// orthogonal projector onto the span of the atoms on the support S (the
// set bits of sup, over the (M, H, W) coefficients), for g of the
// dictionary's C channels × H × W. It runs CGLS (Hestenes-Stiefel CG on
// the normal equations, in residual form) on min_a ||D_S a - g|| from
// a = 0, with D and D^T applied by the workspace's FFT operators (float32)
// and the vectors in float64: the residual r converges to g - P_S g
// whether or not D_S^T D_S is singular. It stops when ||D_S^T r|| <=
// tol ||D_S^T g|| or after maxIter iterations, and returns the iterations
// done and whether the tolerance was met. It uses the workspace's
// scratch (ws.x, ws.xf, ws.t, ws.tmp, ws.sf, ws.dsf).
func (ws *workspace) projectSupport(out, g []float32, sup []uint64, tol float64, maxIter int) (int, bool) {
	n := len(g)
	mhw := ws.sp.m * ws.h * ws.w
	r := make([]float64, n)
	for i, v := range g {
		r[i] = float64(v)
	}
	rf := make([]float32, n)
	pf := make([]float32, mhw)
	// s = D_S^T r, masked to the support.
	adjointS := func(s []float64) float64 {
		for i, v := range r {
			rf[i] = float32(v)
		}
		ws.applyAdjoint(ws.x, rf)
		var nn float64
		for i, v := range ws.x {
			if has(sup, i) {
				s[i] = float64(v)
				nn += s[i] * s[i]
			} else {
				s[i] = 0
			}
		}
		return nn
	}
	s := make([]float64, mhw)
	gamma := adjointS(s)
	stop := tol * tol * gamma
	p := append([]float64(nil), s...)
	q := make([]float64, n)
	it, ok := 0, gamma <= stop
	for ; !ok && it < maxIter; it++ {
		for i, v := range p {
			pf[i] = float32(v)
		}
		ws.apply(rf, pf) // D p (p is zero off the support)
		var qq float64
		for i := range q {
			q[i] = float64(rf[i])
			qq += q[i] * q[i]
		}
		if qq == 0 || math.IsNaN(qq) {
			break
		}
		alpha := gamma / qq
		for i, v := range q {
			r[i] -= alpha * v
		}
		g2 := adjointS(s)
		if g2 <= stop {
			it++
			ok = true
			break
		}
		beta := g2 / gamma
		gamma = g2
		for i := range p {
			p[i] = s[i] + beta*p[i]
		}
	}
	for i, v := range g {
		out[i] = float32(float64(v) - r[i])
	}
	return it, ok
}
