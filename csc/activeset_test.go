package csc

import (
	"context"
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// TestActiveSetOptimum solves SPORCO's reference problems with
// MethodActiveSet: the objective must be within the certified gap
// (ActiveGapTol, plus float32 rounding of the stored coefficients) of the
// known optimum, and not below it by more than rounding.
func TestActiveSetOptimum(t *testing.T) {
	d := loadDict(t)
	for _, c := range []struct {
		name    string
		optimum float64
	}{{"img32_hi", optimum32}, {"img128_hi", optimum128}} {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Method = MethodActiveSet
			coder, err := NewCoder(d, o)
			if err != nil {
				t.Fatal(err)
			}
			r, err := coder.Solve(context.Background(), loadImage(t, c.name), nil)
			if err != nil {
				t.Fatal(err)
			}
			rel := (r.Objective - c.optimum) / c.optimum
			t.Logf("%s: objective %.8f in %d outer iterations, optimum %.8f, rel %.2g", c.name, r.Objective, r.Iterations, c.optimum, rel)
			if !r.Converged || rel > 2*ActiveGapTol || rel < -1e-6 {
				t.Errorf("objective %.8f (converged %v), optimum %.8f: rel %.2g outside [-1e-6, %g]",
					r.Objective, r.Converged, c.optimum, rel, 2*ActiveGapTol)
			}
		})
	}
}

// TestActiveSetObjective codes highpass tiles at 32x32 and 64x64 with ADMM
// (SPORCO's rule) and MethodActiveSet at lambda 0.2 (the paper's), 0.05
// and 0.5 (the ends of the Figure 5 sweep), and with a single-channel
// dictionary on the colour tiles: every active-set objective must be
// within 1e-4 relative of ADMM's and their mean no higher.
func TestActiveSetObjective(t *testing.T) {
	d := loadDict(t)
	gray := &Dictionary{M: d.M, C: 1, R: d.R, S: d.S, Filters: make([]float32, d.M*d.R*d.S)}
	for m := 0; m < d.M; m++ {
		copy(gray.Filters[m*d.R*d.S:(m+1)*d.R*d.S], d.Filters[m*d.C*d.R*d.S:])
	}
	img := loadImage(t, "img128")
	for _, c := range []struct {
		dict    *Dictionary
		size, n int
		lambda  float64
	}{
		{d, 32, 12, 0.2}, {d, 64, 3, 0.2}, {d, 32, 6, 0.05}, {d, 32, 6, 0.5}, {d, 64, 2, 0.5}, {gray, 32, 3, 0.2},
	} {
		name := strconv.Itoa(c.size) + "px/lambda=" + strconv.FormatFloat(c.lambda, 'g', -1, 64) + "/C=" + strconv.Itoa(c.dict.C)
		t.Run(name, func(t *testing.T) {
			if c.lambda == 0.05 && testing.Short() {
				t.Skip("slow in -short mode")
			}
			hi, err := Highpass(context.Background(), cutTiles(img, c.n, c.size, 11), 5, 16)
			if err != nil {
				t.Fatal(err)
			}
			ra, rs := solveBoth(t, c.dict, hi, c.lambda)
			var oa, osum float64
			for i := range ra {
				if !rs[i].Converged {
					t.Errorf("image %d: active set not converged after %d iterations", i, rs[i].Iterations)
				}
				if rel := (rs[i].Objective - ra[i].Objective) / ra[i].Objective; rel > 1e-4 {
					t.Errorf("image %d: active-set objective %.8f, ADMM %.8f (rel %.2g > 1e-4)", i, rs[i].Objective, ra[i].Objective, rel)
				}
				oa, osum = oa+ra[i].Objective, osum+rs[i].Objective
			}
			t.Logf("mean objective: ADMM %.6f, active set %.6f", oa/float64(len(ra)), osum/float64(len(ra)))
			if osum > oa {
				t.Errorf("mean active-set objective %.8f above ADMM's %.8f", osum/float64(len(ra)), oa/float64(len(ra)))
			}
		})
	}
}

// TestCorrelate checks the FFT correlation D^T r against the direct sum
// over each atom's support (atomDot), on square and non-square images
// where the filters wrap around.
func TestCorrelate(t *testing.T) {
	d := loadDict(t)
	coder, _ := NewCoder(d, DefaultOptions())
	filt := d.Filters
	for _, sz := range [][2]int{{8, 8}, {12, 20}, {32, 32}} {
		h, w := sz[0], sz[1]
		ws, err := coder.newWorkspace(h, w)
		if err != nil {
			t.Fatal(err)
		}
		r := make([]float64, d.C*h*w)
		for i := range r {
			r[i] = math.Sin(1.7*float64(i)) + 0.3*math.Cos(0.31*float64(i*i%97))
		}
		corr := make([]float32, d.M*h*w)
		ws.correlate(corr, r)
		for i := range corr {
			want := atomDot(r, filt, d.C, d.R, d.S, h, w, i, 0)
			if math.Abs(float64(corr[i])-want) > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("%dx%d atom %d: FFT correlation %v, direct %v", h, w, i, corr[i], want)
			}
		}
		// Adding an atom and correlating it with itself gives its norm.
		clear(r)
		atomDot(r, filt, d.C, d.R, d.S, h, w, 5*h*w+h*w-1, 1)
		norm2 := coder.atomNorms()
		if got := atomDot(r, filt, d.C, d.R, d.S, h, w, 5*h*w+h*w-1, 0); math.Abs(got-norm2[5]) > 1e-9 {
			t.Errorf("%dx%d: <d, d> = %v, norm %v", h, w, got, norm2[5])
		}
	}
}

