package attack

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/stl-defense/stl/tensor"
)

// Knob is the parameter that sets an attack's strength, for the search of
// the strength at which the average normalized L2 dissimilarity over the
// attacked images reaches a target (SearchStrength; the budgets of the
// paper's Table 3, which follows Guo et al. 2018: every attack at an
// average dissimilarity of 0.06).
type Knob struct {
	// Param names it as the command line does: "budget" (the budget's
	// Eps) or "overshoot" (DeepFool, CW).
	Param string
	// Lo and Hi bound the strengths searched; Init is the first one tried
	// above Lo (the search grows it by a factor of 4 until it passes the
	// target or reaches Hi).
	Lo, Init, Hi float64
	// ZeroAtLo is set when the attack changes nothing at strength Lo (a
	// budget of 0), so that the search need not run it there (and cannot:
	// a budget must be positive).
	ZeroAtLo bool
	// set sets the strength s in c, lifting what would otherwise cap it.
	set func(c *Config, s float64)
}

// BudgetKnob is the strength of the attacks that fill their budget (FGSM,
// BIM, PGD, APGD, Square; a universal perturbation): the budget's Eps in
// (0, 1], nothing changed at 0.
func BudgetKnob() Knob { return Knob{Param: "budget", Lo: 0, Init: 0.03, Hi: 1, ZeroAtLo: true} }

// DeepFool and CW look for the smallest perturbation that flips the label:
// their budget only caps it, and a larger budget alone does not make them
// stronger. Their knob lifts the cap (Eps 1: a perturbation as large as
// the image) and sets how far past the boundary they go, their overshoot:
// the perturbation found is multiplied by 1+overshoot. The average
// dissimilarity then grows with it, linearly until pixels clip. (CW's
// confidence margin kappa would be the other choice, but the average
// falls once the margin is more than the binary search over c reaches:
// the images it fails on stay clean.)
var (
	deepFoolKnob = &Knob{Param: "overshoot", Lo: 0, Init: 0.5, Hi: MaxOvershoot,
		set: func(c *Config, s float64) { c.DeepFool.Budget.Eps, c.DeepFool.Overshoot = 1, s }}
	cwKnob = &Knob{Param: "overshoot", Lo: 0, Init: 0.5, Hi: MaxOvershoot,
		set: func(c *Config, s float64) { c.CW.Budget.Eps, c.CW.Overshoot = 1, s }}
)

// Knob returns the method's strength knob.
func (m Method) Knob() Knob {
	if m.knob == nil {
		return BudgetKnob()
	}
	return *m.knob
}

// WithStrength builds the method from c with its strength set to s (see
// Knob).
func (m Method) WithStrength(c Config, s float64) (Attack, error) {
	m.setStrength(&c, s)
	return m.New(c)
}

// setStrength sets the strength s in c.
func (m Method) setStrength(c *Config, s float64) {
	if m.knob == nil {
		m.Budget(c).Eps = s
	} else {
		m.knob.set(c, s)
	}
}

// SearchOptions configures SearchStrength.
type SearchOptions struct {
	// Target is the average normalized L2 dissimilarity sought. Default
	// 0.06 (the paper's Table 3).
	Target float64
	// Tolerance is how far from Target (absolute) the reached average may
	// end. Default (0) 1% of Target.
	Tolerance float64
	// MaxProbes bounds the attack runs the search makes. Default 20.
	MaxProbes int
}

// DefaultSearchOptions returns Target 0.06, the default tolerance and 20
// probes.
func DefaultSearchOptions() SearchOptions { return SearchOptions{Target: 0.06, MaxProbes: 20} }

// Validate checks Target in (0, 1], Tolerance in [0, Target) and
// MaxProbes >= 2.
func (o SearchOptions) Validate() error {
	switch {
	case !(o.Target > 0 && o.Target <= 1):
		return optErr("search", "Target", o.Target, "must be in (0, 1]")
	case !(o.Tolerance >= 0 && o.Tolerance < o.Target):
		return optErr("search", "Tolerance", o.Tolerance, "must be in [0, Target)")
	case o.MaxProbes < 2:
		return optErr("search", "MaxProbes", o.MaxProbes, "must be at least 2")
	}
	return nil
}

