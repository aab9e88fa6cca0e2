package report

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
)

// Files written by `stl verdict`, which combines the results of several
// runs.
const (
	FileVerdictMarkdown = "verdict.md"
	FileVerdictJSON     = "verdict.json"
)

// VerdictFile is what verdict.json holds: one verdict per attack protocol.
type VerdictFile struct {
	Verdicts []Verdict `json:"verdicts"`
}

// signed formats a difference with its sign.
func signed(v float64) string { return fmt.Sprintf("%+.3f", v) }

// Text describes the evidence in one line: the accuracies, the quantity
// with its 95% interval, what the claim needs and the decision.
func (e Evidence) Text() string {
	switch {
	case e.Status == NotRun:
		return fmt.Sprintf("%s: not run (%s)", e.What, e.Missing)
	case e.Estimate == nil:
		return fmt.Sprintf("%s: %s", e.What, e.Status)
	}
	iv := *e.Estimate
	if len(e.Terms) == 1 && e.Terms[0].Sign > 0 {
		return fmt.Sprintf("%s: %.3f [%.3f, %.3f], need %s: %s", e.What, iv.Value, iv.Lo, iv.Hi, e.Need, e.Status)
	}
	var b strings.Builder
	for i, t := range e.Terms {
		switch {
		case t.Sign < 0:
			b.WriteString(" - ")
		case i > 0:
			b.WriteString(" + ")
		}
		fmt.Fprintf(&b, "%.3f", t.Acc.Value)
	}
	return fmt.Sprintf("%s: %s = %s [%s, %s], need %s: %s", e.What, b.String(), signed(iv.Value), signed(iv.Lo), signed(iv.Hi), e.Need, e.Status)
}

// counts summarizes the decisions of v, e.g. "1 holds, 2 inconclusive, 4
// not run".
func (v *Verdict) counts() string {
	n := map[Status]int{}
	for _, c := range v.Claims {
		n[c.Status]++
	}
	var parts []string
	for _, s := range []Status{Holds, DoesNotHold, Inconclusive, NotRun} {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

// runsText describes the runs of v in one sentence.
func (v *Verdict) runsText() string {
	var runs []string
	for _, r := range v.Runs {
		s := fmt.Sprintf("%s (%s, %s, %d training and %d test images", r.Label, r.Data, resolution(Data{Height: r.Height, Width: r.Width}), r.Train, r.Test)
		if r.AttackSubset > 0 && r.AttackSubset < r.Test {
			s += fmt.Sprintf(", %d attacked", r.AttackSubset)
		}
		runs = append(runs, s+")")
	}
	return strings.Join(runs, "; ")
}

// verdictIntro says what a verdict is, for the reports.
const verdictIntro = "Each claim of the paper, decided from our numbers by their 95% intervals: it holds when the whole interval lies inside what the claim needs, " +
	"does not hold when the whole interval lies outside it, and is inconclusive when the interval straddles the edge; a claim whose data the runs do not have is not run. " +
	"Differences of accuracies carry Newcombe's hybrid score interval built from the Wilson intervals; it treats the accuracies as independent, " +
	"which is conservative for accuracies measured on the same images."

// writeVerdictMarkdown writes v as a Markdown section whose headings start
// at level h ("##").
func writeVerdictMarkdown(p func(string, ...any), v *Verdict, h string) {
	p("%s Verdict on the paper's claims (protocol %s)\n\n", h, v.Protocol)
	p("%s\n\nRuns: %s. Decisions: %s.\n\n", verdictIntro, v.runsText(), v.counts())
	multi := len(v.Runs) > 1
	if multi {
		p("| Claim | Run | Verdict | Our numbers (95%% intervals) |\n|---|---|---|---|\n")
	} else {
		p("| Claim | Verdict | Our numbers (95%% intervals) |\n|---|---|---|\n")
	}
	for _, c := range v.Claims {
		var ev []string
		if c.Why != "" {
			ev = append(ev, mdEscape(c.Why))
		}
		if c.Status != NotRun {
			for _, e := range c.Evidence {
				ev = append(ev, mdEscape(e.Text()))
			}
		}
		claim := fmt.Sprintf("(%s) %s", c.ID, mdEscape(c.Statement))
		if multi {
			run := c.Run
			if run == "" {
				run = "all"
			}
			p("| %s | %s | **%s** | %s |\n", claim, mdEscape(run), c.Status, strings.Join(ev, "<br>"))
		} else {
			p("| %s | **%s** | %s |\n", claim, c.Status, strings.Join(ev, "<br>"))
		}
	}
	p("\nSources and decision rules:\n\n")
	for _, c := range firstOfEach(v.Claims) {
		p("- (%s) %s. %s\n", c.ID, c.Source, c.Rule)
	}
	p("\n")
}

// firstOfEach returns the first claim of each ID, for the list of sources
// and rules.
func firstOfEach(claims []Claim) []Claim {
	var out []Claim
	done := map[string]bool{}
	for _, c := range claims {
		if !done[c.ID] {
			done[c.ID] = true
			out = append(out, c)
		}
	}
	return out
}

// WriteVerdictMarkdown writes verdict.md: every verdict of vs, one section
// per protocol.
func WriteVerdictMarkdown(w io.Writer, vs []Verdict) error {
	ew := &errWriter{w: w}
	p := func(format string, a ...any) { fmt.Fprintf(ew, format, a...) }
	p("# Verdict on the claims of Sun et al., CVPR 2019\n\n")
	for i := range vs {
		writeVerdictMarkdown(p, &vs[i], "##")
	}
	return ew.err
}

// WriteVerdictText writes the verdicts as plain text for a terminal: one
// line per claim, with why a claim is not run.
func WriteVerdictText(w io.Writer, vs []Verdict) error {
	ew := &errWriter{w: w}
	for i := range vs {
		writeVerdictText(ew, &vs[i])
	}
	return ew.err
}

func writeVerdictText(w io.Writer, v *Verdict) {
	fmt.Fprintf(w, "Verdict on the paper's claims (protocol %s; 95%% intervals): %s\n", v.Protocol, v.counts())
	for _, c := range v.Claims {
		run := ""
		if len(v.Runs) > 1 && c.Run != "" {
			run = " [" + c.Run + "]"
		}
		fmt.Fprintf(w, "  (%s) %-13s %s%s\n", c.ID, c.Status, c.Statement, run)
		if c.Why != "" {
			fmt.Fprintf(w, "      %s\n", c.Why)
		}
	}
}

// WriteVerdicts writes verdict.json (VerdictFile) and verdict.md for vs
// into dir, each file atomically.
func WriteVerdicts(dir string, vs []Verdict) error {
	for _, f := range []struct {
		name string
		fill func(io.Writer) error
	}{
		{FileVerdictJSON, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(VerdictFile{Verdicts: vs})
		}},
		{FileVerdictMarkdown, func(w io.Writer) error { return WriteVerdictMarkdown(w, vs) }},
	} {
		if err := safefile.Write(filepath.Join(dir, f.name), f.fill); err != nil {
			return fmt.Errorf("report: %s: %w", f.name, err)
		}
	}
	return nil
}
