package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/experiment/report"
)

// verdictOptions are the flags of `stl verdict`.
type verdictOptions struct {
	out string
}

func init() { rootCmd.AddCommand(newVerdictCmd()) }

func newVerdictCmd() *cobra.Command {
	o := &verdictOptions{}
	cmd := &cobra.Command{
		Use:   "verdict RUN...",
		Short: "Decide the paper's claims from the results of one or more runs",
		Long: `verdict reads the results.json of each RUN (a run directory of stl run, or the
file itself) and decides each claim of the paper from the runs' numbers and
their 95% intervals: holds, does not hold, inconclusive, or not run when no run
has the data. Runs are grouped by attack protocol; each run decides the claims
its own tables decide, and runs of one protocol at different resolutions
(e.g. a 32 px and a 64 px run) decide the claim that robustness holds across
resolutions. It writes verdict.md and verdict.json into --out and prints a
summary, then per protocol a compact Markdown table for a README: each claim,
our numbers (the comparison that decides it, with its 95% interval), the
paper's numbers and the decision. stl run puts the verdict of its own results
at the top of its report.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerdict(args, o.out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.out, "out", ".", "directory to write verdict.md and verdict.json into")
	return cmd
}

func runVerdict(args []string, out string, stdout io.Writer) error {
	if err := checkOutput("--out", filepath.Join(out, report.FileVerdictJSON)); err != nil {
		return err
	}
	var runs []report.RunInput
	for _, a := range args {
		path, label := a, filepath.Clean(a)
		if st, err := os.Stat(a); err == nil && st.IsDir() {
			path = filepath.Join(a, report.FileJSON)
		} else {
			label = filepath.Dir(label)
		}
		r, err := report.ReadResults(path)
		if errors.Is(err, fs.ErrNotExist) {
			return usagef("%s: no results.json (want a run directory of stl run or its results.json)", a)
		}
		if err != nil {
			return err
		}
		runs = append(runs, report.RunInput{Label: label, Results: r})
	}
	vs := report.Verdicts(runs)
	if err := report.WriteVerdicts(out, vs); err != nil {
		return err
	}
	if err := report.WriteVerdictText(stdout, vs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nFor the README (Markdown, one table per protocol):\n\n")
	if err := report.WriteVerdictReadme(stdout, vs); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "\nVerdict: %s\n", filepath.Join(out, report.FileVerdictMarkdown))
	return err
}
