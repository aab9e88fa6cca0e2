package evaluate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Report is the outcome of an evaluation: every attack's result, the
// per-image worst case of each budget, the automatic checks and the time
// spent. It encodes to JSON as the report's json form.
type Report struct {
	Model      string `json:"model"`
	Defense    string `json:"defense,omitempty"`
	Randomized bool   `json:"randomized,omitempty"`
	// Routes are the gradient routes through the defense, RouteSettings
	// the settings of those that have some (Route.Settings), by name.
	Routes        []string                   `json:"routes,omitempty"`
	RouteSettings map[string]json.RawMessage `json:"route_settings,omitempty"`
	Images        int                        `json:"images"`
	Classes       int                        `json:"classes"`
	// SquareImages is the number of images Square attacked (a
	// class-balanced subset with Options.SquareImages).
	SquareImages int     `json:"square_images"`
	Options      Options `json:"options"`
	// Clean is the accuracy without attack, undefended and (with a
	// defense) defended, each image correct in every evaluation draw.
	Clean         metrics.Accuracy  `json:"clean"`
	CleanDefended *metrics.Accuracy `json:"clean_defended,omitempty"`
	Budgets       []BudgetResult    `json:"budgets"`
	// Probes are the attacks the checks ran outside the suite.
	Probes    []*AttackResult `json:"probes"`
	Gradients []GradientProbe `json:"gradients"`
	Checks    []Check         `json:"checks"`
	// Seconds is the evaluation's wall time (attacks reloaded from
	// Options.Dir cost nothing here).
	Seconds float64 `json:"seconds"`
	// Environment holds what the caller adds about the machine and the
	// inputs (CPU, libraries, data set), shown as given.
	Environment map[string]string `json:"environment,omitempty"`
}

// BudgetResult is the suite at one budget.
type BudgetResult struct {
	Budget attack.Budget `json:"budget"`
	// Attacks are the suite's results, the defended classifier's first.
	Attacks []*AttackResult `json:"attacks"`
	// Worst is the per-image worst case over every attack of the suite on
	// the checked classifier (the defended one, or the classifier alone
	// without a defense): an image counts only when correct without
	// attack and after every attack. WorstUndefended is the same for the
	// undefended classifier when a defense is evaluated.
	Worst           metrics.Accuracy  `json:"worst"`
	WorstUndefended *metrics.Accuracy `json:"worst_undefended,omitempty"`
	// Robust flags the images of Worst.
	Robust []bool `json:"robust"`
}

// Failed returns the checks that failed.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Failed {
			out = append(out, c)
		}
	}
	return out
}

// Run evaluates t on the images x (N, C, H, W), pixels in [0, 1], with
// their true labels: the suite of o at each budget on the undefended
// classifier and, with a defense, on the defended one, then the probes
// and the automatic checks. It returns an error for invalid options or
// inputs, a failing model or defense, and ctx's error when cancelled;
// finished attacks are kept in o.Dir for a later run. A failed check is
// not an error: see Report.Failed.
//
// Stopping at success: PGD freezes each image at its first misclassified
// iterate (earlyPGD), APGD runs with StopEarly and leaves successful
// images out of its restarts, Square stops an image at its first success,
// and no attack runs on an image misclassified without attack (or, with
// Cascade, by an earlier attack).
func Run(ctx context.Context, t Target, x *tensor.Tensor, labels []int, o Options) (*Report, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if t.Model == nil {
		return nil, fmt.Errorf("evaluate: no classifier")
	}
	if err := checkRoutes(t.Routes); err != nil {
		return nil, err
	}
	if err := checkImages(t.Model, x, labels); err != nil {
		return nil, err
	}
	r := &run{t: t, o: o, x: x, labels: labels, n: len(labels), k: t.Model.NumClasses(), rep: progress.Or(o.Progress),
		clean: map[string][]bool{}, sources: map[string]*source{}}
	var err error
	if r.store, err = newStore(o.Dir, o.Key, x, labels); err != nil {
		return nil, err
	}
	subjects := t.subjects()
	checked := subjects[len(subjects)-1]
	rep := &Report{Model: t.ModelName, Defense: t.DefenseName, Images: r.n, Classes: r.k, Options: o}
	for _, rt := range checked.routes {
		rep.Routes = append(rep.Routes, rt.Name)
		if rt.Settings != nil && checked.defended {
			if rep.RouteSettings == nil {
				rep.RouteSettings = map[string]json.RawMessage{}
			}
			rep.RouteSettings[rt.Name] = rt.Settings
		}
	}
	squareScope, err := r.squareScope()
	if err != nil {
		return nil, err
	}
	rep.SquareImages = r.scopeSize(Outcome{Scope: squareScope})
	for _, b := range o.Budgets {
		for _, s := range subjects {
			r.total += len(r.suiteAttacks(s, b, squareScope))
		}
	}
	r.total += 1 + len(o.IterationSteps) + 1 + 2 // the gradient probe, the iterations, large and unbounded probes
	for _, s := range subjects {
		if r.clean[s.name], err = r.judge(ctx, s, x, labels, r.seed(s.name, "clean")); err != nil {
			return nil, err
		}
	}
	rep.Clean = metrics.NewAccuracy(len(indices(r.clean[subjUndefended])), r.n)
	if checked.defended {
		a := metrics.NewAccuracy(len(indices(r.clean[subjDefended])), r.n)
		rep.CleanDefended = &a
		d, err := t.defense(checked, r.seed("randomized"))
		if err != nil {
			return nil, err
		}
		rep.Randomized = d.Randomized()
	}
	for _, b := range o.Budgets {
		br := BudgetResult{Budget: b}
		for _, s := range subjects {
			for _, sp := range r.suiteAttacks(s, b, squareScope) {
				if _, err := r.exec(ctx, sp, r.outcomes(s.name, b, anyAttack)); err != nil {
					return nil, err
				}
			}
		}
		for _, s := range subjects {
			for _, res := range r.results {
				if res.Subject == s.name && res.Budget == b && res.Probe == "" {
					br.Attacks = append(br.Attacks, res)
				}
			}
		}
		slices.SortStableFunc(br.Attacks, func(a, b *AttackResult) int { return cmpBool(a.Subject != checked.name, b.Subject != checked.name) })
		robust, err := WorstCase(r.clean[checked.name], r.outcomes(checked.name, b, anyAttack)...)
		if err != nil {
			return nil, err
		}
		br.Robust, br.Worst = robust, metrics.NewAccuracy(len(indices(robust)), r.n)
		if checked.defended {
			u, err := WorstCase(r.clean[subjUndefended], r.outcomes(subjUndefended, b, anyAttack)...)
			if err != nil {
				return nil, err
			}
			a := metrics.NewAccuracy(len(indices(u)), r.n)
			br.WorstUndefended = &a
		}
		rep.Budgets = append(rep.Budgets, br)
	}
	if err := r.checks(ctx, checked, rep); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	r.rep.Report("evaluate", r.total, r.total, fmt.Sprintf("%d of %d checks failed", len(rep.Failed()), len(rep.Checks)))
	return rep, nil
}

