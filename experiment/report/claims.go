package report

import (
	"fmt"
	"sort"
	"strings"

	"github.com/stl-defense/stl/experiment/metrics"
)

// Letters of the paper's claims the verdict decides, in its order.
const (
	ClaimBeatsNoDefense = "a" // Table 1: STL (cluster) beats No Defense under every attack
	ClaimCluster        = "b" // Table 1: STL (cluster) is at least STL
	ClaimTransforms     = "c" // Table 5, FGSM-0.08: STL beats every other input transformation
	ClaimCleanAccuracy  = "d" // Table 1: retrained clean accuracy within 3 points of the vanilla one
	ClaimAdvTraining    = "e" // Table 4: STL + AT reaches 0.38, STL (cluster) + AT 0.42
	ClaimResolutions    = "f" // claim (a) at every resolution run
	ClaimSweep          = "g" // Figure 5: clean accuracy falls, the gap shrinks as lambda grows
)

// ClaimIDs lists the claims in the order of a verdict.
var ClaimIDs = []string{ClaimBeatsNoDefense, ClaimCluster, ClaimTransforms, ClaimCleanAccuracy, ClaimAdvTraining, ClaimResolutions, ClaimSweep}

// Row names the claims read from the tables. The rows of the adversarially
// trained defenders are those of the Table 4 form.
const (
	RowNoDefense    = "No Defense"
	RowSTL          = "STL"
	RowSTLCluster   = "STL (cluster)"
	RowSTLAT        = "STL + AT"
	RowSTLClusterAT = "STL (cluster) + AT"
)

// IDs of the tables the claims read, as package experiment names them.
const (
	tableRetrained = "table1"
	tableVanilla   = "table5"
	tableWhiteBox  = "table4"
)

// MaxCleanDrop is claim (d)'s margin: the retrained classifiers may lose at
// most this much clean accuracy against the vanilla classifier (the paper's
// Table 1: 0.9298 vanilla, 0.9002 STL, 0.9011 STL (cluster)).
const MaxCleanDrop = 0.03

// Decision rules, as the verdict states them.
const (
	ruleBeats = "A beats B: the difference A - B, with Newcombe's hybrid score 95% interval built from the two Wilson intervals, must lie above 0: " +
		"a comparison holds when the interval's lower end is > 0, does not hold when its upper end is <= 0, and is inconclusive otherwise."
	ruleAtLeast = "A is at least B: the difference A - B (Newcombe's 95% interval) must be >= 0: a comparison holds when the lower end is >= 0, " +
		"does not hold when the upper end is < 0, and is inconclusive otherwise."
	ruleAllOf = " The claim holds when every comparison holds, does not hold when one does not, and is inconclusive otherwise (not run when none could be made)."
	ruleSweep = "For each trend over the lambdas in increasing order: the first lambda against the last (Newcombe's 95% interval for the accuracy, " +
		"the same construction over four accuracies (MOVER) for the gap) must show the claimed change (lower end > 0), and no pair of lambdas may show a change " +
		"against it whose interval excludes 0; the claim holds when both trends hold, does not hold when either shows a change against it " +
		"(or the first-to-last change is against it), and is inconclusive otherwise."
)

// claimDef is a claim that one run's results decide.
type claimDef struct {
	id     string
	decide func(r *Results) Claim
}

// runClaims are the claims each run decides on its own.
var runClaims = []claimDef{
	{ClaimBeatsNoDefense, claimBeatsNoDefense},
	{ClaimCluster, claimCluster},
	{ClaimTransforms, claimTransforms},
	{ClaimCleanAccuracy, claimCleanAccuracy},
	{ClaimAdvTraining, claimAdvTraining},
	{ClaimSweep, claimSweep},
}

// table returns the table of r with the given ID, or nil.
func (r *Results) table(id string) *Table {
	for i := range r.Tables {
		if r.Tables[i].ID == id {
			return &r.Tables[i]
		}
	}
	return nil
}

