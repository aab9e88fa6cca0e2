package evaluate

import (
	"fmt"
	"slices"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/progress"
)

// The attacks of the suite, by the names Options.Attacks takes. The
// gradient attacks run once per gradient route; the others once.
const (
	PGDCE    = "pgd-ce"   // PGD, cross-entropy (Madry et al. 2018)
	PGDCW    = "pgd-cw"   // PGD, Carlini-Wagner margin loss
	APGDCE   = "apgd-ce"  // APGD, cross-entropy (Croce and Hein 2020)
	APGDDLR  = "apgd-dlr" // APGD, difference of logits ratio
	APGDT    = "apgd-t"   // APGD, targeted DLR over the top classes (AutoAttack's APGD-T)
	APGDCW   = "apgd-cw"  // APGD, Carlini-Wagner margin loss (Croce et al. 2022)
	Square   = "square"   // Square, score-based, queries only (Andriushchenko et al. 2020)
	Transfer = "transfer" // the undefended classifier's examples fed through the defense (see Options)
	Noise    = "noise"    // random-noise control at the budget
)

// AttackNames lists every attack of the suite in the order it runs: the
// gradient attacks first, so that the controls (Square, transfer, noise)
// can be compared with them per image. APGD-CW, the latest addition, runs
// last of them, so that every earlier attack (and, with Cascade, the images
// it attacks) is what it was before.
var AttackNames = []string{PGDCE, PGDCW, APGDCE, APGDDLR, APGDT, APGDCW, Square, Transfer, Noise}

// gradientAttack reports whether the named attack follows gradients (and so
// runs once per route).
func gradientAttack(name string) bool {
	switch name {
	case PGDCE, PGDCW, APGDCE, APGDDLR, APGDT, APGDCW:
		return true
	}
	return false
}

// Options configures an evaluation. The zero value of a field is not its
// default: start from DefaultOptions.
type Options struct {
	// Budgets are the perturbation budgets, each evaluated with the whole
	// suite. Default: L-infinity 8/255 (AutoAttack's CIFAR-10 setting; the
	// paper's Table 4 uses 0.031). The normalized L2 dissimilarity of
	// package attack (the paper's section 5.1 measure) may be added.
	Budgets []attack.Budget
	// Attacks are the suite's attacks to run, a subset of AttackNames (in
	// any order; they run in the order of AttackNames). Default: all.
	Attacks []string
	// PGDSteps is PGD's number of iterations, step 0.1 of the budget,
	// random start (attack.DefaultPGDOptions). Default 20, the paper's
	// Table 4 setting in this project.
	PGDSteps int
	// APGDSteps is APGD's N_iter. Default 100 (Croce and Hein 2020).
	APGDSteps int
	// Restarts is the number of random restarts of PGD and APGD (each
	// image keeps its first success). Default 1.
	Restarts int
	// TargetClasses is APGD-T's number of target classes, at most K-1.
	// Default 9 (AutoAttack).
	TargetClasses int
	// SquareQueries is Square's query budget per image; SquarePInit its
	// initial square fraction. Defaults 1000 and 0.8 (AutoAttack's p_init;
	// AutoAttack runs 5000 queries, which costs five times more through a
	// projection per query).
	SquareQueries int
	SquarePInit   float64
	// SquareImages, when positive and below the number of images, runs
	// Square on a class-balanced subset of that many of them (seeded by
	// Seed): Square through the STL costs a projection per query. Default
	// 0 (all).
	SquareImages int
	// EOTDraws is the number of gradient draws averaged (EOT) through a
	// randomized defense. Default 10.
	EOTDraws int
	// EvalDraws is the number of times every image, clean or adversarial,
	// is classified through a randomized defense; an image counts as
	// correct only when every draw is (the worst case per image). Default
	// 10. Deterministic defenses are evaluated once.
	EvalDraws int
	// Cascade attacks, with each attack, only the images every earlier
	// attack of the same budget left correctly classified (AutoAttack's
	// order): cheaper, and each row's accuracy then counts the rows
	// before it. Default false: every attack runs on every image the
	// defended classifier gets right without attack.
	Cascade bool
	// Seed seeds every random choice (random starts, Square, noise, the
	// Square subset, the defense's draws of each attack). Default 1.
	Seed uint64
	// Batch is the number of images per attack batch. Default 100.
	Batch int
	// IterationSteps are the PGD-CE iteration counts, below PGDSteps,
	// the iterations check compares with PGDSteps. Default {1, 5}.
	IterationSteps []int
	// Thresholds are the automatic checks' thresholds.
	Thresholds Thresholds
	// Round8 rounds every adversarial image the suite judges (each
	// attack's and probe's result, the transfer and noise images) to 8
	// bits, values k/255, before the defense or the classifier sees it,
	// as an image file would store it (stl run's "release" protocol and
	// --round8), keeping it inside its budget (attack.Round8Within, the
	// rounding of every attack's images): L-infinity by clipping to the
	// ball in 8-bit steps, the normalized L2 dissimilarity by rounding
	// the pixels that most exceed it towards the clean image. The
	// attacks themselves query the defense with unrounded iterates; the
	// clean images are judged as given. Default false; absent from the JSON encoding when false, so
	// that every key hashing the options reads as before it existed.
	Round8 bool `json:",omitempty"`
	// WarmStart starts the projections an attack makes through a defense
	// that can (defense.WarmTransform: STL, STL (cluster)) from the
	// state the projection of the same image's previous query ended in
	// (defense.WarmCache, default options: the nearest earlier input
	// within an L-infinity distance of 1/255, at most 10 warm starts in a
	// row): in practice PGD's successive iterates, and APGD's once its
	// steps have shrunk; Square's queries move a patch too far and start
	// cold. The forward passes only; the exact routes' backward passes
	// and the judging of the final images project cold. Results differ
	// from cold starts' through the ADMM's stopping tolerance only, but an
	// attack's trajectory can amplify that: measured, 1.06x projections
	// per CPU second and three APGD rows 1 to 3 of 16 images apart
	// (docs/performance.md). Default false; absent from the JSON encoding
	// when false, and entering the defended attacks' cache keys only when
	// set.
	WarmStart bool `json:",omitempty"`
	// Dir, when not empty, keeps every finished attack there (its
	// adversarial images and per-image outcome); a later evaluation with
	// the same inputs reuses them instead of attacking again. Default ""
	// (none).
	Dir string
	// Key identifies what the caller loaded (model files, defense, data)
	// in the cache keys of Dir; the images, labels and every attack
	// setting are hashed as well. Default "".
	Key string
	// Progress receives the progress of each attack in images. nil: none.
	Progress progress.Reporter `json:"-"`
}

