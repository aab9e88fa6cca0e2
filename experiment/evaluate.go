package experiment

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/tensor"
)

// evaluate fills the Table 1 and Table 5 forms, with the white-box Table 4
// form and its sanity checks after them when the run has them, and the
// Figure 6 points.
func (r *runner) evaluate(ctx context.Context) (tables []report.Table, quality []report.Quality, err error) {
	e := r.newEvaluator(ctx)
	t1, t5, quality, err := r.blackBoxTables(e)
	if err != nil {
		return nil, nil, err
	}
	tables = []report.Table{t1, t5}
	var sanity []report.Table
	if r.cfg.WhiteBox {
		t4, err := r.whiteBoxTable(e)
		if err != nil {
			return nil, nil, err
		}
		tables = append(tables, t4)
		if t, ok := r.whiteBoxSuiteTable(); ok {
			tables = append(tables, t)
		}
		if r.atNote, err = r.advCleanNote(e); err != nil {
			return nil, nil, err
		}
		st, notes, err := r.sanityTables(e)
		if err != nil {
			return nil, nil, err
		}
		r.sanityNotes, sanity = notes, st
	}
	if r.isCIFAR10() {
		report.AttachPaper(&tables[0], report.PaperTable1)
		report.AttachPaper(&tables[1], report.PaperTable5)
		if len(tables) > 2 {
			report.AttachPaper(&tables[2], report.PaperTable4)
		}
	}
	return append(tables, sanity...), quality, nil
}

// newEvaluator returns an evaluator whose progress counts every accuracy
// evaluate computes.
func (r *runner) newEvaluator(ctx context.Context) *evaluator {
	e := &evaluator{ctx: ctx, r: r}
	for _, rw := range r.rows {
		if rw.name == NoDefense || rw.test != nil {
			e.all += 2 * (2 + len(r.advs))
		}
		e.countWhiteBox(rw)
		if rw.sanity != nil {
			e.all += len(r.cfg.sanityStepList()) + len(SanityEps) + 3
		}
	}
	for _, rw := range r.atRows {
		e.countWhiteBox(rw)
		if rw.model != nil {
			e.all++ // advCleanNote
		}
	}
	return e
}

// countWhiteBox adds the row's white-box evaluations to the progress total.
func (e *evaluator) countWhiteBox(rw *row) {
	for _, loss := range orderedLosses(e.r.cfg.WhiteBoxLosses) {
		if adv, _ := rw.whiteBoxAdv(loss); adv != nil {
			e.all++
		}
	}
}

// blackBoxTables fills the Table 1 and Table 5 forms, one row per defense,
// and the Figure 6 points.
func (r *runner) blackBoxTables(e *evaluator) (t1, t5 report.Table, quality []report.Quality, err error) {
	cols := append([]string{report.ColClean}, orderedAttacks(r.cfg.Attacks)...)
	t1 = report.Table{ID: "table1", Columns: cols,
		Title:   "Table 1 form: each defense's retrained classifier on its transformed clean and adversarial sets",
		Caption: "A classifier is retrained on each defense's transformed training set and tested on its transformed clean and adversarial test sets (paper, section 3.5 and Table 1). Adversarial examples are computed on the vanilla classifier (grey box). No Defense is the vanilla classifier on untransformed images."}
	t5 = report.Table{ID: "table5", Columns: cols,
		Title:   "Table 5 form: the vanilla classifier on transformed clean and adversarial sets",
		Caption: "The attacked vanilla classifier, trained on clean images only, classifies each defense's transformed images (paper, section 5.4 and Table 5)."}
	for _, rw := range r.rows {
		var row1, row5 report.Row
		var q []report.Quality
		switch {
		case rw.name == NoDefense:
			row1, q, err = r.noDefenseRow(e)
			row5 = row1
		case rw.test == nil:
			why := rw.missing
			if why == "" {
				why = "not computed"
			}
			row1 = report.Row{Defense: rw.name, Cells: missingCells(why, len(cols))}
			row5 = report.Row{Defense: rw.name, Cells: missingCells(why, len(cols))}
		default:
			row1, row5, q, err = r.defenseRows(e, rw, len(cols))
		}
		if err != nil {
			return t1, t5, nil, err
		}
		quality = append(quality, q...)
		t1.Rows, t5.Rows = append(t1.Rows, row1), append(t5.Rows, row5)
	}
	return t1, t5, quality, nil
}

// missingCells returns n cells missing for the reason why.
func missingCells(why string, n int) []report.Cell {
	cells := make([]report.Cell, n)
	for j := range cells {
		cells[j].Missing = why
	}
	return cells
}

