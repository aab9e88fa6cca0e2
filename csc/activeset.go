package csc

import (
	"context"
	"math"
	"strconv"
	"time"
)

// Method selects the algorithm that solves CBPDN.
type Method int

const (
	// MethodADMM is SPORCO's ADMM (Wohlberg 2016), stopped by SPORCO's
	// residual rule: the default, and the solver of the paper's reference
	// implementation.
	MethodADMM Method = iota
	// MethodActiveSet is a working-set solver certified by a duality gap
	// (see solveActive): coordinate descent on a small set of atoms,
	// grown from the atoms that violate the optimality conditions of the
	// whole problem, checked with one FFT correlation per outer
	// iteration. It stops when the duality gap is at most ActiveGapTol
	// times the objective, so every image's objective is within that
	// relative distance of the optimum (and so of ADMM's, which stops
	// above it).
	MethodActiveSet
)

// String returns "admm" or "active-set".
func (m Method) String() string {
	switch m {
	case MethodADMM:
		return "admm"
	case MethodActiveSet:
		return "active-set"
	}
	return "Method(" + strconv.Itoa(int(m)) + ")"
}

// ParseMethod returns the Method named s ("admm" or "active-set").
func ParseMethod(s string) (Method, error) {
	for _, m := range []Method{MethodADMM, MethodActiveSet} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, &OptionError{Field: "Method", Value: s, Want: `"admm" or "active-set"`}
}

// ActiveGapTol is the relative duality gap at which MethodActiveSet stops:
// (P(x) - D(nu)) / P(x) <= 5e-5, P the CBPDN objective and D its dual at
// the scaled residual. ADMM at SPORCO's rule (RelStopTol 5e-3) stops 2e-4
// to 3e-4 above the optimum on average on 32x32 and 64x64 highpass tiles
// and 3e-4 to 2.4e-3 on images coded with learned CIFAR-10 and ImageNet-10
// dictionaries (docs/csc.md), so the certified objective is at most 5e-5
// (relative) above ADMM's on every image, and in practice below it: the
// primal objective converges long before the gap certifies it.
const ActiveGapTol = 5e-5

// A subproblem of MethodActiveSet is solved to a relative duality gap of
// activeSubGap times the whole problem's last one, but not below
// activeSubFinal times ActiveGapTol (when no atom outside the set violates
// the optimality conditions, the whole problem's gap is the subproblem's,
// so the last subproblem need not be solved much beyond ActiveGapTol).
// Against 0.1 and 0.3, these took 11-16% fewer neighbour updates and 0.4-1
// fewer outer iterations per image on CIFAR-10 and ImageNet-10 images with
// learned dictionaries (docs/csc.md).
const (
	activeSubGap   = 0.05
	activeSubFinal = 0.9
)

// activeBlock is the block length of the violator scan.
const activeBlock = 64

// activeMaxSweeps bounds the coordinate descent sweeps of one subproblem.
const activeMaxSweeps = 2000