// cell returns the accuracy of a row and column of t, or why it is
// missing.
func (t *Table) cell(row, col string) (metrics.Accuracy, string) {
	j := -1
	for k, c := range t.Columns {
		if c == col {
			j = k
		}
	}
	if j < 0 {
		return metrics.Accuracy{}, fmt.Sprintf("no column %s in the %s", col, t.Title)
	}
	for _, rw := range t.Rows {
		if rw.Defense != row {
			continue
		}
		if c := rw.Cells[j]; c.Acc != nil {
			return *c.Acc, ""
		} else {
			return metrics.Accuracy{}, fmt.Sprintf("%s, %s: %s", row, col, c.Missing)
		}
	}
	return metrics.Accuracy{}, fmt.Sprintf("no row %s in the %s", row, t.Title)
}

// compare is the evidence that row a minus row b in column col lies in bd.
func (t *Table) compare(col, a, b string, bd Bound) Evidence {
	what := fmt.Sprintf("%s: %s - %s", col, a, b)
	x, why := t.cell(a, col)
	if why == "" {
		var y metrics.Accuracy
		if y, why = t.cell(b, col); why == "" {
			return evidence(what, bd, Term{a, 1, x}, Term{b, -1, y})
		}
	}
	return missingEvidence(what, why)
}

// compareColumns is the evidence that row a minus row b lies in bd in each
// of cols.
func (t *Table) compareColumns(cols []string, a, b string, bd Bound) []Evidence {
	var ev []Evidence
	for _, col := range cols {
		ev = append(ev, t.compare(col, a, b, bd))
	}
	return ev
}

// threshold is the evidence that the accuracy of row in column col lies in
// bd.
func (t *Table) threshold(col, row string, bd Bound) Evidence {
	what := fmt.Sprintf("%s: %s", col, row)
	x, why := t.cell(row, col)
	if why != "" {
		return missingEvidence(what, why)
	}
	return evidence(what, bd, Term{row, 1, x})
}

// adversarialColumns returns t's columns other than the clean one.
func (t *Table) adversarialColumns() []string {
	var cols []string
	for _, c := range t.Columns {
		if c != ColClean {
			cols = append(cols, c)
		}
	}
	return cols
}

// notRun returns c as not run for the reason why.
func notRun(c Claim, why string) Claim {
	c.Status, c.Why = NotRun, why
	return c
}

// fromTable decides c from the evidence each finds in r's table id: not run
// for the reason noTable without the table, or noEvidence when each finds
// none.
func fromTable(r *Results, id string, c Claim, noTable, noEvidence string, each func(t *Table) []Evidence) Claim {
	t := r.table(id)
	if t == nil {
		return notRun(c, noTable)
	}
	if c.Evidence = each(t); len(c.Evidence) == 0 {
		return notRun(c, noEvidence)
	}
	c.decideAll()
	return c
}

func claimBeatsNoDefense(r *Results) Claim {
	c := Claim{Statement: "Table 1 form: STL (cluster) with its retrained classifier beats No Defense under every attack",
		Source: "section 5.2 and Table 1 (\"significantly improves the classification robustness against unknown black-box attacks\")",
		Rule:   ruleBeats + ruleAllOf}
	return fromTable(r, tableRetrained, c, "the run has no Table 1 form", "the run has no attacks", func(t *Table) []Evidence {
		return t.compareColumns(t.adversarialColumns(), RowSTLCluster, RowNoDefense, Bound{0, false})
	})
}

func claimCluster(r *Results) Claim {
	c := Claim{Statement: "Table 1 form: STL (cluster) is at least as accurate as STL in every column",
		Source: "section 3.4 (the stratified quasi-natural image space) and Table 1",
		Rule:   ruleAtLeast + ruleAllOf}
	return fromTable(r, tableRetrained, c, "the run has no Table 1 form", "the table has no columns", func(t *Table) []Evidence {
		return t.compareColumns(t.Columns, RowSTLCluster, RowSTL, Bound{0, true})
	})
}

// isBaseline reports whether a row of the Table 5 form is a competing
// input transformation: not No Defense, not ours, not adversarially
// trained.
func isBaseline(name string) bool {
	switch name {
	case RowNoDefense, RowSTL, RowSTLCluster:
		return false
	}
	return !strings.Contains(name, "+ AT") && !strings.HasPrefix(name, "AT ")
}