// noDefenseRow is the vanilla classifier on the clean and adversarial test
// sets, the No Defense row of both forms, and its Figure 6 points.
func (r *runner) noDefenseRow(e *evaluator) (report.Row, []report.Quality, error) {
	row := report.Row{Defense: NoDefense}
	var quality []report.Quality
	clean, err := e.acc(r.vanilla, r.test.Images, r.test.Labels)
	if err != nil {
		return row, nil, err
	}
	cleanSub, err := e.acc(r.vanilla, r.x0, r.y0)
	if err != nil {
		return row, nil, err
	}
	row.Cells = append(row.Cells, report.Cell{Acc: clean})
	for _, a := range r.advs {
		if a.x == nil {
			row.Cells = append(row.Cells, report.Cell{Missing: a.missing})
			continue
		}
		adv, err := e.acc(r.vanilla, a.x, r.y0)
		if err != nil {
			return row, nil, err
		}
		row.Cells = append(row.Cells, report.Cell{Acc: adv})
		q, err := r.quality(NoDefense, a.name, a.x, cleanSub, adv)
		if err != nil {
			return row, nil, err
		}
		quality = append(quality, q)
	}
	return row, quality, nil
}

// quality is the Figure 6 point of a defense's images y of the attacked
// images under an attack: their PSNR and the vanilla classifier's
// accuracies.
func (r *runner) quality(rowName, attackName string, y *tensor.Tensor, clean, adv *metrics.Accuracy) (report.Quality, error) {
	ps := r.x0.Shape[1] * r.x0.Shape[2] * r.x0.Shape[3]
	psnr, err := metrics.MeanPSNR(y.Data, r.x0.Data, ps)
	if err != nil {
		return report.Quality{}, err
	}
	return report.Quality{Defense: rowName, Attack: attackName, PSNR: psnr, Clean: *clean, Adv: *adv}, nil
}

// defenseRows are a defense's rows of Table 1 (its retrained classifier)
// and Table 5 (the vanilla classifier) on its transformed sets, of ncols
// cells each, and its Figure 6 points.
func (r *runner) defenseRows(e *evaluator, rw *row, ncols int) (row1, row5 report.Row, quality []report.Quality, err error) {
	row1, row5 = report.Row{Defense: rw.name}, report.Row{Defense: rw.name}
	for ti, m := range []attack.Model{r.vanilla, rw.model} {
		row := &row5
		if ti == 1 {
			row = &row1
		}
		if m == nil {
			row.Cells = missingCells(rw.modelMissing, ncols)
			continue
		}
		clean, err := e.acc(m, rw.test, r.test.Labels)
		if err != nil {
			return row1, row5, nil, err
		}
		row.Cells = append(row.Cells, report.Cell{Acc: clean})
		var cleanSub *metrics.Accuracy
		if ti == 0 {
			if cleanSub, err = e.acc(m, r.subsetImages(rw.test), r.y0); err != nil {
				return row1, row5, nil, err
			}
		}
		for _, a := range r.advs {
			y, ok := rw.adv[a.name]
			if !ok {
				why := a.missing
				if why == "" {
					why = "transforming the adversarial set failed (see Missing)"
				}
				row.Cells = append(row.Cells, report.Cell{Missing: why})
				continue
			}
			adv, err := e.acc(m, y, r.y0)
			if err != nil {
				return row1, row5, nil, err
			}
			row.Cells = append(row.Cells, report.Cell{Acc: adv})
			if ti == 0 {
				q, err := r.quality(rw.name, a.name, y, cleanSub, adv)
				if err != nil {
					return row1, row5, nil, err
				}
				quality = append(quality, q)
			}
		}
	}
	return row1, row5, quality, nil
}

// whiteBoxColumns maps each white-box loss to its Table 4 column.
var whiteBoxColumns = map[string]string{LossCE: report.ColBPDA, LossCW: report.ColBPDACW}

