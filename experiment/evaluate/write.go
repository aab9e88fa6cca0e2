package evaluate

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
)

// section is one table of a report, rendered as Markdown or HTML.
type section struct {
	title string
	note  string
	head  []string
	rows  [][]string
}

func accCell(a metrics.Accuracy) string {
	if a.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f [%.3f, %.3f]", a.Value, a.Lo, a.Hi)
}

// attackRow is the table row of one attack.
func attackRow(res *AttackResult) []string {
	cost := "-"
	if res.Attacked > 0 {
		cost = fmt.Sprintf("%.3g", res.Seconds/float64(res.Attacked))
	}
	cached := ""
	if res.Cached {
		cached = " (cached)"
	}
	label := res.Label()
	if res.Probe != "" {
		label += fmt.Sprintf(", %s, %s", res.Probe, BudgetLabel(res.Budget))
		if res.Steps > 0 {
			label += fmt.Sprintf(", %d steps", res.Steps)
		}
	}
	return []string{res.Subject, label, accCell(res.Accuracy), fmt.Sprintf("%d / %d", res.Broken, res.Attacked),
		fmt.Sprint(res.GradImages), fmt.Sprint(res.ForwardImages), fmt.Sprintf("%.3g%s", res.Seconds, cached), cost}
}

// BudgetLabel formats a budget for reports: "L-inf 8/255" when Eps is a
// whole number of 255ths, else "L-inf 0.25" or "L2 dissimilarity 0.04".
func BudgetLabel(b attack.Budget) string {
	if b.Norm != attack.LInf {
		return fmt.Sprintf("L2 dissimilarity %g", b.Eps)
	}
	if k := math.Round(b.Eps * 255); k >= 1 && math.Abs(b.Eps*255-k) < 1e-9 && b.Eps < 1 {
		return fmt.Sprintf("L-inf %g/255", k)
	}
	return fmt.Sprintf("L-inf %g", b.Eps)
}

var attackHead = []string{"classifier", "attack (route)", "robust accuracy [95% CI]", "broken / attacked", "gradient image-passes", "forward image-passes", "seconds", "s / attacked image"}

// sections returns the report's tables in order.
func (r *Report) sections() []section {
	var out []section
	sum := section{title: "Summary", head: []string{"budget", "clean", "worst case (every attack)", "undefended clean", "undefended worst case"}}
	for _, b := range r.Budgets {
		row := []string{BudgetLabel(b.Budget), accCell(r.Clean), accCell(b.Worst), "", ""}
		if r.CleanDefended != nil {
			row[1], row[3], row[4] = accCell(*r.CleanDefended), accCell(r.Clean), accCell(*b.WorstUndefended)
		}
		sum.rows = append(sum.rows, row)
	}
	sum.note = "An image counts as robust only when it is classified correctly without attack and after every attack of the suite at that budget"
	if r.Randomized {
		sum.note += fmt.Sprintf(", in each of %d evaluation draws of the randomized defense", r.Options.EvalDraws)
	}
	sum.note += "."
	out = append(out, sum)
	for _, b := range r.Budgets {
		s := section{title: "Attacks at " + BudgetLabel(b.Budget), head: attackHead}
		for _, res := range b.Attacks {
			s.rows = append(s.rows, attackRow(res))
		}
		if r.Options.Cascade {
			s.note = "Cascade: each attack ran only on the images the attacks above it (same classifier) left correct; its accuracy counts them."
		}
		out = append(out, s)
	}
	pr := section{title: "Probes of the checks (outside the worst case)", head: attackHead}
	for _, res := range r.Probes {
		row := attackRow(res)
		pr.rows = append(pr.rows, row)
	}
	out = append(out, pr)
	gs := section{title: "Gradient probe", head: []string{"route", "images", "zero", "vanishing", "median norm", "median ratio to undefended"},
		note: "L2 norm of the input gradient of the margin loss max_{j!=y} z_j - z_y at the correctly classified clean images."}
	for _, g := range r.Gradients {
		gs.rows = append(gs.rows, []string{g.Route, fmt.Sprint(g.Images), fmt.Sprint(g.Zero), fmt.Sprint(g.Vanishing), fmt.Sprintf("%.4g", g.MedianNorm), fmt.Sprintf("%.4g", g.MedianRatio)})
	}
	out = append(out, gs)
	cs := section{title: "Automatic checks", head: []string{"check", "budget", "status", "figures", "rule"}}
	for _, c := range r.Checks {
		cs.rows = append(cs.rows, []string{c.Title, c.Budget, string(c.Status), c.Detail, c.Rule})
	}
	out = append(out, cs)
	return out
}

