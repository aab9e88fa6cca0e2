package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/progress"
)

// attackFlags are the options of "stl attack": the run's options and the
// attack's.
type attackFlags struct {
	opts            experiment.AttackOptions
	method          string
	norm            string
	budget          float64
	steps           int
	stepFrac        float64
	seed            uint64
	restarts        int
	noRandomStart   bool
	overshoot       float64
	maxIter         int
	candidates      int
	kappa, initialC float64
	cwOvershoot     float64
	binarySteps     int
	lr              float64
	loss            string
	queries         int
	pInit           float64
	// The universal perturbation's (--attack uap) and the strength
	// search's (--target-dissimilarity) options.
	uap    experiment.UAPJobOptions
	search attack.SearchOptions
}

// methodUAP is the --attack name of the universal adversarial
// perturbation, fitted on training images (experiment.AttackJob.FitUniversal)
// rather than built from the attack registry.
const methodUAP = "uap"

// uapParams are the flags of --attack uap alone; --max-iter and
// --candidates set its DeepFool steps.
var uapParams = []string{"fit-images", "fit-seed", "fooling-rate", "max-passes", "uap"}

// attackNames lists what --attack takes.
func attackNames() []string { return append(attack.MethodNames(), methodUAP) }

func init() { rootCmd.AddCommand(newAttackCmd()) }