// Thresholds are the rules of the automatic checks (see Check). Each is a
// fraction of images or of accuracy, in [0, 1].
type Thresholds struct {
	// VanishRatio: an image's input gradient through the defense vanishes
	// when its L2 norm is 0, below 1e-12, or below VanishRatio times the
	// undefended classifier's at the same image. Default 1e-3.
	VanishRatio float64
	// VanishFrac: the gradient check fails when more than this fraction
	// of the probed images have vanishing gradients. Default 0.05.
	VanishFrac float64
	// BeatFrac: the Square, transfer and noise checks fail when that
	// control breaks more than this fraction of the images (and at least
	// one) that every white-box gradient attack left correctly
	// classified. Default 0.01.
	BeatFrac float64
	// IterTol: the iterations check fails when PGD-CE's robust accuracy
	// with more iterations exceeds that with fewer by more than IterTol.
	// Default 0.01.
	IterTol float64
	// LargeEps and LargeMaxAcc: the large-budget check runs PGD-CE at
	// L-infinity LargeEps and fails when the robust accuracy exceeds
	// LargeMaxAcc. Defaults 0.25 and 0.05 (the largest budget and the
	// near-zero accuracy of stl run's white-box sanity checks).
	LargeEps    float64
	LargeMaxAcc float64
	// UnboundedMinSuccess: the unbounded check runs PGD-CE at L-infinity
	// 1 (any image is reachable) and fails when its success rate on the
	// images correctly classified without attack is below this. Default 1.
	UnboundedMinSuccess float64
	// WeakenTol: the weakening checks fail when the defended classifier's
	// clean or worst-case robust accuracy is below the undefended
	// classifier's by more than WeakenTol. Default 0.01.
	WeakenTol float64
}

// DefaultThresholds returns the defaults stated at Thresholds.
func DefaultThresholds() Thresholds {
	return Thresholds{VanishRatio: 1e-3, VanishFrac: 0.05, BeatFrac: 0.01, IterTol: 0.01,
		LargeEps: 0.25, LargeMaxAcc: 0.05, UnboundedMinSuccess: 1, WeakenTol: 0.01}
}