// settings returns the report's header lines: what was evaluated and every
// hyperparameter.
func (r *Report) settings() []string {
	o := r.Options
	def := r.Defense
	if def == "" {
		def = "none"
	}
	routes := []string{routeExact + " (undefended)"}
	for _, name := range r.Routes {
		if s, ok := r.RouteSettings[name]; ok {
			name += " " + string(s)
		}
		routes = append(routes, name)
	}
	lines := []string{
		fmt.Sprintf("Classifier: %s; defense: %s%s; gradient routes: %s.", r.Model, def, map[bool]string{true: " (randomized)"}[r.Randomized], strings.Join(routes, ", ")),
		fmt.Sprintf("Images: %d (%d classes); Square on %d of them.", r.Images, r.Classes, r.SquareImages),
		fmt.Sprintf("Attacks: %s; PGD %d steps (step 0.1 of the budget, random start, stops at first success); APGD %d steps (AutoAttack's schedule, stops at success), %d target classes for APGD-T; restarts %d; Square %d queries, p_init %g.",
			strings.Join(o.Attacks, ", "), o.PGDSteps, o.APGDSteps, o.TargetClasses, o.Restarts, o.SquareQueries, o.SquarePInit),
		fmt.Sprintf("%s: EOT over %d gradient draws, %d evaluation draws per image (worst case kept); cascade %v; seed %d; batch %d.",
			map[bool]string{true: "Randomized defense", false: "Deterministic (a randomized defense would get)"}[r.Randomized], o.EOTDraws, o.EvalDraws, o.Cascade, o.Seed, o.Batch),
		fmt.Sprintf("Total time %.1f s.", r.Seconds),
	}
	if o.Round8 {
		lines = append(lines[:len(lines)-1], "Every adversarial image judged was rounded to 8 bits (k/255) inside its budget.", lines[len(lines)-1])
	}
	for _, k := range sortedKeys(r.Environment) {
		lines = append(lines, fmt.Sprintf("%s: %s", k, r.Environment[k]))
	}
	if f := r.Failed(); len(f) > 0 {
		var ids []string
		for _, c := range f {
			ids = append(ids, c.ID)
		}
		lines = append(lines, fmt.Sprintf("FAILED checks: %d (%s).", len(f), strings.Join(ids, ", ")))
	} else {
		lines = append(lines, fmt.Sprintf("All %d checks passed or were not run.", len(r.Checks)))
	}
	return lines
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

func (r *Report) title() string {
	if r.Defense == "" {
		return "stl evaluate: " + r.Model
	}
	return "stl evaluate: " + r.Defense + " in front of " + r.Model
}

// WriteMarkdown writes the report as Markdown.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", r.title())
	for _, l := range r.settings() {
		fmt.Fprintf(&b, "%s\n\n", l)
	}
	esc := strings.NewReplacer("|", `\|`)
	for _, s := range r.sections() {
		fmt.Fprintf(&b, "## %s\n\n", s.title)
		if s.note != "" {
			fmt.Fprintf(&b, "%s\n\n", s.note)
		}
		fmt.Fprintf(&b, "| %s |\n|%s\n", strings.Join(s.head, " | "), strings.Repeat("---|", len(s.head)))
		for _, row := range s.rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = esc.Replace(c)
			}
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteHTML writes the report as a self-contained HTML page.
func WriteHTML(w io.Writer, r *Report) error {
	var b strings.Builder
	e := html.EscapeString
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title>\n", e(r.title()))
	b.WriteString("<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}" +
		"th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}.FAILED{color:#b00;font-weight:bold}.passed{color:#070}</style></head><body>\n")
	fmt.Fprintf(&b, "<h1>%s</h1>\n", e(r.title()))
	for _, l := range r.settings() {
		fmt.Fprintf(&b, "<p>%s</p>\n", e(l))
	}
	for _, s := range r.sections() {
		fmt.Fprintf(&b, "<h2>%s</h2>\n", e(s.title))
		if s.note != "" {
			fmt.Fprintf(&b, "<p>%s</p>\n", e(s.note))
		}
		b.WriteString("<table><tr>")
		for _, h := range s.head {
			fmt.Fprintf(&b, "<th>%s</th>", e(h))
		}
		b.WriteString("</tr>\n")
		for _, row := range s.rows {
			b.WriteString("<tr>")
			for _, c := range row {
				if c == string(Failed) || c == string(Passed) {
					fmt.Fprintf(&b, "<td class=\"%s\">%s</td>", c, e(c))
				} else {
					fmt.Fprintf(&b, "<td>%s</td>", e(c))
				}
			}
			b.WriteString("</tr>\n")
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