func claimTransforms(r *Results) Claim {
	c := Claim{Statement: "Table 5 form at " + ColFGSM008 + ": STL and STL (cluster) in front of the vanilla classifier each beat every other input transformation",
		Source: "section 5.4 and Table 5 (\"all competing methods fail to successfully overcome adversarial attacks while our method significantly outperforms them\")",
		Rule:   ruleBeats + ruleAllOf}
	return fromTable(r, tableVanilla, c, "the run has no Table 5 form", "the run has no baselines (--baselines)", func(t *Table) (ev []Evidence) {
		for _, rw := range t.Rows {
			if isBaseline(rw.Defense) {
				for _, ours := range []string{RowSTL, RowSTLCluster} {
					ev = append(ev, t.compare(ColFGSM008, ours, rw.Defense, Bound{0, false}))
				}
			}
		}
		return ev
	})
}

func claimCleanAccuracy(r *Results) Claim {
	c := Claim{Statement: fmt.Sprintf("Table 1 form: the classifiers retrained on STL's and STL (cluster)'s projections lose at most %g points of clean accuracy against the vanilla classifier", 100*MaxCleanDrop),
		Source: "section 5.2 (\"our retrained model achieves high accuracy on clean data and is comparable to the clean model\") and Table 1 (0.9002 and 0.9011 against 0.9298)",
		Rule: fmt.Sprintf("The difference retrained - vanilla on clean images (Newcombe's 95%% interval) must be >= -%g: a comparison holds when the lower end is >= -%g, "+
			"does not hold when the upper end is < -%g, and is inconclusive otherwise.", MaxCleanDrop, MaxCleanDrop, MaxCleanDrop) + ruleAllOf}
	return fromTable(r, tableRetrained, c, "the run has no Table 1 form", "", func(t *Table) []Evidence {
		return []Evidence{t.compare(ColClean, RowSTL, RowNoDefense, Bound{-MaxCleanDrop, true}), t.compare(ColClean, RowSTLCluster, RowNoDefense, Bound{-MaxCleanDrop, true})}
	})
}

// paperAT holds the paper's Table 4 figures of the defenses combined with
// adversarial training.
var paperAT = []struct {
	row string
	acc float64
}{{RowSTLAT, 0.38}, {RowSTLClusterAT, 0.42}}

func claimAdvTraining(r *Results) Claim {
	c := Claim{Statement: "Table 4 form: STL + AT reaches the paper's 0.38 and STL (cluster) + AT its 0.42 under PGD through BPDA at L-infinity 0.031",
		Source: "section 5.3 and Table 4 (the starred rows: combined with adversarial training)",
		Rule: "The accuracy's Wilson 95% interval must lie at or above the paper's figure: a row holds when its lower end is >= the figure, " +
			"does not hold when its upper end is < the figure, and is inconclusive otherwise; read in the column " + ColBPDAWorst +
			" when the run has it (an image counts only if it resists every loss), else " + ColBPDA + "." + ruleAllOf}
	return fromTable(r, tableWhiteBox, c, "needs the Table 4 form (--whitebox) with the rows "+RowSTLAT+" and "+RowSTLClusterAT+" (adversarial training)", "",
		func(t *Table) (ev []Evidence) {
			col := ColBPDA
			for _, k := range t.Columns {
				if k == ColBPDAWorst {
					col = k
				}
			}
			for _, p := range paperAT {
				ev = append(ev, t.threshold(col, p.row, Bound{p.acc, true}))
			}
			return ev
		})
}

// resolutionClaim is claim (f): claim (a) at every resolution of the runs,
// perRun[i] holding the claims of runs[i].
func resolutionClaim(runs []RunInput, perRun []map[string]Claim) Claim {
	c := Claim{ID: ClaimResolutions,
		Statement: "Robustness holds across resolutions: claim (a) holds in every run, at every resolution run (here 32 and 64 px)",
		Source:    "section 5.2 (\"it performs well in various resolutions (in our experiments, from 32 to 224)\"), Tables 1 and 2",
		Rule:      "Claim (a)'s decision in each run is a comparison; at least two resolutions are needed." + ruleAllOf}
	seen := map[string]bool{}
	var res []string
	for i, in := range runs {
		px := resolution(in.Results.Data)
		if !seen[px] {
			seen[px] = true
			res = append(res, px)
		}
		a := perRun[i][ClaimBeatsNoDefense]
		e := Evidence{What: fmt.Sprintf("%s (%s): claim (a)", in.Label, px), Status: a.Status}
		if a.Status == NotRun {
			e.Missing = a.Why
		}
		c.Evidence = append(c.Evidence, e)
	}
	if len(res) < 2 {
		c.Evidence = nil
		return notRun(c, fmt.Sprintf("needs runs at two resolutions or more under this protocol (stl verdict on, e.g., a 32 px and a 64 px run); the runs here are at %s only", strings.Join(res, ", ")))
	}
	c.decideAll()
	return c
}

