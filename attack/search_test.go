package attack

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/stl-defense/stl/progress"
)

// TestSearchStrengthResponses runs the search on known responses: it ends
// within the tolerance where the target is reachable (monotone, clipped,
// non-monotone but continuous), and stops with the stated error where it
// is not (a ceiling below the target, a jump across it, a weakest setting
// above it), each within the probe bound.
func TestSearchStrengthResponses(t *testing.T) {
	budget := BudgetKnob()
	overshoot := Knob{Param: "overshoot", Lo: 0, Init: 0.5, Hi: 100}
	for _, tc := range []struct {
		name string
		knob Knob
		f    func(s float64) float64
		why  string // "" when the target must be reached
	}{
		{"linear", budget, func(s float64) float64 { return 0.8 * s }, ""},
		{"clipped", budget, func(s float64) float64 { return 0.2 * math.Tanh(4*s) }, ""},
		{"steep", budget, func(s float64) float64 { return 30 * s * s }, ""},
		{"overshoot", overshoot, func(s float64) float64 { return 0.004 * (1 + s) }, ""},
		// Non-monotone: rises past the target, falls below it, rises again.
		{"non-monotone", budget, func(s float64) float64 { return 0.05 + 0.04*math.Sin(40*s) + 0.1*s }, ""},
		{"ceiling", budget, func(s float64) float64 { return math.Min(0.03, s) }, "unreachable"},
		// Rises to 0.037 at 0.5, then falls (an attack that stops
		// succeeding when pushed too far).
		{"rise and fall", overshoot, func(s float64) float64 { return 0.2 * s * math.Exp(-s/0.5) }, "unreachable"},
		{"overshoot ceiling", overshoot, func(s float64) float64 { return 0.0004 * (1 + s) }, "unreachable"},
		{"jump", budget, func(s float64) float64 {
			if s < 0.1 {
				return 0.03
			}
			return 0.09
		}, "not converged"},
		{"too strong", overshoot, func(s float64) float64 { return 0.2 + s }, "too strong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultSearchOptions()
			calls := 0
			measure := func(_ context.Context, s float64) (float64, error) {
				calls++
				if s < tc.knob.Lo || s > tc.knob.Hi || (tc.knob.ZeroAtLo && s == tc.knob.Lo) {
					t.Fatalf("probed %g outside the knob's range", s)
				}
				return tc.f(s), nil
			}
			res, err := SearchStrength(context.Background(), tc.knob, o, measure, nil, nil)
			if calls > o.MaxProbes {
				t.Fatalf("%d probes, bound %d", calls, o.MaxProbes)
			}
			if tc.why == "" {
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %.6g: mean %.6g after %d probes", res.Param, res.Strength, res.Mean, len(res.Probes))
				if math.Abs(res.Mean-o.Target) > 0.01*o.Target || res.Mean != tc.f(res.Strength) {
					t.Errorf("mean %g at %g, want within 1%% of %g", res.Mean, res.Strength, o.Target)
				}
				return
			}
			var se *SearchError
			if !errors.As(err, &se) || se.Why != tc.why {
				t.Fatalf("error %v, want a search error %q", err, tc.why)
			}
			t.Logf("%v", err)
			if i := slices.Index(se.Probes, se.Best); i < 0 {
				t.Errorf("best probe %v not among the probes", se.Best)
			}
		})
	}
}

