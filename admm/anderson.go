package admm

import "math"

// Stater is implemented by problems whose iterate, the pair (y, u) that
// determines the next iteration, is one float32 slice the loop may read and
// overwrite between iterations. Anderson acceleration (Options.Anderson)
// requires it.
type Stater interface {
	// State returns the problem's (y, u) storage itself, not a copy, and
	// the index where the scaled dual u starts in it.
	State() (z []float32, dual int)
}

// anderson is type-II Anderson acceleration of the ADMM fixed-point map
// G: z_k = (y_k, u_k) -> z_{k+1} (Walker and Ni 2011; for ADMM, Zhang,
// O'Donoghue and Boyd, "Globally convergent type-I Anderson acceleration
// for nonsmooth fixed-point iterations", SIAM J. Optim. 2020, and Fu, Zhang
// and Boyd 2019). With f_k = G(z_k) - z_k and the last m differences
// dF_i = f_{i+1} - f_i, dG_i = G(z_{i+1}) - G(z_i), the next iterate is
// G(z_k) - dG gamma with gamma = argmin ||f_k - dF gamma||.
//
// Safeguard: when ||f_k|| grows by more than anderGrowth over the previous
// iteration's, the history is dropped and the plain step G(z_k) is kept, so
// a bad extrapolation costs one plain step. The history is also dropped
// when rho changes (u is rescaled, so old differences no longer describe
// the map).
type anderson struct {
	m          int
	z0         []float32   // z_k, the state before the step
	fPrev      []float32   // f_{k-1}
	gPrev      []float32   // G(z_{k-1})
	dF, dG     [][]float32 // ring of the last m differences
	gram       []float64   // m×m dF^T dF
	n, head    int         // differences held, next slot
	havePrev   bool
	prevNorm   float64
	rhs, gamma []float64
	a          []float64 // scratch m×m
}

// anderGrowth is the residual growth that triggers the safeguard.
const anderGrowth = 1.0

func newAnderson(m int) *anderson {
	return &anderson{m: m, gram: make([]float64, m*m), rhs: make([]float64, m), gamma: make([]float64, m),
		a: make([]float64, m*m), dF: make([][]float32, m), dG: make([][]float32, m)}
}

// begin saves z_k before the plain step.
func (a *anderson) begin(z []float32) {
	if len(a.z0) != len(z) {
		a.z0 = make([]float32, len(z))
		a.fPrev = make([]float32, len(z))
		a.gPrev = make([]float32, len(z))
		for i := range a.dF {
			a.dF[i] = make([]float32, len(z))
			a.dG[i] = make([]float32, len(z))
		}
		a.reset()
	}
	copy(a.z0, z)
}

// scaleDual multiplies the dual part (from index dual) of every stored
// vector by f, as the loop does to u when rho changes, and refreshes the
// Gram matrix.
func (a *anderson) scaleDual(dual int, f float32) {
	if len(a.z0) == 0 {
		return
	}
	sc := func(v []float32) {
		for i := dual; i < len(v); i++ {
			v[i] *= f
		}
	}
	sc(a.z0)
	if a.havePrev {
		sc(a.fPrev)
		sc(a.gPrev)
	}
	for k := 0; k < a.n; k++ {
		sc(a.dF[k])
		sc(a.dG[k])
	}
	for j := 0; j < a.n; j++ {
		for k := 0; k <= j; k++ {
			v := dot32(a.dF[j], a.dF[k])
			a.gram[j*a.m+k], a.gram[k*a.m+j] = v, v
		}
	}
}

// reset drops the history.
func (a *anderson) reset() { a.n, a.head, a.havePrev = 0, 0, false }