// resolution names a data set's image size: "32 px", or "32x48 px".
func resolution(d Data) string {
	if d.Height == d.Width {
		return fmt.Sprintf("%d px", d.Height)
	}
	return fmt.Sprintf("%dx%d px", d.Height, d.Width)
}

func claimSweep(r *Results) Claim {
	c := Claim{Statement: "Figure 5 form: as lambda grows, the vanilla classifier's accuracy on T(x0) falls and the gap Acc T(x0) - Acc T(x_adv) shrinks",
		Source: "section 5.5 and Figure 5 (\"as lambda increases, Acc(T(x0)) decreases and the gap between Acc(T(x0)) and Acc(T(x_adv)) shrinks\")",
		Rule:   ruleSweep}
	pts := sweepByLambda(r.Sweep)
	if len(pts) < 2 {
		return notRun(c, "needs the lambda sweep (--lambda-sweep) at two lambdas or more")
	}
	clean := func(p SweepPoint) []Term {
		return []Term{{fmt.Sprintf("Acc T(x0) at lambda %g", p.Lambda), 1, p.Clean}}
	}
	gap := func(p SweepPoint) []Term {
		return []Term{{fmt.Sprintf("Acc T(x0) at lambda %g", p.Lambda), 1, p.Clean}, {fmt.Sprintf("Acc T(x_adv) at lambda %g", p.Lambda), -1, p.Adv}}
	}
	c.Evidence = append(trend("Acc T(x0) falls", pts, clean), trend(fmt.Sprintf("the gap Acc T(x0) - Acc T(x_adv) (%s) shrinks", pts[0].Attack), pts, gap)...)
	c.decideAll()
	return c
}

// sweepByLambda returns the sweep points of the first defense of pts, in
// increasing lambda, one per lambda.
func sweepByLambda(pts []SweepPoint) []SweepPoint {
	if len(pts) == 0 {
		return nil
	}
	var out []SweepPoint
	for _, p := range pts {
		if p.Defense == pts[0].Defense && p.Attack == pts[0].Attack {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Lambda < out[j].Lambda })
	k := 0
	for i, p := range out {
		if i == 0 || p.Lambda != out[k-1].Lambda {
			out[k] = p
			k++
		}
	}
	return out[:k]
}

// trend returns the evidence that the quantity of terms decreases along
// pts: the first point minus the last above 0, and no pair (i < j) whose
// difference, point i minus point j, lies wholly below 0.
func trend(name string, pts []SweepPoint, terms func(SweepPoint) []Term) []Evidence {
	diff := func(i, j int) []Term {
		ts := terms(pts[i])
		for _, t := range terms(pts[j]) {
			t.Sign = -t.Sign
			ts = append(ts, t)
		}
		return ts
	}
	last := len(pts) - 1
	ends := evidence(fmt.Sprintf("%s: lambda %g against lambda %g", name, pts[0].Lambda, pts[last].Lambda), Bound{0, false}, diff(0, last)...)
	// The pair most against the trend: the smallest upper end.
	var worst []Term
	var wi, wj int
	var worstIv Interval
	pairs := 0
	for i := range pts {
		for j := i + 1; j < len(pts); j++ {
			ts := diff(i, j)
			iv := Combine(ts)
			if pairs == 0 || iv.Hi < worstIv.Hi {
				worst, worstIv, wi, wj = ts, iv, i, j
			}
			pairs++
		}
	}
	st := Holds
	if worstIv.Hi < 0 {
		st = DoesNotHold
	}
	against := Evidence{What: fmt.Sprintf("%s: no pair of lambdas against it (%d pairs; the closest, lambda %g against lambda %g)", name, pairs, pts[wi].Lambda, pts[wj].Lambda),
		Terms: worst, Estimate: &worstIv, Need: "upper end >= 0 for every pair", Status: st}
	return []Evidence{ends, against}
}