// checkImages validates the images and labels against the classifier.
func checkImages(m attack.Model, x *tensor.Tensor, labels []int) error {
	if x == nil {
		return fmt.Errorf("evaluate: no images")
	}
	c, h, w := m.InputShape()
	n, xc, xh, xw, err := x.NCHW()
	if err != nil || n == 0 || xc != c || xh != h || xw != w {
		return &tensor.ShapeError{Op: "evaluate: images vs classifier", Want: []int{-1, c, h, w}, Got: x.Shape}
	}
	if len(labels) != n {
		return &tensor.ShapeError{Op: "evaluate: labels", Want: []int{n}, Got: []int{len(labels)}}
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("evaluate: images: %w", err)
	}
	for i, v := range x.Data {
		if !(v >= 0 && v <= 1) {
			return &attack.PixelError{Index: i, Value: v}
		}
	}
	k := m.NumClasses()
	for i, l := range labels {
		if l < 0 || l >= k {
			return &attack.LabelError{Index: i, Label: l, NumClasses: k}
		}
	}
	return nil
}

// squareScope returns Square's class-balanced subset (nil: every image).
func (r *run) squareScope() ([]bool, error) {
	if r.o.SquareImages == 0 || r.o.SquareImages >= r.n {
		return nil, nil
	}
	idx, err := metrics.BalancedSubset(r.labels, r.k, r.o.SquareImages, r.o.Seed)
	if err != nil {
		return nil, err
	}
	scope := make([]bool, r.n)
	for _, i := range idx {
		scope[i] = true
	}
	return scope, nil
}

// probeBudget is the L-infinity budget of the iterations check: the first
// L-infinity budget of the suite, else DefaultBudget.
func (o Options) probeBudget() attack.Budget {
	for _, b := range o.Budgets {
		if b.Norm == attack.LInf {
			return b
		}
	}
	return DefaultBudget
}

// probe runs PGD-CE through the first route of s outside the suite.
func (r *run) probe(ctx context.Context, s subject, name string, b attack.Budget, steps int) (*AttackResult, error) {
	res, err := r.exec(ctx, spec{subj: s, attack: PGDCE, route: s.routes[0], budget: b, probe: name, steps: steps}, nil)
	if err != nil {
		return nil, err
	}
	// exec appended it to the suite's results; the report lists it apart.
	r.results = r.results[:len(r.results)-1]
	return res, nil
}