// newAttackCmd returns a fresh "attack" command with its own flag values.
func newAttackCmd() *cobra.Command {
	var f attackFlags
	cmd := &cobra.Command{
		Use:   "attack --model DIR --attack " + strings.Join(attackNames(), "|") + " --out DIR",
		Short: "Compute adversarial examples against a classifier and save them",
		Long: `attack computes adversarial examples of a data set's test images against a
trained classifier (gray-box: on the vanilla classifier, as in the paper's
section 5.1) or, with --defense and --bpda, through a defense (white-box BPDA,
with EOT over randomized defenses, as in the paper's Table 4).

Budgets are the paper's normalized L2 dissimilarity ||x_adv-x0||/||x0||
(--norm l2), the same on the classifier's mean/std-normalized tensors (--norm
l2z, Guo et al.'s measure) or an L-infinity bound (--norm linf). Defaults are
the paper's: FGSM, BIM, DeepFool and CW at dissimilarity 0.04 (use --budget
0.08 for FGSM-0.08), PGD at L-infinity 0.031.

--attack uap fits one universal perturbation (Moosavi-Dezfooli et al. 2017)
on a class-balanced subset of --fit-images training images and adds it to
every attacked image; it is saved beside the set as uap.npy (and uap.json), and
--uap PATH reuses a saved one instead of fitting (scaled to --budget when
given). Its budget defaults to the
average normalized L2 dissimilarity 0.06 of the paper's Table 3.

--target-dissimilarity T searches the attack's strength (the budget; DeepFool's
and CW's overshoot, with their cap lifted) so that the average normalized
L2 dissimilarity on the classifier's normalized tensors over the attacked
images is T (the paper's Table 3: 0.06), within --target-tolerance; the
strength found, the average reached and every probe are saved as search.json.

--protocol reads those budgets as stl run reads its columns (see
docs/attack.md): under release, FGSM at --budget 0.08 and 0.04 is one
L-infinity sign step of 8/255 and 4/255 and BIM at 0.04 L-infinity 4/255 in 5
steps of 1/255 (other normalized L2 budgets of FGSM and BIM are refused: give
them with --norm linf), and every adversarial image is rounded to 8 bits; under
guo a normalized L2 budget is measured on the classifier's mean/std-normalized
tensors. --round8 rounds under any protocol. Both are recorded in meta.json,
and an interrupted run resumes only under the same ones.

The set is written to the --out directory as adv.npy (float32, bit-exact),
labels.npy and meta.json (per-image dissimilarity and L-infinity reached,
predictions, success flags); see the attack package documentation. "stl defend
--in DIR" projects such a set, keeping its labels.

The baselines quilt, tvm-quilt, crop-tvm-quilt (a patch database) and magnet (a
denoising auto-encoder) learn from the data set's clean training images; what
they learn is cached in --baseline-dir and reused by later attacks on the same
training images.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(cmd); err != nil {
				return err
			}
			return runAttack(cmd.Context(), f, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	d, ad := experiment.DefaultAttackOptions(), attack.DefaultConfig()
	o := &f.opts
	fl := cmd.Flags()
	fl.StringVar(&o.Model, "model", "", usageAnyModel+" (required)")
	fl.StringVar(&o.Data, "data", "", "data set (see 'stl data'); default "+dataset.DefaultSpec)
	fl.StringVar(&o.Split, "split", d.Split, "which part of the data set to attack: test or train")
	fl.IntVar(&o.N, "n", 0, "attack a class-balanced subset of this many images (0: all)")
	fl.Int64Var(&o.SubsetSeed, "subset-seed", 1, "seed of the class-balanced subset")
	fl.Var(shardFlag{&o.Shard}, "shard", "attack only part i of n (0-based, e.g. 3/8), cut at --batch boundaries, for array jobs; the parts' sets concatenated in order equal one run's (deterministic defenses)")
	fl.StringVar(&f.method, "attack", "fgsm", "attack: "+orList(attackNames()))
	fl.StringVar(&f.norm, "norm", "", "budget norm: l2 (normalized dissimilarity), l2z (the same on the classifier's normalized tensors) or linf; default the attack's")
	fl.Float64Var(&f.budget, "budget", 0, "budget in (0,1]; default the attack's (0.04; pgd, apgd, square: L-inf 0.031)")
	fl.IntVar(&f.steps, "steps", 0, "bim, pgd, apgd: iterations (default 10, 20, 100)")
	fl.Float64Var(&f.stepFrac, "step-frac", 0, "bim, pgd: step size as a fraction of the budget (default 0.125, 0.1)")
	fl.Uint64Var(&f.seed, "seed", ad.PGD.Seed, "pgd, apgd: seed of the random start; square: seed of its random squares")
	fl.BoolVar(&f.noRandomStart, "no-random-start", false, "pgd: start at the clean image")
	fl.IntVar(&f.restarts, "restarts", ad.PGD.Restarts, "pgd, apgd: runs from independent random starts")
	fl.StringVar(&f.loss, "loss", string(ad.APGD.Loss), "apgd: ce (cross-entropy), dlr (difference of logits ratio), dlr-t (targeted DLR over the top classes, AutoAttack's APGD-T) or cw (Carlini-Wagner margin, APGD-CW)")
	fl.IntVar(&f.queries, "queries", ad.Square.MaxQueries, "square: model queries per image")
	fl.Float64Var(&f.pInit, "p-init", ad.Square.PInit, "square: initial fraction of the image a square covers")
	fl.Float64Var(&f.overshoot, "overshoot", ad.DeepFool.Overshoot, "deepfool: overshoot")
	fl.IntVar(&f.maxIter, "max-iter", 0, "deepfool, cw: iterations (default 50, 1000)")
	fl.IntVar(&f.candidates, "candidates", ad.DeepFool.Candidates, "deepfool: classes considered (0: all)")
	fl.Float64Var(&f.kappa, "kappa", ad.CW.Kappa, "cw: confidence margin")
	fl.Float64Var(&f.cwOvershoot, "cw-overshoot", ad.CW.Overshoot, "cw: multiply the perturbation found by 1+this (the strength --target-dissimilarity sets)")
	fl.Float64Var(&f.initialC, "initial-c", ad.CW.InitialC, "cw: initial trade-off constant")
	fl.IntVar(&f.binarySteps, "binary-steps", ad.CW.BinarySteps, "cw: binary search steps over c")
	fl.Float64Var(&f.lr, "lr", ad.CW.LearningRate, "cw: Adam learning rate")
	u := experiment.DefaultUAPJobOptions()
	fl.IntVar(&f.uap.FitImages, "fit-images", u.FitImages, "uap: training images the perturbation is fitted on, a class-balanced subset seeded by --fit-seed (0: all)")
	fl.Int64Var(&f.uap.FitSeed, "fit-seed", u.FitSeed, "uap: seed of the fitting subset and of the order the fit visits it in")
	fl.Float64Var(&f.uap.UAP.FoolingRate, "fooling-rate", u.UAP.FoolingRate, "uap: stop fitting once this fraction of the fitting images is fooled")
	fl.IntVar(&f.uap.UAP.MaxPasses, "max-passes", u.UAP.MaxPasses, "uap: passes over the fitting images at most")
	fl.StringVar(&f.uap.From, "uap", "", "uap: reuse the perturbation saved by an earlier run (its uap.npy, or its --out directory) instead of fitting one")
	s := attack.DefaultSearchOptions()
	fl.Float64Var(&f.search.Target, "target-dissimilarity", 0, "search the attack's strength so that the average normalized L2 dissimilarity on the classifier's normalized tensors is this (the paper's Table 3: 0.06; 0: off)")
	fl.Float64Var(&f.search.Tolerance, "target-tolerance", 0, "with --target-dissimilarity: how far from it the average may end (0: 1% of it)")
	fl.IntVar(&f.search.MaxProbes, "max-probes", s.MaxProbes, "with --target-dissimilarity: attack runs the search makes at most")
	fl.StringVar((*string)(&o.Protocol), flagProtocol, "", usageProtocol)
	fl.BoolVar(&o.Round8, flagRound8, false, usageRound8)
	fl.BoolVar(&o.Targeted, "targeted", false, "targeted attack towards class (label+1) mod K (not deepfool)")
	fl.StringVar(&o.Defense, "defense", "", "a defense directory or a baseline ("+strings.Join(baseline.Names(), ", ")+"); evaluated on the adversarial set, attacked through with --bpda")
	fl.BoolVar(&o.BPDA, "bpda", false, "attack through the defense with BPDA (identity backward pass)")
	fl.IntVar(&o.EOT, "eot", d.EOT, "with --bpda on a randomized defense: gradient draws averaged (EOT)")
	fl.IntVar(&o.Batch, "batch", d.Batch, "images per attack batch")
	fl.IntVar(&o.Threads, "threads", 0, "classifier threads (0: as saved)")
	fl.StringVar(&o.Out, "out", "", "output directory of the adversarial set (required)")
	fl.StringVar(&o.BaselineDir, "baseline-dir", "", "cache of the patch database and auto-encoder of --defense "+joinList(learningBaselines(), "and")+", one subfolder per training set (default: 'baselines' beside --out)")
	fl.IntVar(&o.BaselineTrain, "baseline-train", 0, "train those baselines on a class-balanced subset of this many training images, seeded by --subset-seed (0: all)")
	fl.IntVar(&o.MagNetEpochs, "magnet-epochs", d.MagNetEpochs, "magnet: auto-encoder training epochs")
	fl.IntVar(&o.QuiltPatches, "quilt-patches", d.QuiltPatches, "quilting: patches kept in the database (0: all; the search costs time linear in it)")
	return cmd
}

// learningBaselines names the baselines that learn from clean training
// images.
func learningBaselines() []string {
	var names []string
	for _, e := range baseline.Entries() {
		if e.Learns() {
			names = append(names, e.Name)
		}
	}
	return names
}

// check validates the flags that need no file.
func (f *attackFlags) check(cmd *cobra.Command) error {
	o := f.opts
	if o.Model == "" {
		return usagef("--model is required")
	}
	if o.Out == "" {
		return usagef("--out is required")
	}
	var params []string
	if f.method == methodUAP {
		params = append(uapParams, "max-iter", "candidates")
	} else {
		m, err := attack.LookupMethod(f.method)
		if err != nil {
			return usagef("--attack %q: want %s", f.method, orList(attackNames()))
		}
		params = m.Params
	}
	for _, names := range [][]string{uapParams, allParams()} {
		for _, name := range names {
			if cmd.Flags().Changed(name) && !slices.Contains(params, name) {
				return usagef("--%s does not apply to --attack %s", name, f.method)
			}
		}
	}
	if f.search.Target != 0 {
		if err := f.search.Validate(); err != nil {
			return usagef("--target-dissimilarity: %v", err)
		}
		if o.BPDA || !o.Shard.Whole() {
			return usagef("--target-dissimilarity searches one strength for every attacked image, gray-box: not with --bpda or --shard (search once, then give the shards the strength found)")
		}
	} else if cmd.Flags().Changed("target-tolerance") || cmd.Flags().Changed("max-probes") {
		return usagef("--target-tolerance and --max-probes need --target-dissimilarity")
	}
	if f.method == methodUAP && o.BPDA {
		return usagef("--attack uap is fitted on the classifier alone: not with --bpda")
	}
	if o.Split != "test" && o.Split != "train" {
		return usagef("--split %q: want test or train", o.Split)
	}
	if o.N < 0 || o.Batch < 1 || o.Threads < 0 {
		return usagef("--n, --batch and --threads must be >= 0, >= 1 and >= 0")
	}
	if o.BaselineTrain < 0 || o.MagNetEpochs < 0 || o.QuiltPatches < 0 {
		return usagef("--baseline-train, --magnet-epochs and --quilt-patches must be >= 0")
	}
	if f.norm != "" {
		if _, err := attack.ParseNorm(f.norm); err != nil {
			return usagef("--norm: %v", err)
		}
	}
	p, err := parseProtocol(string(o.Protocol))
	if err != nil {
		return err
	}
	if p == attack.ProtocolGuo && f.norm == attack.L2Rel.String() {
		return usagef("--norm %s measures on [0,1] pixels, and --%s %s measures normalized L2 budgets on the classifier's normalized tensors (%s): drop --norm, or use --%s %s",
			f.norm, flagProtocol, p, attack.L2Z, flagProtocol, attack.ProtocolText)
	}
	if cmd.Flags().Changed("budget") && !(f.budget > 0 && f.budget <= 1) {
		return usagef("--budget %g: want a value in (0, 1]", f.budget)
	}
	if o.BPDA && o.Defense == "" {
		return usagef("--bpda needs --defense")
	}

	if o.EOT < 1 {
		return usagef("--eot %d: want at least 1", o.EOT)
	}
	if o.Targeted && (f.method == methodUAP || !mustMethod(f.method).Targetable) {
		return usagef("--targeted does not apply to %s", f.method)
	}
	// A placeholder normalization stands for the classifier's, read later,
	// so that an l2z budget validates.
	if _, err := f.build(&attack.Normalization{Mean: []float64{0}, Std: []float64{1}}); err != nil {
		return usageError{err}
	}
	if f.search.Target != 0 && f.method != methodUAP && (o.Round8 || p.Round8()) {
		if s, _, _ := f.config(nil); s.Knob().Param == attack.BudgetKnob().Param && s.Budget.Norm == attack.LInf {
			return usagef("--target-dissimilarity searches the L-infinity budget of %s, and with 8-bit rounding (--%s %s, or --%s) its pixels move by whole levels of 1/255 (at +-eps they all round alike), so the average dissimilarity jumps from level to level and the search cannot meet it: "+
				"search a normalized L2 budget (--%s %s or %s, with --%s for 8-bit images)",
				f.method, flagProtocol, attack.ProtocolRelease, flagRound8, flagProtocol, attack.ProtocolText, attack.ProtocolGuo, flagRound8)
		}
	}
	return nil
}

// allParams lists the flags of every registry attack.
func allParams() []string {
	var names []string
	for _, m := range attack.Methods() {
		names = append(names, m.Params...)
	}
	return names
}

// mustMethod returns the registry method name, which check has looked up.
func mustMethod(name string) attack.Method {
	m, _ := attack.LookupMethod(name)
	return m
}

// budgetOr returns the flags' budget over the attack's default one; a
// --norm other than the default's without --budget takes the paper's
// budget in that norm.
func (f *attackFlags) budgetOr(def attack.Budget) attack.Budget {
	b := def
	if f.norm != "" {
		b.Norm, _ = attack.ParseNorm(f.norm)
		if b.Norm != def.Norm && f.budget == 0 {
			b = attack.PaperBudget(b.Norm)
			if def.Norm != attack.LInf && b.Norm != attack.LInf {
				b.Eps = def.Eps // l2 and l2z: the attack's own
			}
		}
	}
	if f.budget != 0 {
		b.Eps = f.budget
	}
	b.Normalization = nil
	return b
}

// read returns the setting of method at the flags' budget over def, read
// under --protocol (attack.Protocol.Apply, as stl run reads its columns):
// the steps and step fraction it sets give way to --steps and
// --step-frac, and a budget on normalized tensors is measured in norm (the
// classifier's input normalization).
func (f *attackFlags) read(method string, def attack.Budget, norm *attack.Normalization) (attack.Setting, error) {
	s, err := f.opts.Protocol.Apply(attack.Setting{Name: method, Method: method, Budget: f.budgetOr(def)})
	if err != nil {
		return s, err
	}
	if f.steps != 0 {
		s.Steps = 0
	}
	if f.stepFrac != 0 {
		s.StepFrac = 0
	}
	if s.Budget.Norm == attack.L2Z {
		s.Budget.Normalization = norm
	}
	return s, nil
}

// build returns the attack the flags describe (for --attack uap, its
// fit's options in f.uap are completed): the method's default options,
// overridden by the flags that apply to it, its budget read under the
// protocol; budgets on normalized tensors are measured in norm.
func (f *attackFlags) build(norm *attack.Normalization) (attack.Attack, error) {
	if f.method == methodUAP {
		u := &f.uap.UAP
		s, err := f.read(methodUAP, attack.DefaultUAPOptions().Budget, norm)
		if err != nil {
			return nil, err
		}
		u.Budget = s.Budget
		if f.search.Target != 0 {
			u.Budget.Eps = f.search.Target // fitted at the target, then scaled
		}
		u.DeepFoolIter, u.Candidates, u.Seed = attack.DefaultUAPOptions().DeepFoolIter, f.candidates, uint64(f.uap.FitSeed)
		if f.maxIter != 0 {
			u.DeepFoolIter = f.maxIter
		}
		if f.uap.FitImages < 0 {
			return nil, fmt.Errorf("--fit-images %d: want >= 0", f.uap.FitImages)
		}
		return nil, u.Validate()
	}
	s, c, err := f.config(norm)
	if err != nil {
		return nil, err
	}
	a, _, err := s.New(c)
	return a, err
}

// needsNormalization reports whether the attack the flags describe
// measures its budget on the classifier's normalized tensors (--norm l2z,
// or a normalized L2 budget under the guo protocol), which the search of
// --target-dissimilarity also needs.
func (f *attackFlags) needsNormalization() bool {
	if f.search.Target != 0 {
		return true
	}
	def := attack.DefaultUAPOptions().Budget
	if m, err := attack.LookupMethod(f.method); err == nil {
		c := attack.DefaultConfig()
		def = *m.Budget(&c)
	}
	s, err := f.read(f.method, def, nil)
	return err == nil && s.Budget.Norm == attack.L2Z
}

// config returns the setting the flags name (the registry method at its
// budget, read under the protocol) and its options.
func (f *attackFlags) config(norm *attack.Normalization) (attack.Setting, attack.Config, error) {
	m, err := attack.LookupMethod(f.method)
	if err != nil {
		return attack.Setting{}, attack.Config{}, err
	}
	c := attack.DefaultConfig()
	s, err := f.read(f.method, *m.Budget(&c), norm)
	if err != nil {
		return s, c, err
	}
	if err := m.SetTargeted(&c, f.opts.Targeted); err != nil {
		return s, c, err
	}
	for _, steps := range []*int{&c.BIM.Steps, &c.PGD.Steps} {
		if f.steps != 0 {
			*steps = f.steps
		}
	}
	for _, frac := range []*float64{&c.BIM.StepFrac, &c.PGD.StepFrac} {
		if f.stepFrac != 0 {
			*frac = f.stepFrac
		}
	}
	for _, iters := range []*int{&c.DeepFool.MaxIter, &c.CW.MaxIter} {
		if f.maxIter != 0 {
			*iters = f.maxIter
		}
	}
	c.PGD.Seed, c.PGD.RandomStart, c.PGD.Restarts = f.seed, !f.noRandomStart, f.restarts
	if f.steps != 0 {
		c.APGD.Steps = f.steps
	}
	loss, err := attack.ParseAPGDLoss(f.loss)
	if err != nil {
		return s, c, err
	}
	c.APGD.Seed, c.APGD.Restarts, c.APGD.Loss = f.seed, f.restarts, loss
	c.Square.Seed, c.Square.MaxQueries, c.Square.PInit = f.seed, f.queries, f.pInit
	c.DeepFool.Overshoot, c.DeepFool.Candidates = f.overshoot, f.candidates
	c.CW.Kappa, c.CW.InitialC, c.CW.BinarySteps, c.CW.LearningRate, c.CW.Overshoot = f.kappa, f.initialC, f.binarySteps, f.lr, f.cwOvershoot
	return s, c, nil
}

// defenseError makes an unknown --defense a usage error.
func defenseError(err error) error {
	if errors.Is(err, experiment.ErrUnknownDefense) {
		return usagef("--%v", err)
	}
	return err
}

// printLearned says what a baseline learned from clean training images
// (nothing when l is nil).
func printLearned(w io.Writer, l *experiment.Learned) {
	if l != nil {
		fmt.Fprintf(w, "%s: learned from %d training images of %s, cached in %s\n", l.Baseline, l.Images, l.Data, l.Dir)
	}
}

// runAttack runs the attack the flags describe (experiment.AttackJob)
// and prints what it does and its figures to stdout.
func runAttack(ctx context.Context, f attackFlags, stdout io.Writer, bar progress.Reporter) error {
	if f.opts.Data == "" {
		fmt.Fprintf(stdout, "no --data given: using the embedded sample %s\n", dataset.DefaultSpec)
	}
	job, err := experiment.LoadAttackJob(ctx, f.opts, bar)
	if err != nil {
		return defenseError(err)
	}
	printLearned(stdout, job.Learned)
	var norm *attack.Normalization
	if f.needsNormalization() {
		if norm, err = job.Normalization(); err != nil {
			return err
		}
	}
	if err := setJobAttack(ctx, f, job, norm, stdout, bar); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s on %d images of %s (%s), model %s, protocol %s\n", job.Name, job.Set.Len(), job.Set.Name, f.opts.Split, f.opts.Model, job.ProtocolString())
	res, err := job.Run(ctx, bar)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "success rate %.4f", res.SuccessRate())
	if !f.opts.Targeted {
		// The rate among the images the (defended) classifier got right
		// before the attack, the ones the attack had to flip.
		fmt.Fprintf(stdout, " (%d of the %d images classified correctly before)", res.Flipped, res.CorrectBefore)
	}
	fmt.Fprintln(stdout)
	if f.method == methodUAP {
		fmt.Fprintf(stdout, "fooling rate on the attacked images %.4f (prediction changed)\n", res.FoolingRate())
	}
	if f.opts.BPDA {
		fmt.Fprintf(stdout, "accuracy through %s: clean %.4f, adversarial %.4f\n", job.Defense.Name(), res.CleanAccuracy(res.Labels), res.AdvAccuracy(res.Labels))
	} else {
		fmt.Fprintf(stdout, "accuracy: clean %.4f, adversarial %.4f\n", res.CleanAccuracy(res.Labels), res.AdvAccuracy(res.Labels))
	}
	fmt.Fprintf(stdout, "dissimilarity: mean %.4f max %.4f; L-inf: mean %.4f max %.4f\n",
		meanOf(res.Dissim), maxOf(res.Dissim), meanOf(res.LInf), maxOf(res.LInf))
	if res.DissimZ != nil {
		fmt.Fprintf(stdout, "dissimilarity on the classifier's normalized tensors: mean %.4f max %.4f\n", meanOf(res.DissimZ), maxOf(res.DissimZ))
	}
	if res.GrayBox {
		fmt.Fprintf(stdout, "accuracy through %s (gray-box): clean %.4f, adversarial %.4f\n", job.Defense.Name(), res.DefendedClean, res.DefendedAdv)
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s, %s)\n", f.opts.Out, attack.AdvFile, attack.LabelsFile, attack.MetaFile)
	return nil
}

// setJobAttack gives the job the attack the flags describe: a registry
// attack, at the strength the search finds with --target-dissimilarity,
// or a universal perturbation fitted (or loaded) and, with
// --target-dissimilarity, scaled to reach it.
func setJobAttack(ctx context.Context, f attackFlags, job *experiment.AttackJob, norm *attack.Normalization, stdout io.Writer, bar progress.Reporter) error {
	if _, err := f.build(norm); err != nil {
		return usageError{err}
	}
	var knob attack.Knob
	var at func(s float64) (attack.Attack, error)
	if f.method == methodUAP {
		info, fit, err := job.FitUniversal(ctx, f.uap, bar)
		if err != nil {
			return err
		}
		if info.From != "" {
			fmt.Fprintf(stdout, "UAP loaded from %s: budget %v\n", info.From, info.Budget)
		} else {
			fmt.Fprintf(stdout, "UAP fitted on %d training images of %s: fooling rate %.4f after %d passes (%d DeepFool steps), budget %v (radius %.4g)\n",
				info.FitImages, info.Data, info.FoolingRate, info.Passes, info.Updates, info.Budget, info.Radius)
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", f.opts.Out, experiment.UAPFile, experiment.UAPInfoFile)
		knob = attack.BudgetKnob()
		at = func(s float64) (attack.Attack, error) { return experiment.ScaledUniversal(fit, info.Budget, s) }
		if info.From != "" && f.budget != 0 && f.budget != info.Budget.Eps {
			// A saved perturbation scaled to the budget asked for.
			a, err := at(f.budget)
			if err != nil {
				return usageError{err}
			}
			job.SetAttack(a)
			fmt.Fprintf(stdout, "UAP scaled from %g to %g\n", info.Budget.Eps, f.budget)
		}
	} else {
		s, c, err := f.config(norm)
		if err != nil {
			return usageError{err}
		}
		a, _, err := s.New(c)
		if err != nil {
			return usageError{err}
		}
		job.SetAttack(a)
		knob = s.Knob()
		at = func(v float64) (attack.Attack, error) {
			a, _, err := s.WithStrength(c, v)
			return a, err
		}
	}
	if f.search.Target == 0 {
		return nil
	}
	res, err := job.SearchStrength(ctx, knob, at, f.search, bar)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "search: %s %.6g reaches an average dissimilarity of %.5f on normalized tensors (target %g) after %d probes; wrote %s\n",
		res.Param, res.Strength, res.Mean, res.Target, len(res.Probes), experiment.SearchFile)
	return nil
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / math.Max(1, float64(len(v)))
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
