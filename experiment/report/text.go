package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// cellText formats a cell as "0.862 [0.840, 0.881]", or "—" with the reason
// kept for the notes.
func cellText(c Cell) string {
	if c.Acc == nil {
		return "—"
	}
	return fmt.Sprintf("%.3f [%.3f, %.3f]", c.Acc.Value, c.Acc.Lo, c.Acc.Hi)
}

func paperText(p *float64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%.4f", *p)
}

// WriteText writes the tables, the attack summary and what is missing as
// aligned plain text, for a terminal.
func WriteText(w io.Writer, r *Results) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "Run %s: %s, %d train / %d test images, %dx%dx%d\n", r.Name, r.Data.Name, r.Data.Train, r.Data.Test, r.Data.Channels, r.Data.Height, r.Data.Width)
	if r.Data.AttackSubset > 0 && r.Data.AttackSubset < r.Data.Test {
		fmt.Fprintf(ew, "Adversarial columns use a class-balanced subset of %d test images (%d-%d per class, seed %d).\n",
			r.Data.AttackSubset, r.Data.PerClassMin, r.Data.PerClassMax, r.Data.AttackSubsetSeed)
	}
	if d := r.Data; d.WhiteBoxSubsetted() {
		fmt.Fprintf(ew, "The white-box table and its sanity checks use a class-balanced subset of %d of the %d attacked images (%d-%d per class, seed %d).\n",
			d.WhiteBoxSubset, d.AttackSubset, d.WhiteBoxPerClassMin, d.WhiteBoxPerClassMax, d.AttackSubsetSeed)
	}
	if v := r.VanillaModel; v != nil {
		fmt.Fprintf(ew, "Vanilla classifier loaded from %s: %s\n", v.Dir, VanillaSummary(v))
	}
	if line := r.Protocol.Line(); line != "" {
		fmt.Fprintf(ew, "%s\n", line)
	}
	if r.Verdict != nil {
		fmt.Fprintln(ew)
		writeVerdictText(ew, r.Verdict)
	}
	for _, t := range r.Tables {
		fmt.Fprintf(ew, "\n%s\n", t.Title)
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Defense\t%s\n", strings.Join(t.Columns, "\t"))
		for _, row := range t.Rows {
			cells := make([]string, len(row.Cells))
			for j, c := range row.Cells {
				cells[j] = cellText(c)
			}
			fmt.Fprintf(tw, "%s\t%s\n", row.Defense, strings.Join(cells, "\t"))
			if row.Paper != nil {
				ps := make([]string, len(row.Paper))
				for j, p := range row.Paper {
					ps[j] = paperText(p)
				}
				fmt.Fprintf(tw, "  paper\t%s\n", strings.Join(ps, "\t"))
			}
		}
		tw.Flush()
		if t.PaperRef != "" {
			fmt.Fprintf(ew, "(accuracy [Wilson 95%% interval]; \"paper\": %s of Sun et al. 2019)\n", t.PaperRef)
		}
	}
	if len(r.Attacks) > 0 {
		fmt.Fprintf(ew, "\nAttacks on the vanilla classifier\n")
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "Attack\tBudget\tL-inf mean\tL-inf max\tL2 mean\tL2 max\tImages\tSeconds\n")
		for _, a := range r.Attacks {
			e := effectiveCells(a)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f\n", a.Name, a.Budget, e[0], e[1], e[2], e[3], a.N, a.Seconds)
		}
		tw.Flush()
	}
	if len(r.Missing) > 0 {
		fmt.Fprintf(ew, "\nMissing\n")
		for _, m := range r.Missing {
			fmt.Fprintf(ew, "  - %s: %s\n", m.What, m.Why)
		}
	}
	return ew.err
}

// VanillaSummary describes a loaded vanilla classifier in one sentence:
// what it records about its training and its weights' SHA-256.
func VanillaSummary(v *VanillaModel) string {
	s := v.Arch
	if v.Epochs > 0 {
		s += fmt.Sprintf(", %d epochs", v.Epochs)
	}
	if v.Dataset != "" || v.TrainImages > 0 {
		s += fmt.Sprintf(" on %q (%d images)", v.Dataset, v.TrainImages)
	}
	if v.Dropout > 0 {
		s += fmt.Sprintf(", dropout %g", v.Dropout)
	}
	if v.TestAccuracy > 0 {
		s += fmt.Sprintf(", recorded test accuracy %.4f", v.TestAccuracy)
	} else {
		s += ", no recorded test accuracy"
	}
	return s + fmt.Sprintf("; %s SHA-256 %s.", v.WeightsFile, v.WeightsSHA256)
}

// errWriter remembers the first write error so that rendering code can
// write freely and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	if _, err := e.w.Write(p); err != nil {
		e.err = err
	}
	return len(p), nil
}