// TestActiveSetEdges: an image whose optimum is zero stops after one
// correlation with zero maps; cancellation returns ctx.Err(); a warm
// start's State from an active-set solve is a valid ADMM start; Method's
// names round-trip and a bad Method is an *OptionError.
func TestActiveSetEdges(t *testing.T) {
	d := loadDict(t)
	o := DefaultOptions()
	o.Method = MethodActiveSet
	coder, _ := NewCoder(d, o)
	small := tensor.New(1, 3, 16, 16)
	for i := range small.Data {
		small.Data[i] = 1e-3 * float32(i%7-3)
	}
	r, err := coder.Solve(context.Background(), small, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Converged || r.Iterations != 1 || r.Reg != 0 {
		t.Errorf("zero optimum: %d iterations, converged %v, reg %v", r.Iterations, r.Converged, r.Reg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := coder.Solve(ctx, loadImage(t, "img32_hi"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}

	po := DefaultProjectOptions()
	po.CSC.Method = MethodActiveSet
	p, _ := NewProjection(d, po)
	x := cutTiles(loadImage(t, "img128"), 2, 32, 3)
	out := tensor.New(x.Shape...)
	states := make([]*State, 2)
	st, err := p.ProjectFrom(context.Background(), out, x, nil, states, nil)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := NewProjection(d, DefaultProjectOptions())
	st2, err := pa.ProjectFrom(context.Background(), out, x, states, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st {
		if rel := (st2[i].Objective - st[i].Objective) / st[i].Objective; rel > 1e-4 {
			t.Errorf("image %d: ADMM from the active-set state %.8f, active set %.8f", i, st2[i].Objective, st[i].Objective)
		}
		// From its own state, the active set stops at once.
	}
	st3, err := p.ProjectFrom(context.Background(), out, x, states, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st3 {
		if st3[i].Iterations > 2 || math.Abs(st3[i].Objective-st[i].Objective) > 1e-5*st[i].Objective {
			t.Errorf("image %d restarted from its own state: %d iterations, objective %.8f, was %.8f", i, st3[i].Iterations, st3[i].Objective, st[i].Objective)
		}
	}

	for _, m := range []Method{MethodADMM, MethodActiveSet} {
		if got, err := ParseMethod(m.String()); err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
	}
	var oe *OptionError
	if _, err := ParseMethod("fista"); !errors.As(err, &oe) {
		t.Errorf("ParseMethod(fista): err = %v", err)
	}
	o.Method = 7
	if err := o.Validate(); !errors.As(err, &oe) || oe.Field != "Method" {
		t.Errorf("Method 7: err = %v", err)
	}
}

// solveBoth codes the batch hi with ADMM and with MethodActiveSet at
// lambda and returns both results.
func solveBoth(t *testing.T, d *Dictionary, hi *tensor.Tensor, lambda float64) (ra, rs []*Result) {
	t.Helper()
	var out [2][]*Result
	for k, m := range []Method{MethodADMM, MethodActiveSet} {
		o := DefaultOptions()
		o.Lambda, o.Method = lambda, m
		c, err := NewCoder(d, o)
		if err == nil {
			out[k], err = c.SolveBatch(context.Background(), hi, nil)
		}
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
	}
	return out[0], out[1]
}

// TestActiveSetProjection: the active set's projection (which adds the
// solver's own reconstruction s - r to the lowpass part) must equal the
// lowpass part plus D y recomputed from the stored maps, for a dictionary
// with the images' channels and for a single-channel one coding colour
// images channel by channel, and its objective that of those maps.
func TestActiveSetProjection(t *testing.T) {
	d := loadDict(t)
	gray := &Dictionary{M: d.M, C: 1, R: d.R, S: d.S, Filters: make([]float32, d.M*d.R*d.S)}
	for m := 0; m < d.M; m++ {
		copy(gray.Filters[m*d.R*d.S:(m+1)*d.R*d.S], d.Filters[m*d.C*d.R*d.S:])
	}
	x := cutTiles(loadImage(t, "img128"), 3, 24, 9)
	n, c, h, w, _ := x.NCHW()
	hw := h * w
	hp, err := Highpass(context.Background(), x, 5, 16)
	if err != nil {
		t.Fatal(err)
	}
	for _, dict := range []*Dictionary{d, gray} {
		po := DefaultProjectOptions()
		po.CSC.Method, po.Clip = MethodActiveSet, false
		p, err := NewProjection(dict, po)
		if err != nil {
			t.Fatal(err)
		}
		out := tensor.New(x.Shape...)
		states := make([]*State, n)
		st, err := p.ProjectFrom(context.Background(), out, x, nil, states, nil)
		if err != nil {
			t.Fatal(err)
		}
		parts := c / dict.C
		rec := make([]float64, dict.C*hw)
		for i := 0; i < n; i++ {
			var obj float64
			for part := 0; part < parts; part++ {
				y, _, _ := states[i].part(part, dict.M*hw)
				at := i*c*hw + part*dict.C*hw
				o, _, _ := objective(dict, h, w, y, hp.Data[at:at+dict.C*hw], po.CSC.Lambda, rec)
				obj += o
				reconstruct(rec, dict, h, w, y)
				for j, v := range rec {
					k := at + j
					if want := float64(x.Data[k]-hp.Data[k]) + v; math.Abs(float64(out.Data[k])-want) > 1e-5 {
						t.Fatalf("C=%d image %d value %d: projection %v, lowpass + D y %v", dict.C, i, k, out.Data[k], want)
					}
				}
			}
			if math.Abs(obj-st[i].Objective) > 1e-9*obj {
				t.Errorf("C=%d image %d: objective %.10f, of the stored maps %.10f", dict.C, i, st[i].Objective, obj)
			}
		}
	}
}