// activeWork is a workspace's scratch memory for solveActive.
type activeWork struct {
	s, r   []float64 // (C, H*W): the image and the residual s - D x
	ss, rr float64   // ||s||^2 and ||r||^2
	set    []int32   // working set: atom indices m*H*W + p
	fm     []int32   // the set's filters m
	n2     []float64 // the set's squared norms ||d_j||^2
	inv    []float64 // and their inverses
	x      []float64 // the working set's coefficients
	g, gs  []float64 // the set's correlations <d_j, r> and <d_j, s>
	adj    [][]nbr   // the set's overlapping neighbours (activegram.go)
	head   []int32   // (H*W): first set position of an atom at each pixel, or -1
	next   []int32   // next set position at the same pixel, or -1
	occ    []uint64  // (H) for W <= 64: bit x of row y set when pixel (y, x) holds an atom of the set
	bmax   []float32 // (M*H*W/activeBlock): the correlations' largest magnitude per block
	cand   []int32   // scratch: violating atoms
	vals   []float32 // scratch: their correlations
	sweeps int       // coordinate descent sweeps of the current image
	// skip: coordinate steps changing the reconstruction's energy by
	// less are not taken; bigStep: the largest change of a sweep.
	skip, bigStep float64
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// atomNorms returns the squared norms of the dictionary's atoms (each
// filter's, over the channels), computed once per Coder.
func (c *Coder) atomNorms() []float64 {
	c.normOnce.Do(func() {
		d := c.dict
		c.norm2 = make([]float64, d.M)
		n := d.C * d.R * d.S
		for i, v := range d.Filters {
			c.norm2[i/n] += float64(v) * float64(v)
		}
	})
	return c.norm2
}

// atomDot returns <d_i, r> for atom i = m*H*W + p (filter m placed at
// pixel p, circularly; filters f as Dictionary.Filters) in float64; with
// add != 0 it adds add*d_i to r instead and returns 0.
func atomDot(r []float64, f []float32, C, R, S, h, w, i int, add float64) float64 {
	hw := h * w
	m, p := i/hw, i%hw
	py, px := p/w, p%w
	var sum float64
	for c := 0; c < C; c++ {
		filt := f[(m*C+c)*R*S : (m*C+c+1)*R*S]
		rc := r[c*hw : (c+1)*hw]
		for y := 0; y < R; y++ {
			yy := py + y
			if yy >= h {
				yy -= h
			}
			row := rc[yy*w : (yy+1)*w]
			fr := filt[y*S : (y+1)*S]
			if px+S <= w {
				row = row[px : px+S]
				if add != 0 {
					for j, fv := range fr {
						row[j] += add * float64(fv)
					}
					continue
				}
				for j, fv := range fr {
					sum += float64(fv) * row[j]
				}
				continue
			}
			for j, fv := range fr {
				xx := px + j
				if xx >= w {
					xx -= w
				}
				if add != 0 {
					row[xx] += add * float64(fv)
				} else {
					sum += float64(fv) * row[xx]
				}
			}
		}
	}
	return sum
}

// solveActive solves CBPDN on one image s (dictionary's C channels × H × W
// values) with MethodActiveSet and leaves the coefficient maps in ws.y, the
// scaled dual D^T(s - D x)/rho0 in ws.u (so that the final State is a valid
// ADMM warm start). A non-nil y0 starts it from those coefficient maps.
//
// The algorithm is a working-set method for the lasso (as Celer, Massias,
// Gramfort and Salmon 2018, and Blitz, Johnson and Guestrin 2015): the
// CBPDN optimum of an image's highpass part has few non-zero coefficients
// (hundreds to a few thousand among M*H*W), so coordinate descent on a
// small set of atoms costs little when each step touches only the atom's
// overlapping neighbours in the set (the Gram form of activegram.go; the
// residual is recomputed exactly in float64 after each subproblem); after
// each subproblem, one FFT correlation D^T r of the residual r = s - D x
// with every atom gives the dual point nu = kappa r, kappa = min(1,
// lambda/||D^T r||_inf), the duality gap P(x) - D(nu) with D(nu) = <s,
// nu> - ||nu||^2/2, and the atoms that violate |D^T r| <= lambda, the
// largest of which join the set (at most doubling it). It stops when the
// gap, with the set's correlations recomputed exactly, is at most
// ActiveGapTol times P(x), or after opt.ADMM.MaxIter outer
// iterations (Converged false). Result.Iterations counts the outer
// iterations (each one correlation: M inverse FFTs, half an ADMM
// iteration's transforms).
func (c *Coder) solveActive(ctx context.Context, ws *workspace, s, y0 []float32) (*Result, error) {
	t0 := time.Now()
	d := c.dict
	filt, norm2, tab := d.Filters, c.atomNorms(), c.gramTable()
	h, w := ws.h, ws.w
	hw := h * w
	C, R, S, M := d.C, d.R, d.S, d.M
	lam := c.opt.Lambda
	aw := ws.active
	if aw == nil {
		aw = &activeWork{s: make([]float64, C*hw), r: make([]float64, C*hw), head: make([]int32, hw), occ: make([]uint64, h)}
		aw.bmax = make([]float32, (M*hw+activeBlock-1)/activeBlock)
		for i := range aw.head {
			aw.head[i] = -1
		}
		ws.active = aw
	}
	// Reset the working set of the previous image.
	for _, i := range aw.set {
		aw.head[int(i)%hw] = -1
	}
	clear(aw.occ)
	aw.set, aw.x, aw.g, aw.gs, aw.next = aw.set[:0], aw.x[:0], aw.g[:0], aw.gs[:0], aw.next[:0]
	aw.fm, aw.n2, aw.inv = aw.fm[:0], aw.n2[:0], aw.inv[:0]
	aw.ss, aw.sweeps = 0, 0
	for i, v := range s[:C*hw] {
		aw.s[i], aw.r[i] = float64(v), float64(v)
		aw.ss += float64(v) * float64(v)
	}
	aw.rr = aw.ss
	aw.cand = aw.cand[:0]
	for i, v := range y0 {
		if v != 0 {
			aw.cand = append(aw.cand, int32(i))
		}
	}
	if len(aw.cand) > 0 {
		aw.addAtoms(aw.cand, norm2, filt, tab, C, M, R, S, h, w)
		for j, i := range aw.set {
			aw.x[j] = float64(y0[i])
		}
		aw.refresh(filt, C, R, S, h, w)
		for j, i := range aw.set {
			aw.g[j] = atomDot(aw.r, filt, C, R, S, h, w, int(i), 0)
		}
	}
	tol := ActiveGapTol
	maxOuter := c.opt.ADMM.MaxIter
	if maxOuter <= 0 {
		maxOuter = 1
	}
	res := &Result{}
	corr := ws.x // (M, H*W) correlations D^T r
	relGap, tight := 1.0, activeSubFinal*tol
	for it := 0; it < maxOuter; it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if it > 0 || len(aw.set) > 0 {
			// Each subproblem is solved as accurately as the whole
			// problem's last gap warrants (as Celer does).
			aw.cdSolve(filt, C, R, S, h, w, lam, max(activeSubFinal*tol, activeSubGap*relGap))
		}
		res.Iterations++
		ws.correlate(corr, aw.r)
		// The violators outside the set and the largest correlation:
		// outside the set the FFT's, inside it the maintained g, and
		// before the gap is accepted, the exact one (which g then
		// takes). The set's atoms are zeroed in corr, so that the
		// maxima of its blocks of activeBlock values are those of the
		// atoms outside the set. The candidates are the violators at
		// or above violatorBound's threshold whose correlation is a
		// local maximum (localMax).
		for _, i := range aw.set {
			corr[i] = 0
		}
		blockMaxAbs(aw.bmax, corr, activeBlock)
		k := max(16, hw/64, len(aw.set))
		thr, maxo := aw.violatorBound(float32(lam), k)
		aw.cand = aw.cand[:0]
		for b, m := range aw.bmax {
			if m < thr {
				continue
			}
			i0 := b * activeBlock
			for i, v := range corr[i0:min(i0+activeBlock, len(corr))] {
				if a := abs32(v); a >= thr && localMax(corr, i0+i, h, w, a) {
					aw.cand = append(aw.cand, int32(i0+i))
				}
			}
		}
		maxc := float64(maxo)
		for _, v := range aw.g {
			maxc = max(maxc, math.Abs(v))
		}
		p, dual := aw.gap(lam, maxc)
		if p-dual <= tol*p {
			maxc = float64(maxo)
			for j, i := range aw.set {
				aw.g[j] = atomDot(aw.r, filt, C, R, S, h, w, int(i), 0)
				maxc = max(maxc, math.Abs(aw.g[j]))
			}
			p, dual = aw.gap(lam, maxc)
		}
		relGap = (p - dual) / p
		if p-dual <= tol*p {
			res.Converged = true
			break
		}
		if len(aw.cand) == 0 {
			// Every violation is inside the set: solve it tighter, ten
			// times so each time this recurs (float32 rounding of the
			// FFT correlation can leave the whole problem's gap a little
			// above the subproblem's).
			aw.cdSolve(filt, C, R, S, h, w, lam, tight)
			tight = max(tight/10, 1e-3*tol)
			continue
		}
		if len(aw.cand) > k {
			// Keep the k largest (at least 16, or one per 64 pixels:
			// fewer correlations on large images): those at or above
			// the k-th largest value (ties in index order, up to k).
			aw.vals = aw.vals[:0]
			for _, i := range aw.cand {
				aw.vals = append(aw.vals, abs32(corr[i]))
			}
			thr := kthLargest(aw.vals, k)
			kept := aw.cand[:0]
			for _, i := range aw.cand {
				if len(kept) < k && abs32(corr[i]) >= thr {
					kept = append(kept, i)
				}
			}
			aw.cand = kept
		}
		aw.addAtoms(aw.cand, norm2, filt, tab, C, M, R, S, h, w)
	}
	// The maps are stored in float32: the objective and the residual
	// (which reconstruction hands to the projection) are those of the
	// stored coefficients, recomputed exactly over the set's supports.
	clear(ws.y)
	var l1 float64
	for j, i := range aw.set {
		v := float32(aw.x[j])
		ws.y[i], aw.x[j] = v, float64(v)
		l1 += math.Abs(float64(v))
	}
	aw.refresh(filt, C, R, S, h, w)
	// The scaled dual of an ADMM at rho0 at this point: D^T r / rho0
	// (the set's correlations from g).
	rho := c.opt.rho0()
	inv := float32(1 / rho)
	for i, v := range corr {
		ws.u[i] = v * inv
	}
	for j, i := range aw.set {
		ws.u[i] = float32(aw.g[j] / rho)
	}
	dfid, reg := aw.rr/2, lam*l1
	res.Objective, res.DFid, res.Reg, res.Rho, res.Seconds = dfid+reg, dfid, reg, rho, time.Since(t0).Seconds()
	return res, nil
}

