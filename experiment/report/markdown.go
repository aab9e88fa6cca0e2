package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Figure is a rendered figure: its file name relative to the report and its
// caption. Write fills PNG (and SVG when the figure is a plot).
type Figure struct {
	Name    string // file name of the PNG, e.g. "figures/grid.png"
	SVG     string // file name of the SVG version, if any
	Caption string
	PNG     []byte
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// WriteMarkdown writes report.md: tables with our accuracies, their Wilson
// 95% intervals and the paper's numbers, the attacks, the figures (linked
// by file name), what is missing, the settings, versions and stage times.
func WriteMarkdown(w io.Writer, r *Results, figs []Figure) error {
	ew := &errWriter{w: w}
	p := func(format string, a ...any) { fmt.Fprintf(ew, format, a...) }
	p("# stl run: %s\n\n", r.Name)
	p("Created %s; wall time %s.\n\n", r.Created.UTC().Format("2006-01-02 15:04 UTC"), fmtSeconds(r.Seconds))
	d := r.Data
	p("Data: **%s**, %d training and %d test images of %dx%dx%d, %d classes.", d.Name, d.Train, d.Test, d.Channels, d.Height, d.Width, d.Classes)
	if d.AttackSubset > 0 && d.AttackSubset < d.Test {
		p(" Adversarial columns use a class-balanced subset of **%d** test images (%d to %d per class, seed %d); the clean column uses all %d.",
			d.AttackSubset, d.PerClassMin, d.PerClassMax, d.AttackSubsetSeed, d.Test)
	}
	if d.WhiteBoxSubsetted() {
		p(" The white-box table and its sanity checks use a class-balanced subset of **%d** of the %d attacked images (%d to %d per class, seed %d).",
			d.WhiteBoxSubset, d.AttackSubset, d.WhiteBoxPerClassMin, d.WhiteBoxPerClassMax, d.AttackSubsetSeed)
	}
	p("\n\n")
	if r.Verdict != nil {
		writeVerdictMarkdown(p, r.Verdict, "##")
	}
	for _, n := range r.Notes {
		p("> %s\n>\n", n)
	}
	if len(r.Notes) > 0 {
		p("\n")
	}
	line := r.Protocol.Line()
	above := func() {
		if line != "" {
			p("%s\n\n", line)
		}
	}
	for _, t := range r.Tables {
		p("## %s\n\n", t.Title)
		above()
		if t.Caption != "" {
			p("%s\n\n", t.Caption)
		}
		p("| Defense | %s |\n|---|%s\n", strings.Join(t.Columns, " | "), strings.Repeat("---|", len(t.Columns)))
		for _, row := range t.Rows {
			cells := make([]string, len(row.Cells))
			for j, c := range row.Cells {
				cells[j] = cellText(c)
				if c.Acc != nil {
					cells[j] = fmt.Sprintf("**%.3f** [%.3f, %.3f]", c.Acc.Value, c.Acc.Lo, c.Acc.Hi)
				}
				if row.Paper != nil && row.Paper[j] != nil {
					cells[j] += fmt.Sprintf(" *(paper %.4f)*", *row.Paper[j])
				}
			}
			p("| %s | %s |\n", mdEscape(row.Defense), strings.Join(cells, " | "))
		}
		p("\n")
		if t.PaperRef != "" {
			p("Accuracy in bold, Wilson 95%% interval in brackets; in italics the paper's %s.\n\n", t.PaperRef)
		} else {
			p("Accuracy in bold, Wilson 95%% interval in brackets.\n\n")
		}
		for _, n := range missingNotes(&t) {
			p("- %s\n", n)
		}
		p("\n")
	}
	if len(r.Attacks) > 0 {
		p("## Attacks on the vanilla classifier\n\n")
		above()
		p("| Attack | Budget | L-inf mean | L-inf max | Normalized L2 mean | Normalized L2 max | Images | Seconds |\n|---|---|---|---|---|---|---|---|\n")
		for _, a := range r.Attacks {
			e := effectiveCells(a)
			p("| %s | %s | %s | %s | %s | %s | %d | %.1f |\n", a.Name, a.Budget, e[0], e[1], e[2], e[3], a.N, a.Seconds)
		}
		p("\n%s\n\n", effectiveNote)
	}
	if len(r.Quality) > 0 {
		p("## Quality and robustness (Figure 6 form)\n\n")
		above()
		p("PSNR of T(x_adv) against x0, and the vanilla classifier's accuracy on T(x0) and T(x_adv).\n\n")
		p("| Defense | Attack | PSNR (dB) | Acc T(x0) | Acc T(x_adv) |\n|---|---|---|---|---|\n")
		for _, q := range r.Quality {
			p("| %s | %s | %.2f | %.3f | %.3f |\n", mdEscape(q.Defense), q.Attack, q.PSNR, q.Clean.Value, q.Adv.Value)
		}
		p("\n")
	}
	if len(r.Sweep) > 0 {
		q := r.Sweep[0]
		p("## Lambda sweep (Figure 5 form)\n\n")
		above()
		p("%s projecting with each sparsity weight lambda, the vanilla classifier on T(x0) and T(x_adv) (%s), and the PSNR of T(x_adv) against x0.\n\n", q.Defense, q.Attack)
		p("| lambda | Acc T(x0) | Acc T(x_adv) | PSNR (dB) |\n|---|---|---|---|\n")
		for _, q := range r.Sweep {
			p("| %g | %.3f [%.3f, %.3f] | %.3f [%.3f, %.3f] | %.2f |\n", q.Lambda, q.Clean.Value, q.Clean.Lo, q.Clean.Hi, q.Adv.Value, q.Adv.Lo, q.Adv.Hi, q.PSNR)
		}
		p("\n")
	}
	if len(figs) > 0 {
		p("## Figures\n\n")
		for _, f := range figs {
			p("![%s](%s)\n\n*%s*", f.Caption, f.Name, f.Caption)
			if f.SVG != "" {
				p(" ([SVG](%s))", f.SVG)
			}
			p("\n\n")
		}
	}
	if len(r.Missing) > 0 {
		p("## Missing\n\n")
		for _, m := range r.Missing {
			p("- **%s**: %s\n", m.What, m.Why)
		}
		p("\n")
	}
	if len(r.Settings) > 0 {
		p("## Settings\n\n| Setting | Value |\n|---|---|\n")
		for _, s := range r.Settings {
			p("| %s | %s |\n", mdEscape(s.Key), mdEscape(s.Value))
		}
		p("\n")
	}
	if len(r.Versions) > 0 {
		p("## Versions\n\n")
		for _, k := range sortedKeys(r.Versions) {
			p("- %s: `%s`\n", k, r.Versions[k])
		}
		p("\n")
	}
	if len(r.Stages) > 0 {
		p("## Stages\n\n| Stage | Seconds | Reused | Key |\n|---|---|---|---|\n")
		for _, s := range r.Stages {
			reused := ""
			if s.Cached {
				reused = "yes"
			}
			p("| %s | %.1f | %s | `%s` |\n", s.Name, s.Seconds, reused, short(s.Key))
		}
		p("\nA reused stage shows the time it took when it was computed.\n")
	}
	return ew.err
}

// effectiveNote explains the effective-distance columns of the attack
// table.
const effectiveNote = "Measured on the adversarial images as the defenses and classifiers saw them (after any 8-bit rounding) against the clean images, over every attacked image: L-infinity max_j |x_adv,j - x0,j| on [0,1] pixels (in 255ths in parentheses) and the normalized L2 dissimilarity ||x_adv - x0|| / ||x0|| (under the guo protocol also on the classifier's normalized tensors, in parentheses)."

// effectiveCells formats an attack's measured distances: L-infinity mean
// and max (with their value in 255ths), normalized L2 mean and max; "—"
// when not measured.
func effectiveCells(a Attack) [4]string {
	e := a.Effective
	if e == nil {
		return [4]string{"—", "—", fmt.Sprintf("%.4f", a.MeanL2), "—"}
	}
	linf := func(v float64) string { return fmt.Sprintf("%.4f (%.2f/255)", v, v*255) }
	l2 := [2]string{fmt.Sprintf("%.4f", e.L2Mean), fmt.Sprintf("%.4f", e.L2Max)}
	if e.L2Z != nil {
		for i := range l2 {
			l2[i] += fmt.Sprintf(" (normalized tensors %.4f)", e.L2Z[i])
		}
	}
	return [4]string{linf(e.LInfMean), linf(e.LInfMax), l2[0], l2[1]}
}

func short(k string) string {
	if len(k) > 12 {
		return k[:12]
	}
	return k
}

func fmtSeconds(s float64) string {
	if s < 90 {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.1f min", s/60)
}

// missingNotes says why cells of t are missing, one line per row when a
// row's missing cells share their reason, else one per cell.
func missingNotes(t *Table) []string {
	var notes []string
	for _, row := range t.Rows {
		var why []string
		var cols []string
		same := true
		for j, c := range row.Cells {
			if c.Acc == nil {
				if len(why) > 0 && c.Missing != why[0] {
					same = false
				}
				why, cols = append(why, c.Missing), append(cols, t.Columns[j])
			}
		}
		switch {
		case len(why) == 0:
		case same && len(why) == len(row.Cells):
			notes = append(notes, fmt.Sprintf("%s: missing, %s", row.Defense, why[0]))
		case same:
			notes = append(notes, fmt.Sprintf("%s, %s: missing, %s", row.Defense, strings.Join(cols, ", "), why[0]))
		default:
			for i := range why {
				notes = append(notes, fmt.Sprintf("%s, %s: missing, %s", row.Defense, cols[i], why[i]))
			}
		}
	}
	return notes
}