// whiteBoxTable evaluates the white-box examples: each defense's
// classifier on T(x_adv), the vanilla classifier on x_adv for No Defense,
// one column per loss of Config.WhiteBoxLosses (the cross-entropy first).
func (r *runner) whiteBoxTable(e *evaluator) (report.Table, error) {
	losses := orderedLosses(r.cfg.WhiteBoxLosses)
	cols := make([]string, len(losses))
	for j, l := range losses {
		cols[j] = whiteBoxColumns[l]
	}
	worst := len(losses) > 1
	if worst {
		cols = append(cols, report.ColBPDAWorst)
	}
	lossText := "on the cross-entropy (" + report.ColBPDA + ")"
	if contains(losses, LossCW) {
		lossText = fmt.Sprintf("on the cross-entropy (%s) and on the Carlini-Wagner margin loss max_{j!=y} z_j - z_y, capped at kappa %g (%s)", report.ColBPDA, r.cfg.WhiteBoxCWKappa, report.ColBPDACW)
	}
	t := report.Table{ID: "table4", Columns: cols,
		Title: "Table 4 form: white-box PGD through BPDA (EOT for randomized defenses)",
		Caption: fmt.Sprintf("PGD at L-infinity 0.031 (%d steps, random start) %s on the defended classifier, the defense's backward pass taken as the identity (BPDA)%s, "+
			"gradients averaged over %d draws for randomized defenses (EOT); accuracy of the classifier on T(x_adv). "+
			"Each defense uses its retrained classifier, or the vanilla one (marked) when it has none. The paper's STL numbers combine STL with adversarial training; "+
			"the paper does not state its loss, so its one figure per defense is shown in each column. %s%s"+
			"The sanity checks below use the cross-entropy attack.",
			r.cfg.WhiteBoxSteps, lossText, r.exactBackward(), r.cfg.EOTDraws, worstText(worst), r.advTrainText()) + r.whiteBoxScope()}
	for _, rw := range r.whiteBoxRows() {
		name := rw.name
		if rw.wbVanilla && rw.name != NoDefense {
			name += " (vanilla classifier)"
		}
		row := report.Row{Defense: name}
		m := rw.model
		if rw.wbVanilla || rw.name == NoDefense {
			m = r.vanilla
		}
		// both counts the images correct under every loss so far (the
		// worst case); nil once a loss is missing.
		both := make([]bool, len(r.wbY))
		for i := range both {
			both[i] = true
		}
		for _, loss := range losses {
			adv, why := rw.whiteBoxAdv(loss)
			if adv == nil {
				if why == "" {
					why = "not computed"
				}
				row.Cells = append(row.Cells, report.Cell{Missing: why})
				both = nil
				continue
			}
			a, ok, err := e.accCorrect(m, adv, r.wbY)
			if err != nil {
				return t, err
			}
			row.Cells = append(row.Cells, report.Cell{Acc: a})
			for i := range both {
				both[i] = both[i] && ok[i]
			}
		}
		if worst {
			if both == nil {
				row.Cells = append(row.Cells, report.Cell{Missing: "a loss is missing"})
			} else {
				c := 0
				for _, v := range both {
					if v {
						c++
					}
				}
				a := metrics.NewAccuracy(c, len(both))
				row.Cells = append(row.Cells, report.Cell{Acc: &a})
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// worstText describes the per-image worst-case column when there is one.
func worstText(worst bool) string {
	if !worst {
		return ""
	}
	return report.ColBPDAWorst + " counts an image as correct only if it is correct under every loss. "
}

// evaluator caches predictions per (model, set) pair during evaluation.
type evaluator struct {
	ctx  context.Context
	r    *runner
	done int
	all  int
}

func (e *evaluator) acc(m attack.Model, x *tensor.Tensor, labels []int) (*metrics.Accuracy, error) {
	a, _, err := e.accCorrect(m, x, labels)
	return a, err
}

// accCorrect is acc that also returns which images m classifies correctly.
func (e *evaluator) accCorrect(m attack.Model, x *tensor.Tensor, labels []int) (*metrics.Accuracy, []bool, error) {
	pred, err := predict(e.ctx, m, x)
	if err != nil {
		return nil, nil, err
	}
	c, err := metrics.CountCorrect(pred, labels)
	if err != nil {
		return nil, nil, err
	}
	ok := make([]bool, len(labels))
	for i, p := range pred {
		ok[i] = p == labels[i]
	}
	e.done++
	e.r.rep.Report("evaluate", e.done, e.all, "")
	a := metrics.NewAccuracy(c, len(labels))
	return &a, ok, nil
}

// subsetImages returns the images of x (a transformed test set) at the
// attacked indices.
func (r *runner) subsetImages(x *tensor.Tensor) *tensor.Tensor {
	per := len(x.Data) / x.Shape[0]
	out := tensor.New(append([]int{len(r.subset)}, x.Shape[1:]...)...)
	for i, j := range r.subset {
		copy(out.Data[i*per:(i+1)*per], x.Data[j*per:(j+1)*per])
	}
	return out
}