// violatorBound returns the threshold at or above which solveActive
// collects the violators of the atoms outside the set (lam32, lambda in
// float32, plus one ulp: a violator's correlation exceeds lambda) from the
// maxima of their blocks in aw.bmax, and the largest of those maxima. At
// most k violators join the set, the largest first, and when k blocks hold
// a value of at least T (the k-th largest maximum), k violators are at
// least T: the threshold is the larger of the two, and the blocks below it
// need not be read.
func (aw *activeWork) violatorBound(lam32 float32, k int) (thr, maxo float32) {
	thr = math.Nextafter32(lam32, float32(math.Inf(1)))
	for _, m := range aw.bmax {
		maxo = max(maxo, m)
	}
	if maxo >= thr && len(aw.bmax) > k {
		aw.vals = append(aw.vals[:0], aw.bmax...)
		thr = max(thr, kthLargest(aw.vals, k))
	}
	return thr, maxo
}

// localMax reports whether a = |corr[i]| is at least the correlation's
// magnitude at the 8 neighbouring pixels (circularly) of the same filter
// in corr (M, H*W). The atoms of one filter one pixel apart correlate
// strongly, and the optimum's support rarely holds both: taking only the
// local maxima into the working set kept it 26-33% smaller on CIFAR-10
// and ImageNet-10 images with learned dictionaries, for 44-52% fewer
// neighbour links and 17-20% fewer neighbour updates, at 0.8-2.2 more
// outer iterations (docs/csc.md). Any violator missed joins at a later outer
// iteration, and the largest violator is always a local maximum (the
// set's atoms are zero in corr), so no violator is left out for good.
func localMax(corr []float32, i, h, w int, a float32) bool {
	hw := h * w
	m, p := i/hw, i%hw
	y, x := p/w, p%w
	plane := corr[m*hw : (m+1)*hw]
	for _, yy := range [3]int{wrap(y-1, h), y, wrap(y+1, h)} {
		row := plane[yy*w : (yy+1)*w]
		if abs32(row[wrap(x-1, w)]) > a || abs32(row[x]) > a || abs32(row[wrap(x+1, w)]) > a {
			return false
		}
	}
	return true
}

