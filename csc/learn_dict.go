package csc

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/fft"
)

// randomDictionary draws Gaussian filters from seed and projects them onto
// the constraint set.
func randomDictionary(m, c, size int, seed uint64, zeroMean bool) *Dictionary {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	d := &Dictionary{M: m, C: c, R: size, S: size, Filters: make([]float32, m*c*size*size)}
	for i := range d.Filters {
		d.Filters[i] = float32(rng.NormFloat64())
	}
	project(d, zeroMean)
	return d
}

// project makes every channel of every filter zero-mean (optionally) and
// every filter unit norm over all its channels (SPORCO's cnvrep.Pcn, which
// normalizes onto the unit sphere; all-zero filters stay zero).
func project(d *Dictionary, zeroMean bool) {
	rs := d.R * d.S
	for m := 0; m < d.M; m++ {
		f := d.Filters[m*d.C*rs : (m+1)*d.C*rs]
		if zeroMean {
			for c := 0; c < d.C; c++ {
				ch := f[c*rs : (c+1)*rs]
				mean := 0.0
				for _, v := range ch {
					mean += float64(v)
				}
				mean /= float64(rs)
				for i := range ch {
					ch[i] = float32(float64(ch[i]) - mean)
				}
			}
		}
		nrm := 0.0
		for _, v := range f {
			nrm += float64(v) * float64(v)
		}
		if nrm > 0 {
			s := 1 / math.Sqrt(nrm)
			for i := range f {
				f[i] = float32(float64(f[i]) * s)
			}
		}
	}
}

// dictToFourier computes gf, the DFT of the zero-padded dictionary, in the
// (C, M, F) layout of the dictionary step.
func (l *learner) dictToFourier(plan fft.RealPlan2D) {
	d := l.dict
	pad := fft.MakeFloat32(l.hw)
	for m := 0; m < d.M; m++ {
		for c := 0; c < d.C; c++ {
			clear(pad)
			base := (m*d.C + c) * d.R * d.S
			for r := 0; r < d.R; r++ {
				copy(pad[r*l.w:r*l.w+d.S], d.Filters[base+r*d.S:base+(r+1)*d.S])
			}
			plan.Forward(l.gf[(c*l.m+m)*l.f:(c*l.m+m+1)*l.f], pad)
		}
	}
}

// dictStep is the dictionary update of dictionary learning as an
// admm.Problem (consensus form, Boyd et al. 2010 section 7.1; Choudhury et
// al. 2017): one dictionary copy d_k per training image k, the constraint
// d_k = g for all k, f(d) = sum_k 1/2 ||X_k d_k - s_k||^2 with X_k the
// image's coefficient maps, and g(g) the indicator of the constraint set
// (support Size x Size, optional zero mean per channel, unit norm per
// filter). The d_k and the scaled duals u_k live in the Fourier domain.
type dictStep struct {
	l       *learner
	plan    fft.RealPlan2D
	ws      []*workspace // per worker, for the batched transforms
	scratch [][]float32  // per worker, for the x-step kernel
	alpha   float32
	res     admm.Residuals
}

// XStep computes, for every image, with a = DFT of its coefficient maps at
// one frequency and b_c = conj(a) s_c + rho (g_c - u_c),
// d_c = (rho I + conj(a) a^T)^{-1} b_c by Sherman-Morrison. It also
// evaluates the coding objective with the dictionary the maps were coded
// with (Parseval, float64 accumulation).
func (ds *dictStep) XStep(rho float64) {
	l := ds.l
	l.forEach(context.Background(), l.n, func(g, k int) {
		p := &l.per[k]
		l1 := 0.0
		for _, v := range p.y {
			if v != 0 {
				l1 += math.Abs(float64(v))
			}
		}
		dfid := dictX(p.dk, p.yf, p.sf, l.gf, p.du, l.weights, ds.scratch[g], l.m, l.c, l.f, float32(rho))
		p.obj = [2]float64{dfid / 2, l1}
	})
}