// DefaultBudget is the suite's default budget, L-infinity 8/255.
var DefaultBudget = attack.Budget{Norm: attack.LInf, Eps: 8.0 / 255}

// DefaultOptions returns the defaults stated at Options.
func DefaultOptions() Options {
	return Options{Budgets: []attack.Budget{DefaultBudget}, Attacks: append([]string(nil), AttackNames...),
		PGDSteps: 20, APGDSteps: 100, Restarts: 1, TargetClasses: 9, SquareQueries: 1000, SquarePInit: 0.8,
		EOTDraws: 10, EvalDraws: 10, Seed: 1, Batch: 100, IterationSteps: []int{1, 5}, Thresholds: DefaultThresholds()}
}

// OptionError reports an invalid option (the project's shared option error).
type OptionError = option.Error

// Validate reports the first invalid option as an *OptionError (or the
// budget's *attack.BudgetError).
func (o Options) Validate() error {
	bad := func(f string, v any, why string) error { return option.New("evaluate", f, v, why) }
	if len(o.Budgets) == 0 {
		return bad("Budgets", "[]", "need at least one budget")
	}
	for i, b := range o.Budgets {
		if err := b.Validate(); err != nil {
			return err
		}
		if slices.Contains(o.Budgets[:i], b) {
			return bad("Budgets", b, "appears twice")
		}
	}
	if len(o.Attacks) == 0 {
		return bad("Attacks", "[]", "need at least one attack")
	}
	for _, a := range o.Attacks {
		if !slices.Contains(AttackNames, a) {
			return bad("Attacks", a, fmt.Sprintf("unknown attack (want %v)", AttackNames))
		}
	}
	switch {
	case o.PGDSteps < 1:
		return bad("PGDSteps", o.PGDSteps, "must be at least 1")
	case o.APGDSteps < 1:
		return bad("APGDSteps", o.APGDSteps, "must be at least 1")
	case o.Restarts < 1:
		return bad("Restarts", o.Restarts, "must be at least 1")
	case o.TargetClasses < 1:
		return bad("TargetClasses", o.TargetClasses, "must be at least 1")
	case o.SquareQueries < 1:
		return bad("SquareQueries", o.SquareQueries, "must be at least 1")
	case !(o.SquarePInit > 0 && o.SquarePInit <= 1):
		return bad("SquarePInit", o.SquarePInit, "must be in (0, 1]")
	case o.SquareImages < 0:
		return bad("SquareImages", o.SquareImages, "must be >= 0")
	case o.EOTDraws < 1:
		return bad("EOTDraws", o.EOTDraws, "must be at least 1")
	case o.EvalDraws < 1:
		return bad("EvalDraws", o.EvalDraws, "must be at least 1")
	case o.Batch < 1:
		return bad("Batch", o.Batch, "must be at least 1")
	}
	for _, s := range o.IterationSteps {
		if s < 1 || s >= o.PGDSteps {
			return bad("IterationSteps", s, fmt.Sprintf("must be in [1, PGDSteps=%d)", o.PGDSteps))
		}
	}
	return o.Thresholds.Validate()
}

// Validate checks that every threshold is a finite fraction in [0, 1]
// (VanishRatio and LargeEps in (0, 1]).
func (t Thresholds) Validate() error {
	for _, f := range []struct {
		name     string
		v        float64
		positive bool
	}{{"VanishRatio", t.VanishRatio, true}, {"VanishFrac", t.VanishFrac, false}, {"BeatFrac", t.BeatFrac, false},
		{"IterTol", t.IterTol, false}, {"LargeEps", t.LargeEps, true}, {"LargeMaxAcc", t.LargeMaxAcc, false},
		{"UnboundedMinSuccess", t.UnboundedMinSuccess, false}, {"WeakenTol", t.WeakenTol, false}} {
		if !(f.v >= 0 && f.v <= 1) || (f.positive && f.v == 0) {
			return option.New("evaluate", "Thresholds."+f.name, f.v, "must be in [0, 1] (and positive for VanishRatio and LargeEps)")
		}
	}
	return nil
}

// has reports whether the named attack is selected.
func (o Options) has(name string) bool { return slices.Contains(o.Attacks, name) }