// tol returns the tolerance, its default when 0.
func (o SearchOptions) tol() float64 {
	if o.Tolerance > 0 {
		return o.Tolerance
	}
	return 0.01 * o.Target
}

// Probe is one attack run of a search: the strength and the average
// dissimilarity it reached.
type Probe struct {
	Strength float64 `json:"strength"`
	Mean     float64 `json:"mean"`
}

// SearchResult is the outcome of SearchStrength: the strength chosen, the
// average it reached, and every probe in the order made.
type SearchResult struct {
	Param    string  `json:"param"`
	Target   float64 `json:"target"`
	Strength float64 `json:"strength"`
	Mean     float64 `json:"mean"`
	Probes   []Probe `json:"probes"`
}

// SearchError reports a search that did not reach its target within the
// tolerance: the attack cannot reach it (Why "unreachable": even at the
// largest strength the average stays below), its weakest setting is
// already above it ("too strong"), or the average jumps across it between
// two strengths too close to tell apart or the probes ran out ("not
// converged"). Best is the probe closest to the target.
type SearchError struct {
	Param  string
	Target float64
	Why    string
	Best   Probe
	Probes []Probe
}

func (e *SearchError) Error() string {
	return fmt.Sprintf("attack: average dissimilarity %g %s: closest %.4g at %s %.4g after %d probes",
		e.Target, e.Why, e.Best.Mean, e.Param, e.Best.Strength, len(e.Probes))
}

// Measure runs the attack at strength s and returns the average
// dissimilarity over the attacked images.
type Measure func(ctx context.Context, s float64) (float64, error)

