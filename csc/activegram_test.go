package csc

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGramLinks builds working sets of seeded random atoms and checks
// every neighbour list against the inner products of the atoms' supports
// (atomDot): each overlapping pair is linked once each way with its inner
// product, and no other pair is. The sizes cover the table (at least 2R-1
// × 2S-1) and the direct fallback of smaller images, square or not, with
// atoms wrapping around the borders.
func TestGramLinks(t *testing.T) {
	d := loadDict(t)
	coder, _ := NewCoder(d, DefaultOptions())
	tab := coder.gramTable()
	for _, c := range []struct {
		name string
		h, w int
		n    int
	}{
		{"table square", 32, 32, 300},
		{"table 15x17", 15, 17, 200},
		{"table 20x64", 20, 64, 400},
		{"table 16x80 (no bit masks)", 16, 80, 400},
		{"direct 8x8", 8, 8, 60},
		{"direct 12x20", 12, 20, 120},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, w := c.h, c.w
			hw := h * w
			aw := &activeWork{s: make([]float64, d.C*hw), r: make([]float64, d.C*hw),
				head: make([]int32, hw), occ: make([]uint64, h)}
			for i := range aw.head {
				aw.head[i] = -1
			}
			rng := rand.New(rand.NewPCG(1, uint64(hw)))
			perm := rng.Perm(d.M * hw)[:c.n]
			// Two batches, as the outer loop adds them.
			for _, part := range [][]int{perm[:c.n/3], perm[c.n/3:]} {
				idx := make([]int32, len(part))
				for k, i := range part {
					idx[k] = int32(i)
				}
				aw.addAtoms(idx, coder.atomNorms(), d.Filters, tab, d.C, d.M, d.R, d.S, h, w)
			}
			scratch := make([]float64, d.C*hw)
			links := 0
			for a := range aw.set {
				clear(scratch)
				atomDot(scratch, d.Filters, d.C, d.R, d.S, h, w, int(aw.set[a]), 1)
				got := map[int32]float64{}
				for _, e := range aw.adj[a] {
					if _, dup := got[e.k]; dup || int(e.k) == a {
						t.Fatalf("atom %d: neighbour %d listed twice or itself", a, e.k)
					}
					got[e.k] = float64(e.v)
				}
				for b := range aw.set {
					if b == a {
						continue
					}
					want := atomDot(scratch, d.Filters, d.C, d.R, d.S, h, w, int(aw.set[b]), 0)
					v, ok := got[int32(b)]
					if want != 0 && !ok || math.Abs(v-want) > 1e-6*(1+math.Abs(want)) {
						t.Fatalf("atoms %d, %d: linked %v with %v, inner product %v", aw.set[a], aw.set[b], ok, v, want)
					}
				}
				links += len(got)
			}
			if links == 0 {
				t.Fatal("no overlapping atoms: the test checks nothing")
			}
		})
	}
}

// TestKthLargest compares the selection with a sort, with ties.
func TestKthLargest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		n, levels int
	}{{1, 1}, {2, 2}, {7, 3}, {100, 5}, {1000, 1000}, {513, 2}} {
		v := make([]float32, c.n)
		for i := range v {
			v[i] = float32(rng.IntN(c.levels))
		}
		sorted := slices.Clone(v)
		slices.Sort(sorted)
		for _, k := range []int{1, 2, c.n / 2, c.n} {
			if k < 1 || k > c.n {
				continue
			}
			if got, want := kthLargest(slices.Clone(v), k), sorted[c.n-k]; got != want {
				t.Errorf("n %d, levels %d, k %d: got %v, want %v", c.n, c.levels, k, got, want)
			}
		}
	}
}

// TestActiveSetCertificate checks the duality gap certificate
// independently of the solver: at the returned coefficients (float32, as
// Result.X holds them), the residual r = s - D x, the correlation of r with
// every atom by direct sums (not the solver's FFT), the dual point nu =
// kappa r and the gap P(x) - D(nu) must be within ActiveGapTol of P(x)
// (plus the rounding of the coefficients to float32); ADMM's objective
// must be at least D(nu) (weak duality).
func TestActiveSetCertificate(t *testing.T) {
	d := loadDict(t)
	img := loadImage(t, "img128")
	hi, err := Highpass(context.Background(), cutTiles(img, 4, 32, 5), 5, 16)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	ra, rs := solveBoth(t, d, hi, o.Lambda)
	h, w := 32, 32
	hw := h * w
	per := d.C * hw
	for n, r := range rs {
		s := hi.Data[n*per : (n+1)*per]
		res := make([]float64, per)
		for i, v := range s {
			res[i] = float64(v)
		}
		var l1 float64
		for i, v := range r.X.Data {
			if v != 0 {
				atomDot(res, d.Filters, d.C, d.R, d.S, h, w, i, -float64(v))
				l1 += math.Abs(float64(v))
			}
		}
		var rr, sr, maxc float64
		for i, v := range res {
			rr += v * v
			sr += float64(s[i]) * v
		}
		for i := 0; i < d.M*hw; i++ {
			maxc = max(maxc, math.Abs(atomDot(res, d.Filters, d.C, d.R, d.S, h, w, i, 0)))
		}
		p := rr/2 + o.Lambda*l1
		dual := dualValue(o.Lambda, maxc, sr, rr)
		t.Logf("image %d: P %.8f, D %.8f, relative gap %.2g, ADMM %.8f", n, p, dual, (p-dual)/p, ra[n].Objective)
		if math.Abs(p-r.Objective) > 1e-9*p {
			t.Errorf("image %d: objective %.10f, recomputed %.10f", n, r.Objective, p)
		}
		if !r.Converged || p-dual > 1.1*ActiveGapTol*p {
			t.Errorf("image %d: gap %.3g of P (converged %v), want <= %g", n, (p-dual)/p, r.Converged, ActiveGapTol)
		}
		if ra[n].Objective < dual {
			t.Errorf("image %d: ADMM objective %.8f below the dual bound %.8f", n, ra[n].Objective, dual)
		}
	}
}