// checks runs the probes and every automatic check on the subject s.
func (r *run) checks(ctx context.Context, s subject, rep *Report) error {
	th := r.o.Thresholds
	var err error
	if rep.Gradients, err = r.probeGradients(ctx, s); err != nil {
		return err
	}
	r.done++
	rep.Checks = append(rep.Checks, r.gradientCheck(rep.Gradients))
	for _, b := range r.o.Budgets {
		for _, c := range []struct{ id, control string }{{CheckSquare, Square}, {CheckTransfer, Transfer}, {CheckNoise, Noise}} {
			ck, err := r.beatCheck(c.id, c.control, s, b)
			if err != nil {
				return err
			}
			rep.Checks = append(rep.Checks, ck)
		}
	}
	// More iterations helping the defense.
	pb := r.o.probeBudget()
	var iters []*AttackResult
	for _, st := range r.o.IterationSteps {
		res, err := r.probe(ctx, s, probeIterations, pb, st)
		if err != nil {
			return err
		}
		iters = append(iters, res)
	}
	res, err := r.probe(ctx, s, probeIterations, pb, r.o.PGDSteps)
	if err != nil {
		return err
	}
	iters = append(iters, res)
	rep.Probes = append(rep.Probes, iters...)
	rep.Checks = append(rep.Checks, iterationsCheck(iters, append(append([]int(nil), r.o.IterationSteps...), r.o.PGDSteps), th.IterTol, pb))
	// Large and unbounded budgets.
	large, err := r.probe(ctx, s, probeLarge, attack.Budget{Norm: attack.LInf, Eps: th.LargeEps}, 0)
	if err != nil {
		return err
	}
	unb, err := r.probe(ctx, s, probeUnbounded, attack.Budget{Norm: attack.LInf, Eps: UnboundedEps}, 0)
	if err != nil {
		return err
	}
	rep.Probes = append(rep.Probes, large, unb)
	rep.Checks = append(rep.Checks, Check{ID: CheckLargeBudget, Budget: BudgetLabel(large.Budget), Title: "accuracy not reaching 0 at a large budget",
		Rule:   fmt.Sprintf("fails when PGD-CE at L-infinity %g leaves a robust accuracy above %g", th.LargeEps, th.LargeMaxAcc),
		Status: verdict(large.Accuracy.Value > th.LargeMaxAcc), Detail: fmt.Sprintf("robust accuracy %.4f", large.Accuracy.Value)})
	success := 1.0
	if unb.Attacked > 0 {
		success = float64(unb.Broken) / float64(unb.Attacked)
	}
	rep.Checks = append(rep.Checks, Check{ID: CheckUnbounded, Budget: BudgetLabel(unb.Budget), Title: "an unbounded attack not reaching 100% success",
		Rule:   fmt.Sprintf("fails when PGD-CE at L-infinity %g (every image reachable) succeeds on less than %g of the images correctly classified without attack", UnboundedEps, th.UnboundedMinSuccess),
		Status: verdict(success < th.UnboundedMinSuccess), Detail: fmt.Sprintf("success %d of %d (%.4f)", unb.Broken, unb.Attacked, success)})
	rep.Checks = append(rep.Checks, weakenChecks(rep, th.WeakenTol)...)
	return nil
}

// iterationsCheck fails when an accuracy of iters (PGD-CE with the given
// steps, increasing) exceeds one with fewer steps by more than tol.
func iterationsCheck(iters []*AttackResult, steps []int, tol float64, b attack.Budget) Check {
	c := Check{ID: CheckIterations, Budget: BudgetLabel(b), Title: "more iterations helping the defense",
		Rule: fmt.Sprintf("fails when PGD-CE's robust accuracy with more iterations exceeds that with fewer by more than %g", tol)}
	worst := 0.0
	for i, res := range iters {
		c.Detail += fmt.Sprintf("%d steps: %.4f; ", steps[i], res.Accuracy.Value)
		for _, prev := range iters[:i] {
			worst = max(worst, res.Accuracy.Value-prev.Accuracy.Value)
		}
	}
	c.Detail += fmt.Sprintf("largest increase %.4f", worst)
	c.Status = verdict(worst > tol)
	return c
}

// weakenChecks compare the defended classifier with the undefended one:
// clean accuracy, and the worst case of each budget.
func weakenChecks(rep *Report, tol float64) []Check {
	rule := func(what string) string {
		return fmt.Sprintf("fails when the defended classifier's %s is below the undefended classifier's by more than %g", what, tol)
	}
	clean := Check{ID: CheckWeakensClean, Title: "the defense weakening its base model (clean)", Rule: rule("clean accuracy")}
	if rep.CleanDefended == nil {
		clean.Status, clean.Detail = Skipped, "no defense"
		return []Check{clean}
	}
	clean.Status = verdict(rep.Clean.Value-rep.CleanDefended.Value > tol)
	clean.Detail = fmt.Sprintf("defended %.4f, undefended %.4f", rep.CleanDefended.Value, rep.Clean.Value)
	out := []Check{clean}
	for _, br := range rep.Budgets {
		c := Check{ID: CheckWeakensRobust, Budget: BudgetLabel(br.Budget), Title: "the defense weakening its base model (robust)", Rule: rule("worst-case robust accuracy")}
		c.Status = verdict(br.WorstUndefended.Value-br.Worst.Value > tol)
		c.Detail = fmt.Sprintf("defended %.4f, undefended %.4f", br.Worst.Value, br.WorstUndefended.Value)
		out = append(out, c)
	}
	return out
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}
