package experiment

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/experiment/report"
)

// suiteWeights are the planned costs of the suite's stages, one per
// white-box row (see planWeights): the gradient attacks' iterations
// through each of the row's routes on the defended classifier and once on
// the classifier alone, and Square's queries, at the per-image rates of
// planWeights (an exact route taken as three projections per gradient).
func (r *runner) suiteWeights(nsub, px float64) []float64 {
	s := r.cfg.WhiteBoxSuite
	if !s.active() {
		return nil
	}
	o := s.options(r.cfg)
	grad, fwd := 0.0, 0.0
	for _, a := range o.Attacks {
		switch a {
		case evaluate.PGDCE, evaluate.PGDCW:
			grad += float64(o.PGDSteps)
		case evaluate.APGDCE, evaluate.APGDDLR, evaluate.APGDCW:
			grad += float64(o.APGDSteps)
		case evaluate.APGDT:
			grad += float64(o.APGDSteps * o.TargetClasses)
		case evaluate.Square:
			fwd += float64(o.SquareQueries)
		}
	}
	var w []float64
	for _, rw := range r.whiteBoxRows() {
		per, routes := 0.0, 1.0
		switch {
		case rw.exactRoutes():
			per, routes = 4e-2*px, float64(len(s.routes()))
		case !rw.plain():
			per = 1e-2 * px
		}
		w = append(w, nsub*(grad*(routes*(3*per+6e-3*px)+6e-3*px)+fwd*(per+2e-3*px)))
	}
	return w
}

// suiteColumn is one column of the suite's table: an attack through a
// route ("" for the attacks without one).
type suiteColumn struct{ attack, route string }

// suiteColumns returns the table's attack columns: each gradient attack
// of the suite through each route (bpda first when some row is attacked
// through it), then Square, transfer and noise, in the suite's order.
func (r *runner) suiteColumns() []suiteColumn {
	s := r.cfg.WhiteBoxSuite
	routes := s.routes()
	if !slices.Contains(routes, defense.RouteBPDA) && slices.ContainsFunc(r.whiteBoxRows(), func(rw *row) bool { return !rw.plain() && !rw.exactRoutes() }) {
		routes = append([]string{defense.RouteBPDA}, routes...)
	}
	var cols []suiteColumn
	for _, a := range evaluate.AttackNames {
		if !slices.Contains(s.options(r.cfg).Attacks, a) {
			continue
		}
		switch a {
		case evaluate.Square, evaluate.Transfer, evaluate.Noise:
			cols = append(cols, suiteColumn{attack: a})
		default:
			for _, rt := range routes {
				cols = append(cols, suiteColumn{attack: a, route: rt})
			}
		}
	}
	return cols
}

// Columns of the suite's table besides the attacks.
const (
	colSuiteClean = "clean"
	colSuiteWorst = "worst case"
)

// whiteBoxSuiteTable lays out the suite's reports as the Table 4 form of
// the suite: per row, the clean accuracy, the robust accuracy under each
// attack and route, and the per-image worst case over every attack; ok is
// false when the run has no suite.
func (r *runner) whiteBoxSuiteTable() (report.Table, bool) {
	s := r.cfg.WhiteBoxSuite
	if !r.cfg.WhiteBox || !s.active() {
		return report.Table{}, false
	}
	o := s.options(r.cfg)
	cols := r.suiteColumns()
	t := report.Table{ID: "table4-suite", Columns: []string{colSuiteClean}}
	for _, c := range cols {
		t.Columns = append(t.Columns, evaluate.Label(c.attack, c.route))
	}
	t.Columns = append(t.Columns, colSuiteWorst)
	t.Title = "Table 4 form, adaptive suite: stl evaluate's attacks on every white-box row"
	t.Caption = fmt.Sprintf("The suite of stl evaluate (docs/evaluate.md) at L-infinity %g on the defended classifier (the retrained one, or the vanilla one when the row has none): "+
		"PGD %d steps, APGD %d steps (AutoAttack's schedule), Square %d queries, each image attacked until misclassified; randomized defenses with EOT over %d gradient draws and every image classified %d times, correct only when every draw is. "+
		"Gradient attacks run through each route: bpda takes the defense's backward pass as the identity%s; implicit and unrolled are the STL's exact gradients (STL rows only). "+
		"For rows without a transform every route is the classifier's own gradient. Worst case: correct without attack and after every attack of the row. "+
		"The suite's automatic checks are in the notes; its adversarial images are not rounded to 8 bits.",
		whiteBoxEps, o.PGDSteps, o.APGDSteps, o.SquareQueries, o.EOTDraws, o.EvalDraws, r.exactBackward()) + r.whiteBoxScope()
	for _, rw := range r.whiteBoxRows() {
		row := report.Row{Defense: rw.name}
		if rw.suite == nil {
			why := rw.suiteMissing
			if why == "" {
				why = "not computed"
			}
			row.Cells = missingCells(why, len(t.Columns))
			t.Rows = append(t.Rows, row)
			continue
		}
		rep := rw.suite
		if rw.model == nil && !rw.plain() {
			row.Defense += " (vanilla classifier)"
		}
		subject, clean := evaluate.SubjectUndefended, rep.Clean
		if rep.CleanDefended != nil {
			subject, clean = evaluate.SubjectDefended, *rep.CleanDefended
		}
		row.Cells = append(row.Cells, report.Cell{Acc: &clean})
		for _, c := range cols {
			row.Cells = append(row.Cells, suiteCell(rep, subject, c))
		}
		worst := rep.Budgets[0].Worst
		row.Cells = append(row.Cells, report.Cell{Acc: &worst})
		t.Rows = append(t.Rows, row)
	}
	return t, true
}

// suiteCell returns the accuracy of the subject's result for column c, or
// why there is none.
func suiteCell(rep *evaluate.Report, subject string, c suiteColumn) report.Cell {
	for _, a := range rep.Budgets[0].Attacks {
		if a.Subject != subject || a.Attack != c.attack {
			continue
		}
		// On the classifier alone every route is its own gradient.
		if a.Route == c.route || subject == evaluate.SubjectUndefended && a.Route != "" {
			acc := a.Accuracy
			return report.Cell{Acc: &acc}
		}
	}
	switch {
	case subject == evaluate.SubjectUndefended && c.attack == evaluate.Transfer:
		return report.Cell{Missing: "no defense to transfer through"}
	case c.route != "" && !slices.Contains(rep.Routes, c.route):
		return report.Cell{Missing: "no " + c.route + " route through this defense (its bpda column applies)"}
	}
	return report.Cell{Missing: "not run (too few classes)"}
}

// suiteNotes are the report's notes on the suite's automatic checks: per
// row, those that failed with their figures, or that all passed.
func (r *runner) suiteNotes() []string {
	if !r.cfg.WhiteBox || !r.cfg.WhiteBoxSuite.active() {
		return nil
	}
	var notes []string
	for _, rw := range r.whiteBoxRows() {
		if rw.suite == nil {
			continue
		}
		failed := rw.suite.Failed()
		if len(failed) == 0 {
			notes = append(notes, fmt.Sprintf("White-box suite, %s: all %d automatic checks passed or were not run.", rw.name, len(rw.suite.Checks)))
			continue
		}
		var parts []string
		for _, c := range failed {
			p := c.Title
			if c.Budget != "" {
				p += " [" + c.Budget + "]"
			}
			parts = append(parts, p+": "+c.Detail)
		}
		notes = append(notes, fmt.Sprintf("White-box suite, %s: %d of %d automatic checks FAILED: %s.", rw.name, len(failed), len(rw.suite.Checks), strings.Join(parts, "; ")))
	}
	return notes
}