// reconstruction stores D x = s - r, the reconstruction of the image last
// coded by solveActive from its stored maps, in dst (C, H*W), in float64.
func (aw *activeWork) reconstruction(dst []float64) {
	for i, v := range aw.r {
		dst[i] = aw.s[i] - v
	}
}

// gap returns the primal objective P(x) = ||r||^2/2 + lambda ||x||_1 and
// the dual objective at nu = kappa r (dualValue), where maxc is ||D^T
// r||_inf over every atom. It reads r itself, not the maintained ||r||^2.
func (aw *activeWork) gap(lam, maxc float64) (p, d float64) {
	var rr, sr, l1 float64
	for i, v := range aw.r {
		rr += v * v
		sr += aw.s[i] * v
	}
	for _, v := range aw.x {
		l1 += math.Abs(v)
	}
	return rr/2 + lam*l1, dualValue(lam, maxc, sr, rr)
}

// correlate stores D^T r (M, H*W), the correlation of the residual r (C,
// H*W, float64) with every atom, in dst, by FFT: it overwrites ws.tmp,
// ws.sf and ws.xf. The inverse transform's 1/(H*W) is applied to r's C
// maps rather than to the M maps of the result.
func (ws *workspace) correlate(dst []float32, r []float64) {
	sp := ws.sp
	f, hw := sp.f, ws.h*ws.w
	inv := 1 / float64(hw)
	for c := 0; c < sp.c; c++ {
		for j := range ws.tmp {
			ws.tmp[j] = float32(r[c*hw+j] * inv)
		}
		ws.plan.Forward(ws.sf[c*f:(c+1)*f], ws.tmp)
	}
	dhs(ws.xf, sp.df, ws.sf, sp.m, sp.c, f)
	ws.batch.InverseUnnormalized(dst, ws.xf)
}

// kthLargest returns the k-th largest of v (1 <= k <= len(v)), reordering
// v (Hoare's selection).
func kthLargest(v []float32, k int) float32 {
	lo, hi, want := 0, len(v)-1, k-1
	for lo < hi {
		pivot := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] > pivot {
				i++
			}
			for v[j] < pivot {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case want <= j:
			hi = j
		case want >= i:
			lo = i
		default:
			return v[want]
		}
	}
	return v[want]
}
