package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/internal/cli"
	"github.com/stl-defense/stl/progress"
)

// runOptions are the flags of `stl run`, shared with `stl-beam run`
// (cli.RunFlags).
type runOptions struct{ cli.RunFlags }

func init() { rootCmd.AddCommand(newRunCmd()) }

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Train, attack, defend and report: the paper's evaluation end to end",
		Long: `run trains the vanilla classifier, builds the STL defense, projects the data sets,
retrains a classifier on each defense's output, attacks the vanilla classifier
(FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW) and reports the paper's Table 1 and
Table 5 forms with every baseline, in report.md, report.html, results.json and
results.csv under --out.

With no flags it runs on the CIFAR-10 sample shipped in the repository. Every
stage is cached in the output directory: run the same command again after an
interruption to resume; change a setting and only what depends on it is
recomputed. --config reads every setting from a YAML or JSON file (field names
as in results.json); flags given on the command line override it.

--whitebox adds the white-box Table 4 form and its sanity checks;
--whitebox-losses ce,cw (the default) attacks with PGD on the cross-entropy and
on the Carlini-Wagner margin loss, one column each (the sanity checks use the
cross-entropy); --whitebox-subset N runs both on a class-balanced subset of N
attacked images and --sanity-baselines runs the sanity checks on the baselines
too. --whitebox-suite ATTACKS (names of stl evaluate's suite, or all) adds the
adaptive suite of stl evaluate on every white-box row, one column per attack
and route (--whitebox-suite-routes) and the per-image worst case, its
automatic checks in the notes (see docs/run.md).

--vanilla MODEL evaluates the defenses in front of a classifier trained
beforehand instead of training one: a model directory of stl train
classifier, an ONNX file or PyTorch weights (ARCH:FILE.safetensors); its input
size and classes must match the data (after --resolution), and replacing its
weights recomputes the attacks and everything after them. The run retrains
classifiers on the defenses' images (Table 1) only in front of a model
directory: an ONNX file's or PyTorch weights' architecture is not one the run
trains, so there the defenses' Table 1 rows say "not retrained" and
--retrain-baselines and --adv-train are refused (see docs/run.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.resolve(cmd)
			if err != nil {
				return err
			}
			return runRun(cmd.Context(), cfg, o.RunDir(cfg))
		},
	}
	f := cmd.Flags()
	o.Register(f, f.StringSliceVar)
	runOpts[cmd] = o
	return cmd
}

// runOpts maps each run command to its options, for tests.
var runOpts = map[*cobra.Command]*runOptions{}

// configFlags are the flags that set Config fields (cli.ConfigFlags).
var configFlags = cli.ConfigFlags

// resolve merges, in increasing priority, the defaults, the --config file
// and the flags given on the command line (cli.RunFlags.Resolve).
func (o *runOptions) resolve(cmd *cobra.Command) (experiment.Config, error) {
	cfg, err := o.Resolve(cmd.Flags().Changed)
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// runName derives a run name from a data spec (cli.RunName).
func runName(data string) string { return cli.RunName(data) }

func runRun(ctx context.Context, cfg experiment.Config, out string) error {
	bar := progress.NewBar(os.Stderr)
	res, err := experiment.Run(ctx, cfg, out, bar)
	if err != nil {
		return err
	}
	if err := report.WriteText(os.Stdout, res); err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "\nReport: %s\n", filepath.Join(out, report.FileHTML))
	return nil
}