// SearchStrength finds a strength of knob k at which measure's average
// reaches o.Target within the tolerance. It first brackets the target,
// from k.Lo (measured unless k.ZeroAtLo) and k.Init growing by a factor of
// 4 up to k.Hi (stopping as unreachable if the average falls as the
// strength grows), then narrows the bracket [lo, hi], mean(lo) < Target <
// mean(hi), by false position with the Illinois modification (a bisection
// step whenever two steps did not halve the bracket).
//
// Monotonicity is not assumed: a probe below the target becomes lo, one
// above becomes hi, so the bracket always holds a crossing of the target
// when the response is continuous, monotone or not (the search may find
// any crossing, not the smallest strength). Where the response jumps
// across the target, the bracket shrinks to the jump and the search stops
// with a *SearchError ("not converged") once it is narrower than 1e-9 of
// k.Hi - k.Lo, or after o.MaxProbes probes. An attack whose average at
// k.Hi stays below the target gives a *SearchError "unreachable" without
// further probes; one whose weakest setting is above it, "too strong".
//
// replay lists probes of an interrupted search with the same inputs, in
// the order made: while the search asks for their strengths it takes their
// means instead of calling measure, so a resumed search probes what the
// uninterrupted one would. onProbe, when not nil, is called after each new
// probe with every probe so far, replayed ones included (to checkpoint
// them).
func SearchStrength(ctx context.Context, k Knob, o SearchOptions, measure Measure, replay []Probe, onProbe func(probes []Probe) error) (*SearchResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	t, tol := o.Target, o.tol()
	res := &SearchResult{Param: k.Param, Target: t}
	var best Probe
	bestSet := false
	probe := func(s float64) (float64, error) {
		if len(res.Probes) >= o.MaxProbes {
			return 0, errOutOfProbes
		}
		var f float64
		if n := len(res.Probes); n < len(replay) && replay[n].Strength == s {
			f = replay[n].Mean
		} else {
			var err error
			if f, err = measure(ctx, s); err != nil {
				return 0, err
			}
			if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
				return 0, fmt.Errorf("attack: search: %s %g gave an average dissimilarity of %g", k.Param, s, f)
			}
			replay = nil // the rest are computed
		}
		p := Probe{s, f}
		res.Probes = append(res.Probes, p)
		if replay == nil && onProbe != nil {
			if err := onProbe(slices.Clone(res.Probes)); err != nil {
				return 0, err
			}
		}
		if !bestSet || math.Abs(f-t) < math.Abs(best.Mean-t) {
			best, bestSet = p, true
		}
		return f, nil
	}
	fail := func(why string, err error) (*SearchResult, error) {
		if err != nil && err != errOutOfProbes {
			return nil, err
		}
		if err == errOutOfProbes {
			why = "not converged"
		}
		return nil, &SearchError{Param: k.Param, Target: t, Why: why, Best: best, Probes: res.Probes}
	}
	done := func(p Probe) (*SearchResult, error) {
		res.Strength, res.Mean = p.Strength, p.Mean
		return res, nil
	}
	lo, flo := k.Lo, 0.0
	if !k.ZeroAtLo {
		f, err := probe(lo)
		if err != nil {
			return fail("", err)
		}
		flo = f
		switch {
		case math.Abs(f-t) <= tol:
			return done(Probe{lo, f})
		case f > t:
			return fail("too strong", nil)
		}
	}
	// Bracket: grow the strength until the average passes the target.
	hi, fhi := k.Init, 0.0
	for {
		f, err := probe(hi)
		if err != nil {
			return fail("", err)
		}
		if math.Abs(f-t) <= tol {
			return done(Probe{hi, f})
		}
		if f > t {
			fhi = f
			break
		}
		if hi >= k.Hi || (len(res.Probes) > 1 && f < flo) {
			// At the largest strength, or falling as the strength grows
			// (an attack that stops succeeding, e.g. CW at a margin its
			// search over c cannot reach): no stronger setting helps.
			return fail("unreachable", nil)
		}
		lo, flo = hi, f
		hi = math.Min(k.Hi, 4*hi)
	}
	// Narrow it: Illinois false position (the value kept at an end that
	// stays twice in a row is halved), bisecting whenever the bracket did
	// not halve over the last two steps.
	gl, gh := flo-t, fhi-t
	kept := 0 // -1: lo moved last, +1: hi moved last
	widths := []float64{hi - lo}
	for {
		if hi-lo <= 1e-9*(k.Hi-k.Lo) {
			return fail("not converged", nil)
		}
		s := lo - gl*(hi-lo)/(gh-gl)
		if n := len(widths); n >= 3 && hi-lo > widths[n-3]/2 || !(s > lo && s < hi) {
			s = (lo + hi) / 2
		}
		f, err := probe(s)
		if err != nil {
			return fail("", err)
		}
		if math.Abs(f-t) <= tol {
			return done(Probe{s, f})
		}
		if f < t {
			lo, gl = s, f-t
			if kept == -1 {
				gh /= 2
			}
			kept = -1
		} else {
			hi, gh = s, f-t
			if kept == 1 {
				gl /= 2
			}
			kept = 1
		}
		widths = append(widths, hi-lo)
	}
}

var errOutOfProbes = fmt.Errorf("attack: search: out of probes")

// MeanDissimilarityZ is the average over images of DissimilarityZ: the
// measure the search targets (Guo et al.'s average normalized L2
// dissimilarity on the classifier's normalized tensors). An image whose
// normalized tensor is zero gives an error.
func MeanDissimilarityZ(adv, x0 *tensor.Tensor, n Normalization) (float64, error) {
	d, err := DissimilarityZ(adv, x0, n)
	if err != nil {
		return 0, err
	}
	s := 0.0
	for i, v := range d {
		if math.IsInf(v, 0) {
			return 0, fmt.Errorf("attack: image %d is the normalization's mean: no normalized dissimilarity", i)
		}
		s += v
	}
	return s / math.Max(1, float64(len(d))), nil
}