// step replaces g = G(z_k), held in z, with the accelerated iterate. It
// reports whether it extrapolated.
func (a *anderson) step(z []float32) bool {
	// f_k = g - z_k, kept in z0 (z_k is no longer needed); with a
	// previous iterate, the new differences go to the next ring slot.
	f := a.z0
	j := a.head
	var fn float64
	if a.havePrev {
		fn = diffs(f, a.dF[j], a.dG[j], z, a.fPrev, a.gPrev)
	} else {
		fn = diffs(f, nil, nil, z, a.fPrev, a.gPrev)
	}
	fn = math.Sqrt(fn)
	grew := a.havePrev && a.n > 0 && fn > anderGrowth*a.prevNorm
	if a.havePrev && !grew {
		a.head = (a.head + 1) % a.m
		a.n = min(a.n+1, a.m)
	}
	a.havePrev, a.prevNorm = true, fn
	if grew {
		// Safeguard: the last extrapolation did not pay; restart from
		// the plain step (f and G(z_k) are kept as the first point).
		a.reset()
		a.havePrev = true
		return false
	}
	if a.n == 0 {
		return false
	}
	for k := 0; k < a.n; k++ {
		v, r := dot2(a.dF[k], a.dF[j], f)
		a.gram[j*a.m+k], a.gram[k*a.m+j] = v, v
		a.rhs[k] = r
	}
	if !a.solve() {
		a.reset()
		return false
	}
	for k := 0; k < a.n; k++ {
		axpy(z, a.dG[k], -float32(a.gamma[k]))
	}
	return true
}

// solve sets gamma to the solution of (gram + eps I) gamma = rhs over the
// n held differences by Cholesky factorization; false when it fails.
func (a *anderson) solve() bool {
	n, m := a.n, a.m
	tr := 0.0
	for k := 0; k < n; k++ {
		tr += a.gram[k*m+k]
	}
	eps := 1e-10 * tr / float64(n)
	if !(eps > 0) {
		return false
	}
	l := a.a
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			s := a.gram[i*m+j]
			if i == j {
				s += eps
			}
			for k := 0; k < j; k++ {
				s -= l[i*m+k] * l[j*m+k]
			}
			if i == j {
				if !(s > 0) {
					return false
				}
				l[i*m+i] = math.Sqrt(s)
			} else {
				l[i*m+j] = s / l[j*m+j]
			}
		}
	}
	g := a.gamma
	for i := 0; i < n; i++ {
		s := a.rhs[i]
		for k := 0; k < i; k++ {
			s -= l[i*m+k] * g[k]
		}
		g[i] = s / l[i*m+i]
	}
	for i := n - 1; i >= 0; i-- {
		s := g[i]
		for k := i + 1; k < n; k++ {
			s -= l[k*m+i] * g[k]
		}
		g[i] = s / l[i*m+i]
	}
	for _, v := range g[:n] {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// diffs computes f = g - z0 in place of z0 (f aliases z0) and, when df
// is not nil, df = f - fPrev and dg = g - gPrev; it then stores f and g in
// fPrev and gPrev and returns ||f||^2.
func diffs(f, df, dg, g, fPrev, gPrev []float32) float64 {
	g, fPrev, gPrev = g[:len(f)], fPrev[:len(f)], gPrev[:len(f)]
	if df != nil {
		df, dg = df[:len(f)], dg[:len(f)]
	}
	s := 0.0
	const blk = 256
	for i0 := 0; i0 < len(f); i0 += blk {
		i1 := min(i0+blk, len(f))
		var p float32
		if df != nil {
			for i := i0; i < i1; i++ {
				fv, gv := g[i]-f[i], g[i]
				df[i], dg[i] = fv-fPrev[i], gv-gPrev[i]
				f[i], fPrev[i], gPrev[i] = fv, fv, gv
				p += fv * fv
			}
		} else {
			for i := i0; i < i1; i++ {
				fv, gv := g[i]-f[i], g[i]
				f[i], fPrev[i], gPrev[i] = fv, fv, gv
				p += fv * fv
			}
		}
		s += float64(p)
	}
	return s
}

// dot2 returns a·b and a·c.
func dot2(a, b, c []float32) (ab, ac float64) {
	b, c = b[:len(a)], c[:len(a)]
	const blk = 256
	for i0 := 0; i0 < len(a); i0 += blk {
		i1 := min(i0+blk, len(a))
		var p0, p1, q0, q1 float32
		i := i0
		for ; i+1 < i1; i += 2 {
			p0 += a[i] * b[i]
			p1 += a[i+1] * b[i+1]
			q0 += a[i] * c[i]
			q1 += a[i+1] * c[i+1]
		}
		for ; i < i1; i++ {
			p0 += a[i] * b[i]
			q0 += a[i] * c[i]
		}
		ab += float64(p0 + p1)
		ac += float64(q0 + q1)
	}
	return
}

// axpy adds alpha x to y.
func axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}

func dot32(a, b []float32) float64 {
	ab, _ := dot2(a, b, b)
	return ab
}
