package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/progress"
)

// evaluateFlags are the options of "stl evaluate".
type evaluateFlags struct {
	load    experiment.AttackOptions
	opts    evaluate.Options
	vanilla bool
	linf    string
	l2      string
	attacks string
	routes  string
	iters   string
	grad    defense.GradientOptions
	cluster string
}

// checksFailed is the error of an evaluation whose automatic checks
// failed: the report is written, and the command exits with exitChecks.
type checksFailed struct{ ids []string }

func (c checksFailed) Error() string {
	return fmt.Sprintf("%d automatic check(s) failed: %s", len(c.ids), strings.Join(c.ids, ", "))
}

// routeNames are the gradient routes through a defense the commands know
// (defense.GradientRoutes: bpda, implicit, unrolled), each built by
// experiment.EvaluationRoute.
func routeNames() []string { return defense.GradientRoutes() }

// parseRoutes builds the routes of a comma-separated list with the
// gradient options g; an unknown route or invalid options are usage errors.
func parseRoutes(list string, g defense.GradientOptions) ([]evaluate.Route, error) {
	names := splitList(list)
	for _, r := range names {
		if !slices.Contains(routeNames(), r) {
			return nil, usagef("--routes: unknown route %q (want %s)", r, orList(routeNames()))
		}
	}
	routes, err := experiment.EvaluationRoutes(names, g)
	if err != nil {
		return nil, usageError{err}
	}
	return routes, nil
}

// gradientFlags adds the exact routes' options (defense.GradientOptions)
// to fl: the implicit route's CG tolerance and iteration cap, the
// unrolled route's K and STL (cluster)'s cluster gradient.
func gradientFlags(fl *pflag.FlagSet, g *defense.GradientOptions, cluster *string) {
	d := defense.GradientOptions{}.Effective()
	fl.Float64Var(&g.CGTol, "cg-tol", d.CGTol, "implicit route: conjugate-gradient stopping tolerance, relative to the gradient projected on the support")
	fl.IntVar(&g.CGMaxIter, "cg-max-iter", d.CGMaxIter, "implicit route: conjugate-gradient iterations per image at most (reaching it keeps the partial solution)")
	fl.IntVar(&g.Iterations, "unroll-iterations", d.Iterations, "unrolled route: ADMM iterations K differentiated (0: the forward run's own, its stopping rule included)")
	fl.StringVar(cluster, "cluster-gradient", string(d.Cluster), "STL (cluster), exact routes: vote (through the voted cluster's dictionary) or eot (share-weighted over the neighbours' clusters)")
}

// checkGradient completes g from the cluster flag and validates it.
func checkGradient(g *defense.GradientOptions, cluster string) error {
	g.Cluster = defense.ClusterGradient(cluster)
	if err := g.Validate(); err != nil {
		return usageError{err}
	}
	return nil
}

func init() { rootCmd.AddCommand(newEvaluateCmd()) }