// TestSearchStrengthResumes interrupts a search after each of its probes
// and resumes it with the probes made so far: every resumed search ends
// where the uninterrupted one does, measuring only the probes it lacks.
func TestSearchStrengthResumes(t *testing.T) {
	k := BudgetKnob()
	o := DefaultSearchOptions()
	f := func(s float64) float64 { return 0.2 * math.Tanh(4*s) }
	var all []Probe
	want, err := SearchStrength(context.Background(), k, o, func(_ context.Context, s float64) (float64, error) { return f(s), nil },
		nil, func(p []Probe) error { all = p; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 3 {
		t.Fatalf("only %d probes: too few to test resuming", len(all))
	}
	stop := errors.New("interrupted")
	for cut := 1; cut < len(all); cut++ {
		var saved []Probe
		n := 0
		_, err := SearchStrength(context.Background(), k, o, func(_ context.Context, s float64) (float64, error) {
			if n++; n > cut {
				return 0, stop
			}
			return f(s), nil
		}, nil, func(p []Probe) error { saved = p; return nil })
		if !errors.Is(err, stop) {
			t.Fatalf("cut %d: %v, want the interruption", cut, err)
		}
		calls := 0
		got, err := SearchStrength(context.Background(), k, o, func(_ context.Context, s float64) (float64, error) { calls++; return f(s), nil }, saved, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Strength != want.Strength || !slices.Equal(got.Probes, want.Probes) || calls != len(all)-cut {
			t.Errorf("cut %d: strength %g after %d new probes, want %g after %d", cut, got.Strength, calls, want.Strength, len(all)-cut)
		}
	}
}

func TestSearchOptionsValidate(t *testing.T) {
	for _, o := range []SearchOptions{{Target: 0, MaxProbes: 5}, {Target: 1.5, MaxProbes: 5}, {Target: 0.06, Tolerance: 0.06, MaxProbes: 5},
		{Target: 0.06, Tolerance: -1, MaxProbes: 5}, {Target: 0.06, MaxProbes: 1}, {Target: math.NaN(), MaxProbes: 5}} {
		if _, err := SearchStrength(context.Background(), BudgetKnob(), o, nil, nil, nil); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestSearchAttacks searches each attack's strength on the trained test
// classifier so that the average normalized L2 dissimilarity on its
// normalized tensors (a normalization of mean 0.1, deviation 0.25) reaches
// the target (0.1: the smallest perturbations DeepFool finds on this
// classifier already average about 0.03), and checks that the images at the strength found reach it within
// the 1% tolerance, measured again from scratch.
func TestSearchAttacks(t *testing.T) {
	f := getFixture(t)
	x, y := f.x.Batch(0, 30), f.labels[:30]
	n := Normalization{Mean: []float64{0.1}, Std: []float64{0.25}}
	c := DefaultConfig()
	c.CW.MaxIter, c.CW.BinarySteps = 100, 4
	for _, name := range []string{"fgsm", "bim", "pgd", "deepfool", "cw"} {
		if testing.Short() && name == "cw" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			m, err := LookupMethod(name)
			if err != nil {
				t.Fatal(err)
			}
			cc := c
			if b := m.Budget(&cc); b.Norm == L2Rel {
				*b = Budget{Norm: L2Z, Eps: b.Eps, Normalization: &n}
			}
			o := DefaultSearchOptions()
			o.Target = 0.1
			measure := func(ctx context.Context, s float64) (float64, error) {
				a, err := m.WithStrength(cc, s)
				if err != nil {
					return 0, err
				}
				r, err := RunBatched(ctx, a, f.m, x, y, 10, progress.Nop)
				if err != nil {
					return 0, err
				}
				return MeanDissimilarityZ(r.Adv, x, n)
			}
			res, err := SearchStrength(context.Background(), m.Knob(), o, measure, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := measure(context.Background(), res.Strength)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %.5g: mean %.5f after %d probes", res.Param, res.Strength, again, len(res.Probes))
			if math.Abs(again-o.Target) > 0.01*o.Target || again != res.Mean {
				t.Errorf("mean %g (search said %g), want within 1%% of %g", again, res.Mean, o.Target)
			}
		})
	}
}

// TestUAPL2Z checks the universal perturbation's bound on normalized
// tensors: ||v/std||_2 is at most Eps / mean_i(1/||z_i||), so that before
// clipping the average normalized dissimilarity over the fitting images is
// at most Eps.
func TestUAPL2Z(t *testing.T) {
	f := getFixture(t)
	x := f.x.Batch(0, 20)
	n := Normalization{Mean: []float64{0.5}, Std: []float64{0.25}}
	o := DefaultUAPOptions()
	o.Budget, o.MaxPasses = Budget{Norm: L2Z, Eps: 0.06, Normalization: &n}, 2
	fit, err := FitUAP(context.Background(), f.m, x, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	var inv float64
	for i := range 20 {
		inv += 1 / n.zNorm(x.Data[i*64:(i+1)*64])
	}
	if want := 0.06 * 20 / inv; math.Abs(fit.Radius-want) > 1e-9*want {
		t.Fatalf("radius %g, want %g", fit.Radius, want)
	}
	var s float64
	for _, v := range fit.V.Data {
		s += float64(v) * float64(v) / (0.25 * 0.25)
	}
	if math.Sqrt(s) > fit.Radius*(1+1e-6) || fit.Updates == 0 {
		t.Errorf("||v/std|| = %g, radius %g, %d updates", math.Sqrt(s), fit.Radius, fit.Updates)
	}
}

// TestUAPResumes stops a fit at every checkpoint and resumes it from the
// saved state: each resumed fit ends with the uninterrupted fit's
// perturbation, bit for bit.
func TestUAPResumes(t *testing.T) {
	f := getFixture(t)
	x := f.x.Batch(0, 12)
	o := DefaultUAPOptions()
	o.Budget, o.FoolingRate, o.MaxPasses = Budget{Norm: L2Rel, Eps: 0.1}, 1, 3
	var states []*UAPState
	want, err := FitUAPFrom(context.Background(), f.m, x, o, UAPCheckpoint{Every: 5, Save: func(s *UAPState) error { states = append(states, s); return nil }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) < 4 {
		t.Fatalf("%d checkpoints, want at least 4 (every 5 of 12 images, 3 passes)", len(states))
	}
	for _, s := range states {
		got, err := FitUAPFrom(context.Background(), f.m, x, o, UAPCheckpoint{Resume: s}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.V.Data, want.V.Data) || got.Updates != want.Updates || got.Passes != want.Passes || got.FoolingRate != want.FoolingRate {
			t.Errorf("resumed at pass %d image %d: %d updates, %d passes, fooling %.2f; want %d, %d, %.2f (or another v)",
				s.Pass, s.Done, got.Updates, got.Passes, got.FoolingRate, want.Updates, want.Passes, want.FoolingRate)
		}
	}
	bad := *states[0]
	bad.V = bad.V[:3]
	if _, err := FitUAPFrom(context.Background(), f.m, x, o, UAPCheckpoint{Resume: &bad}, nil); err == nil {
		t.Error("a state of the wrong size was accepted")
	}
}