// Relax records alpha; the relaxation is applied in YStep and UStep.
func (ds *dictStep) Relax(alpha float64) { ds.alpha = float32(alpha) }

// YStep sets g to the projection onto the constraint set of the mean over
// images of alpha d_k + (1-alpha) g + u_k, summed in image order per
// element so that the result does not depend on the number of workers.
func (ds *dictStep) YStep(float64) {
	l := ds.l
	alpha := ds.alpha
	beta := complex(1-alpha, 0)
	inv := complex(1/float32(l.n), 0)
	total := len(l.acc)
	const chunk = 4096
	nchunks := (total + chunk - 1) / chunk
	l.forEach(context.Background(), nchunks, func(_, j int) {
		lo, hi := j*chunk, min((j+1)*chunk, total)
		acc := l.acc[lo:hi]
		g := l.gf[lo:hi]
		clear(acc)
		for k := range l.per {
			axpy2(acc, l.per[k].dk[lo:hi], l.per[k].du[lo:hi], alpha)
		}
		kb := complex(float32(l.n), 0) * beta
		for i := range acc {
			acc[i] = (acc[i] + kb*g[i]) * inv
		}
	})
	copy(l.gfOld, l.gf)
	tmp := fft.MakeFloat32(l.hw)
	d := l.dict
	for m := 0; m < l.m; m++ {
		for c := 0; c < l.c; c++ {
			ds.plan.Inverse(tmp, l.acc[(c*l.m+m)*l.f:(c*l.m+m+1)*l.f])
			base := (m*l.c + c) * d.R * d.S
			for r := 0; r < d.R; r++ {
				copy(d.Filters[base+r*d.S:base+(r+1)*d.S], tmp[r*l.w:r*l.w+d.S])
			}
		}
	}
	project(d, l.opt.ZeroMean)
	l.dictToFourier(ds.plan)
}

// UStep updates every image's dual, u_k += alpha d_k + (1-alpha) g_old -
// g, and gathers the residual norms (Parseval-weighted, so that they are
// the spatial-domain norms).
func (ds *dictStep) UStep() {
	l := ds.l
	l.forEach(context.Background(), l.n, func(_, k int) {
		p := &l.per[k]
		dd, r, uu := dictU(p.du, p.dk, l.gfOld, l.gf, l.weights, l.f, ds.alpha)
		p.nrm = [3]float64{dd, r, uu}
	})
	var dd, r, uu, gg, dg float64
	for k := range l.per {
		dd += l.per[k].nrm[0]
		r += l.per[k].nrm[1]
		uu += l.per[k].nrm[2]
	}
	for i, g := range l.gf {
		wt := l.weights[i%l.f]
		gg += wt * float64(real(g)*real(g)+imag(g)*imag(g))
		e := g - l.gfOld[i]
		dg += wt * float64(real(e)*real(e)+imag(e)*imag(e))
	}
	kf := float64(l.n)
	nx := l.n * len(l.gf)
	ds.res = admm.Residuals{Primal: math.Sqrt(r), Dual: math.Sqrt(kf * dg), AX: math.Sqrt(dd),
		BY: math.Sqrt(kf * gg), ATU: math.Sqrt(uu), Nc: nx, Nx: nx}
}

// Residuals implements admm.Problem: ||d - g|| over all copies, the dual
// residual sqrt(K) ||g - g_old||, and the norms of the d_k, the K copies
// of g and the u_k.
func (ds *dictStep) Residuals() admm.Residuals { return ds.res }

// ScaleDual implements admm.Problem.
func (ds *dictStep) ScaleDual(f float64) {
	l := ds.l
	s := complex(float32(f), 0)
	l.forEach(context.Background(), l.n, func(_, k int) {
		du := l.per[k].du
		for i := range du {
			du[i] *= s
		}
	})
}

// SetRho does nothing: the Sherman-Morrison solve takes rho directly.
func (ds *dictStep) SetRho(float64) {}