func newEvaluateCmd() *cobra.Command {
	f := evaluateFlags{opts: evaluate.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "evaluate --model DIR (--defense DIR|NAME | --vanilla) --out DIR",
		Short: "Adaptive robustness evaluation of a classifier, alone or behind a defense",
		Long: `evaluate runs an adaptive attack suite on a classifier behind a defense (a
defense directory of 'stl defense train', or a baseline by name) or, with
--vanilla, on the classifier alone: PGD (cross-entropy and CW margin loss) and
APGD (cross-entropy, DLR, targeted DLR, CW margin) through each gradient route of the
defense (--routes), Square (queries only), transfer from the undefended
classifier and a random-noise control, at each budget, on a class-balanced
seeded subset of the test images. The undefended classifier gets the same
suite, as the base the defense must not weaken.

It reports each attack's robust accuracy with its Wilson 95% interval, the
per-image worst case over every attack, and the automatic checks (zero or
vanishing gradients; Square, transfer or noise beating the gradient attacks;
more iterations helping the defense; accuracy not reaching 0 at L-inf 0.25; an
unbounded attack not reaching 100%; the defense weakening its base classifier)
into --out: report.md, report.html and report.json. Finished attacks are kept
in --out/attacks, so that an interrupted or repeated evaluation resumes.

Exit status: 0 when every check passed, 3 when the evaluation ran and a check
failed (so that it can gate CI), 1 on an error, 2 on a usage error, 130 when
interrupted. See docs/evaluate.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return runEvaluate(cmd.Context(), f, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	d, l := evaluate.DefaultOptions(), &f.load
	fl := cmd.Flags()
	fl.StringVar(&l.Model, "model", "", usageAnyModel+" (required)")
	fl.StringVar(&l.Defense, "defense", "", "a defense directory or a baseline ("+strings.Join(baseline.Names(), ", ")+")")
	fl.BoolVar(&f.vanilla, "vanilla", false, "evaluate the classifier alone, without a defense")
	fl.BoolVar(&l.Universal, "universal", false, "with a defense directory: its universal dictionary (STL) instead of the per-cluster ones (STL (cluster))")
	fl.StringVar(&l.Data, "data", "", "data set (see 'stl data'); default "+dataset.DefaultSpec)
	fl.IntVar(&l.N, "n", 100, "evaluate a class-balanced subset of this many test images (0: all)")
	fl.Int64Var(&l.SubsetSeed, "subset-seed", 1, "seed of the class-balanced subset")
	fl.StringVar(&f.linf, "linf", "8/255", "L-infinity budget, a number or a fraction such as 8/255 (\"\" for none)")
	fl.StringVar(&f.l2, "l2", "", "normalized L2 dissimilarity budget ||x'-x||/||x|| (\"\" for none), e.g. 0.04")
	fl.StringVar(&f.attacks, "attacks", strings.Join(d.Attacks, ","), "attacks of the suite, comma-separated: "+strings.Join(evaluate.AttackNames, ", "))
	fl.StringVar(&f.routes, "routes", "bpda", "gradient routes through the defense, comma-separated: "+strings.Join(routeNames(), ", "))
	gradientFlags(fl, &f.grad, &f.cluster)
	o := &f.opts
	fl.IntVar(&o.PGDSteps, "pgd-steps", d.PGDSteps, "PGD iterations")
	fl.StringVar(&f.iters, "iteration-steps", "1,5", "iterations check: PGD iteration counts compared with --pgd-steps (those not below it are dropped)")
	fl.IntVar(&o.APGDSteps, "apgd-steps", d.APGDSteps, "APGD iterations")
	fl.IntVar(&o.Restarts, "restarts", d.Restarts, "random restarts of PGD and APGD")
	fl.IntVar(&o.TargetClasses, "target-classes", d.TargetClasses, "APGD-T's target classes")
	fl.IntVar(&o.SquareQueries, "queries", d.SquareQueries, "Square's queries per image")
	fl.Float64Var(&o.SquarePInit, "p-init", d.SquarePInit, "Square's initial square fraction")
	fl.IntVar(&o.SquareImages, "square-n", 0, "run Square on a class-balanced subset of this many of the images (0: all)")
	fl.IntVar(&o.EOTDraws, "eot", d.EOTDraws, "gradient draws averaged through a randomized defense (EOT)")
	fl.IntVar(&o.EvalDraws, "eval-draws", d.EvalDraws, "evaluations of each image through a randomized defense; an image counts only when every one is correct")
	fl.BoolVar(&o.Round8, "round8", false, "round every adversarial image to 8 bits (k/255, clipped to the budget's ball in 8-bit steps) before the defense and classifier judge it, as an image file stores it")
	fl.BoolVar(&o.WarmStart, "warm-start", false, "start each projection of an attack through STL or STL (cluster) from the previous query's state of the same image (faster; results within the projection's tolerance)")
	fl.BoolVar(&o.Cascade, "cascade", false, "attack only the images every earlier attack left correct (cheaper; rows become cumulative)")
	fl.Uint64Var(&o.Seed, "seed", d.Seed, "seed of every random choice")
	fl.IntVar(&o.Batch, "batch", d.Batch, "images per attack batch")
	fl.IntVar(&l.Threads, "threads", 0, "classifier threads (0: as saved)")
	fl.StringVar(&l.Out, "out", "", "output directory: report.md, report.html, report.json and the attack cache (required)")
	fl.StringVar(&l.BaselineDir, "baseline-dir", "", "cache of what the baselines learn, as for 'stl attack' (default: 'baselines' beside --out)")
	fl.IntVar(&l.BaselineTrain, "baseline-train", 0, "train learning baselines on a class-balanced subset of this many training images (0: all)")
	fl.IntVar(&l.MagNetEpochs, "magnet-epochs", experiment.DefaultAttackOptions().MagNetEpochs, "magnet: auto-encoder training epochs")
	fl.IntVar(&l.QuiltPatches, "quilt-patches", experiment.DefaultAttackOptions().QuiltPatches, "quilting: patches kept in the database (0: all)")
	th, dt := &o.Thresholds, d.Thresholds
	for _, t := range []struct {
		name  string
		v     *float64
		def   float64
		usage string
	}{
		{"vanish-ratio", &th.VanishRatio, dt.VanishRatio, "gradient check: a gradient below this ratio to the undefended classifier's vanishes"},
		{"vanish-frac", &th.VanishFrac, dt.VanishFrac, "gradient check: fraction of images whose gradient may vanish"},
		{"beat-frac", &th.BeatFrac, dt.BeatFrac, "Square, transfer and noise checks: fraction of the gradient attacks' robust images they may break"},
		{"iter-tol", &th.IterTol, dt.IterTol, "iterations check: accuracy more PGD iterations may gain"},
		{"large-eps", &th.LargeEps, dt.LargeEps, "large-budget check: its L-infinity budget"},
		{"large-max-acc", &th.LargeMaxAcc, dt.LargeMaxAcc, "large-budget check: accuracy allowed at that budget"},
		{"unbounded-min-success", &th.UnboundedMinSuccess, dt.UnboundedMinSuccess, "unbounded check: success rate required at L-infinity 1"},
		{"weaken-tol", &th.WeakenTol, dt.WeakenTol, "weakening checks: accuracy the defense may lose against its base classifier"},
	} {
		fl.Float64Var(t.v, t.name, t.def, t.usage)
	}
	return cmd
}

// parseEps parses a budget: a number, or a fraction "a/b".
func parseEps(s string) (float64, error) {
	num, den, frac := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(num, 64)
	if err == nil && frac {
		var d float64
		if d, err = strconv.ParseFloat(den, 64); err == nil {
			v /= d
		}
	}
	if err != nil || !(v > 0 && v <= 1) {
		return 0, fmt.Errorf("budget %q: want a number or fraction in (0, 1]", s)
	}
	return v, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// check validates the flags and completes f.opts from them.
func (f *evaluateFlags) check() error {
	l := &f.load
	switch {
	case l.Model == "":
		return usagef("--model is required")
	case l.Out == "":
		return usagef("--out is required")
	case l.Defense == "" && !f.vanilla:
		return usagef("give --defense DIR|NAME, or --vanilla to evaluate the classifier alone")
	case l.Defense != "" && f.vanilla:
		return usagef("--defense and --vanilla exclude each other")
	case l.Universal && l.Defense == "":
		return usagef("--universal takes the universal dictionary of --defense DIR (STL)")
	case l.N < 0 || l.Threads < 0 || l.BaselineTrain < 0:
		return usagef("--n, --threads and --baseline-train must be >= 0")
	}
	l.Split = "test"
	o := &f.opts
	o.Budgets = nil
	for _, b := range []struct {
		flag, v string
		norm    attack.Norm
	}{{"--linf", f.linf, attack.LInf}, {"--l2", f.l2, attack.L2Rel}} {
		if b.v == "" {
			continue
		}
		eps, err := parseEps(b.v)
		if err != nil {
			return usagef("%s: %v", b.flag, err)
		}
		o.Budgets = append(o.Budgets, attack.Budget{Norm: b.norm, Eps: eps})
	}
	o.Attacks = splitList(f.attacks)
	if err := checkGradient(&f.grad, f.cluster); err != nil {
		return err
	}
	if _, err := parseRoutes(f.routes, f.grad); err != nil {
		return err
	}
	o.IterationSteps = nil
	for _, v := range splitList(f.iters) {
		st, err := strconv.Atoi(v)
		if err != nil || st < 1 {
			return usagef("--iteration-steps: %q is not a positive number", v)
		}
		if st < o.PGDSteps {
			o.IterationSteps = append(o.IterationSteps, st)
		}
	}
	if err := o.Validate(); err != nil {
		return usageError{err}
	}
	return checkOutput("--out", l.Out) // its parent must exist and be writable
}

// runEvaluate loads the inputs, runs the evaluation and writes its reports;
// it returns checksFailed when a check failed.
func runEvaluate(ctx context.Context, f evaluateFlags, stdout io.Writer, bar progress.Reporter) error {
	if err := os.MkdirAll(f.load.Out, 0o755); err != nil {
		return err
	}
	if f.load.Data == "" {
		fmt.Fprintf(stdout, "no --data given: using the embedded sample %s\n", dataset.DefaultSpec)
	}
	in, err := experiment.LoadEvaluation(ctx, f.load, bar)
	if err != nil {
		return defenseError(err)
	}
	printLearned(stdout, in.Learned)
	t := evaluate.Target{Model: in.Model, ModelName: f.load.Model, NewDefense: in.NewDefense, DefenseName: in.DefenseName}
	if in.NewDefense != nil {
		if t.Routes, err = parseRoutes(f.routes, f.grad); err != nil {
			return err
		}
	}
	o := f.opts
	o.Dir, o.Key, o.Progress = filepath.Join(f.load.Out, "attacks"), in.Key, bar
	fmt.Fprintf(stdout, "evaluating %s on %d images of %s\n", describeTarget(t), in.Set.Len(), in.Set.Name)
	rep, err := evaluate.Run(ctx, t, in.Set.Images, in.Set.Labels, o)
	if err != nil {
		return err
	}
	m := thisMachine()
	rep.Environment = map[string]string{"cpu": m.CPU, "kernels": m.Libraries, "data": in.Set.Name}
	for _, w := range []struct {
		name  string
		write func(io.Writer, *evaluate.Report) error
	}{{"report.md", evaluate.WriteMarkdown}, {"report.html", evaluate.WriteHTML}, {"report.json", evaluate.WriteJSON}} {
		if err := safefile.Write(filepath.Join(f.load.Out, w.name), func(out io.Writer) error { return w.write(out, rep) }); err != nil {
			return err
		}
	}
	printEvaluation(stdout, rep)
	fmt.Fprintf(stdout, "wrote %s (report.md, report.html, report.json)\n", f.load.Out)
	if failed := rep.Failed(); len(failed) > 0 {
		var ids []string
		for _, c := range failed {
			ids = append(ids, c.ID)
		}
		return checksFailed{ids: ids}
	}
	return nil
}

func describeTarget(t evaluate.Target) string {
	if t.NewDefense == nil {
		return t.ModelName + " (no defense)"
	}
	var routes []string
	for _, r := range t.Routes {
		routes = append(routes, r.Name)
	}
	return fmt.Sprintf("%s in front of %s (routes %s)", t.DefenseName, t.ModelName, strings.Join(routes, ", "))
}

// printEvaluation prints the summary: accuracies per budget and the checks.
func printEvaluation(w io.Writer, rep *evaluate.Report) {
	fmt.Fprintf(w, "clean accuracy: %s", rep.Clean)
	if rep.CleanDefended != nil {
		fmt.Fprintf(w, " undefended, %s defended", rep.CleanDefended)
	}
	fmt.Fprintln(w)
	for _, b := range rep.Budgets {
		fmt.Fprintf(w, "%s:\n", evaluate.BudgetLabel(b.Budget))
		for _, a := range b.Attacks {
			fmt.Fprintf(w, "  %-10s %-32s %.4f  (%d/%d broken, %.1f s)\n", a.Subject, a.Label(), a.Accuracy.Value, a.Broken, a.Attacked, a.Seconds)
		}
		fmt.Fprintf(w, "  worst case over every attack: %s\n", b.Worst)
	}
	for _, c := range rep.Checks {
		budget := ""
		if c.Budget != "" {
			budget = " [" + c.Budget + "]"
		}
		fmt.Fprintf(w, "check %-8s %s%s: %s\n", c.Status, c.Title, budget, c.Detail)
	}
	fmt.Fprintf(w, "total time %.1f s\n", rep.Seconds)
}
