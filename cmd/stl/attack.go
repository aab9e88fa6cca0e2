package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// attackFlags are the options of "stl attack".
type attackFlags struct {
	model, data, split string
	n                  int
	subsetSeed         int64
	method             string
	norm               string
	budget             float64
	steps              int
	stepFrac           float64
	seed               uint64
	restarts           int
	noRandomStart      bool
	overshoot          float64
	maxIter            int
	candidates         int
	kappa, initialC    float64
	binarySteps        int
	lr                 float64
	targeted           bool
	defense            string
	bpda               bool
	eot                int
	batch              int
	threads            int
	out                string
	// What the quilting baselines and MagNet learn from the clean training
	// images (see prepareBaseline).
	baselineDir   string
	baselineTrain int
	magnetEpochs  int
	quiltPatches  int
}

// attackMethods lists the --attack values and the method-specific flags
// each accepts.
var attackMethods = map[string][]string{
	"fgsm":     {},
	"bim":      {"steps", "step-frac"},
	"pgd":      {"steps", "step-frac", "seed", "no-random-start", "restarts"},
	"deepfool": {"overshoot", "max-iter", "candidates"},
	"cw":       {"kappa", "initial-c", "binary-steps", "max-iter", "lr"},
}

func init() { rootCmd.AddCommand(newAttackCmd()) }

// newAttackCmd returns a fresh "attack" command with its own flag values.
func newAttackCmd() *cobra.Command {
	var f attackFlags
	cmd := &cobra.Command{
		Use:   "attack --model DIR --attack fgsm|bim|pgd|deepfool|cw --out DIR",
		Short: "Compute adversarial examples against a classifier and save them",
		Long: `attack computes adversarial examples of a data set's test images against a
trained classifier (gray-box: on the vanilla classifier, as in the paper's
section 5.1) or, with --defense and --bpda, through a defense (white-box BPDA,
with EOT over randomized defenses, as in the paper's Table 4).

Budgets are the paper's normalized L2 dissimilarity ||x_adv-x0||/||x0||
(--norm l2) or an L-infinity bound (--norm linf). Defaults are the paper's:
FGSM, BIM, DeepFool and CW at dissimilarity 0.04 (use --budget 0.08 for
FGSM-0.08), PGD at L-infinity 0.031.

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
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "classifier directory written by 'stl train' (required)")
	fl.StringVar(&f.data, "data", "", "data set (see 'stl data'); default "+dataset.DefaultSpec)
	fl.StringVar(&f.split, "split", "test", "which part of the data set to attack: test or train")
	fl.IntVar(&f.n, "n", 0, "attack a class-balanced subset of this many images (0: all)")
	fl.Int64Var(&f.subsetSeed, "subset-seed", 1, "seed of the class-balanced subset")
	fl.StringVar(&f.method, "attack", "fgsm", "attack: fgsm, bim, pgd, deepfool or cw")
	fl.StringVar(&f.norm, "norm", "", "budget norm: l2 (normalized dissimilarity) or linf; default the attack's")
	fl.Float64Var(&f.budget, "budget", 0, "budget in (0,1]; default the attack's (0.04, PGD 0.031)")
	fl.IntVar(&f.steps, "steps", 0, "bim, pgd: iterations (default 10, 20)")
	fl.Float64Var(&f.stepFrac, "step-frac", 0, "bim, pgd: step size as a fraction of the budget (default 0.125, 0.1)")
	fl.Uint64Var(&f.seed, "seed", 1, "pgd: seed of the random start")
	fl.BoolVar(&f.noRandomStart, "no-random-start", false, "pgd: start at the clean image")
	fl.IntVar(&f.restarts, "restarts", 1, "pgd: runs from independent random starts")
	fl.Float64Var(&f.overshoot, "overshoot", 0.02, "deepfool: overshoot")
	fl.IntVar(&f.maxIter, "max-iter", 0, "deepfool, cw: iterations (default 50, 1000)")
	fl.IntVar(&f.candidates, "candidates", 10, "deepfool: classes considered (0: all)")
	fl.Float64Var(&f.kappa, "kappa", 0, "cw: confidence margin")
	fl.Float64Var(&f.initialC, "initial-c", 1e-3, "cw: initial trade-off constant")
	fl.IntVar(&f.binarySteps, "binary-steps", 9, "cw: binary search steps over c")
	fl.Float64Var(&f.lr, "lr", 0.01, "cw: Adam learning rate")
	fl.BoolVar(&f.targeted, "targeted", false, "targeted attack towards class (label+1) mod K (not deepfool)")
	fl.StringVar(&f.defense, "defense", "", "a defense directory or a baseline ("+strings.Join(defense.BaselineNames(), ", ")+"); evaluated on the adversarial set, attacked through with --bpda")
	fl.BoolVar(&f.bpda, "bpda", false, "attack through the defense with BPDA (identity backward pass)")
	fl.IntVar(&f.eot, "eot", 10, "with --bpda on a randomized defense: gradient draws averaged (EOT)")
	fl.IntVar(&f.batch, "batch", 100, "images per attack batch")
	fl.IntVar(&f.threads, "threads", 0, "classifier threads (0: as saved)")
	fl.StringVar(&f.out, "out", "", "output directory of the adversarial set (required)")
	po := defense.DefaultPrepareOptions()
	fl.StringVar(&f.baselineDir, "baseline-dir", "", "cache of the patch database and auto-encoder of --defense quilt, tvm-quilt, crop-tvm-quilt and magnet, one subfolder per training set (default: 'baselines' beside --out)")
	fl.IntVar(&f.baselineTrain, "baseline-train", 0, "train those baselines on a class-balanced subset of this many training images, seeded by --subset-seed (0: all)")
	fl.IntVar(&f.magnetEpochs, "magnet-epochs", po.MagNet.Epochs, "magnet: auto-encoder training epochs")
	fl.IntVar(&f.quiltPatches, "quilt-patches", po.PatchDB.MaxPatches, "quilting: patches kept in the database (0: all; the search costs time linear in it)")
	return cmd
}

// check validates the flags that need no file.
func (f *attackFlags) check(cmd *cobra.Command) error {
	if f.model == "" {
		return usagef("--model is required")
	}
	if f.out == "" {
		return usagef("--out is required")
	}
	own, ok := attackMethods[f.method]
	if !ok {
		return usagef("--attack %q: want fgsm, bim, pgd, deepfool or cw", f.method)
	}
	for _, all := range attackMethods {
		for _, name := range all {
			if cmd.Flags().Changed(name) && !slices.Contains(own, name) {
				return usagef("--%s does not apply to --attack %s", name, f.method)
			}
		}
	}
	if f.split != "test" && f.split != "train" {
		return usagef("--split %q: want test or train", f.split)
	}
	if f.n < 0 || f.batch < 1 || f.threads < 0 {
		return usagef("--n, --batch and --threads must be >= 0, >= 1 and >= 0")
	}
	if f.baselineTrain < 0 || f.magnetEpochs < 0 || f.quiltPatches < 0 {
		return usagef("--baseline-train, --magnet-epochs and --quilt-patches must be >= 0")
	}
	if f.norm != "" {
		if _, err := attack.ParseNorm(f.norm); err != nil {
			return usagef("--norm: %v", err)
		}
	}
	if cmd.Flags().Changed("budget") && !(f.budget > 0 && f.budget <= 1) {
		return usagef("--budget %g: want a value in (0, 1]", f.budget)
	}
	if f.bpda && f.defense == "" {
		return usagef("--bpda needs --defense")
	}
	if f.eot < 1 {
		return usagef("--eot %d: want at least 1", f.eot)
	}
	if f.targeted && f.method == "deepfool" {
		return usagef("--targeted does not apply to deepfool")
	}
	if _, err := f.build(); err != nil {
		return usageError{err}
	}
	return nil
}

// budgetOr returns the flags' budget over the attack's default one.
func (f *attackFlags) budgetOr(def attack.Budget) attack.Budget {
	b := def
	if f.norm != "" {
		b.Norm, _ = attack.ParseNorm(f.norm)
		if b.Norm != def.Norm && f.budget == 0 {
			if b.Norm == attack.LInf {
				b.Eps = 0.031
			} else {
				b.Eps = 0.04
			}
		}
	}
	if f.budget != 0 {
		b.Eps = f.budget
	}
	return b
}

// build returns the attack the flags describe.
func (f *attackFlags) build() (attack.Attack, error) {
	set := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	switch f.method {
	case "fgsm":
		o := attack.DefaultFGSMOptions()
		o.Budget, o.Targeted = f.budgetOr(o.Budget), f.targeted
		return attack.NewFGSM(o)
	case "bim":
		o := attack.DefaultBIMOptions()
		o.Budget, o.Targeted = f.budgetOr(o.Budget), f.targeted
		set(&o.Steps, f.steps)
		if f.stepFrac != 0 {
			o.StepFrac = f.stepFrac
		}
		return attack.NewBIM(o)
	case "pgd":
		o := attack.DefaultPGDOptions()
		o.Budget, o.Targeted, o.Seed, o.RandomStart = f.budgetOr(o.Budget), f.targeted, f.seed, !f.noRandomStart
		o.Restarts = f.restarts
		set(&o.Steps, f.steps)
		if f.stepFrac != 0 {
			o.StepFrac = f.stepFrac
		}
		return attack.NewPGD(o)
	case "deepfool":
		o := attack.DefaultDeepFoolOptions()
		o.Budget, o.Overshoot, o.Candidates = f.budgetOr(o.Budget), f.overshoot, f.candidates
		set(&o.MaxIter, f.maxIter)
		return attack.NewDeepFool(o)
	case "cw":
		o := attack.DefaultCWOptions()
		o.Budget, o.Targeted = f.budgetOr(o.Budget), f.targeted
		o.Kappa, o.InitialC, o.BinarySteps, o.LearningRate = f.kappa, f.initialC, f.binarySteps, f.lr
		set(&o.MaxIter, f.maxIter)
		return attack.NewCW(o)
	}
	return nil, fmt.Errorf("unknown attack %q", f.method)
}

// loadDefense resolves --defense: a baseline name or a saved defense
// directory (its "STL (cluster)" transform). Baselines that learn from the
// clean training images train (quilting's patch database, MagNet's
// auto-encoder) get them from prepareBaseline.
func loadDefense(ctx context.Context, f attackFlags, train *dataset.Set, stdout io.Writer, rep progress.Reporter) (attack.Transform, error) {
	spec := f.defense
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		d, err := defense.Load(spec)
		if err != nil {
			return nil, err
		}
		_, strat, err := d.Transforms(defense.DefaultBackend().NewProjector)
		if err != nil {
			return nil, err
		}
		return strat, nil
	}
	if defense.BaselineDoc(spec) == "" {
		return nil, usagef("--defense %q is neither a directory nor a baseline (%s)", spec, strings.Join(defense.BaselineNames(), ", "))
	}
	cfg, err := prepareBaseline(ctx, f, train, stdout, rep)
	if err != nil {
		return nil, err
	}
	return defense.NewBaseline(spec, cfg)
}

// prepareBaseline returns the baseline options of --defense, completed,
// when the baseline needs them, with a patch database and a MagNet
// auto-encoder learned from the clean training images train (a
// class-balanced subset of --baseline-train of them). Both are cached in
// --baseline-dir (default DIR/../baselines for --out DIR), in a subfolder
// named after a hash of the training images, so that later attacks on the
// same data load them instead of training again.
func prepareBaseline(ctx context.Context, f attackFlags, train *dataset.Set, stdout io.Writer, rep progress.Reporter) (defense.BaselineConfig, error) {
	cfg := defense.DefaultBaselineConfig()
	if db, dae := defense.BaselineNeeds(f.defense); !db && !dae {
		return cfg, nil
	}
	if train == nil || train.Len() == 0 {
		return cfg, fmt.Errorf("--defense %s learns from clean training images, and the data set has none", f.defense)
	}
	if f.baselineTrain > 0 && f.baselineTrain < train.Len() {
		var err error
		if train, err = train.BalancedSubset(f.baselineTrain, f.subsetSeed); err != nil {
			return cfg, err
		}
	}
	o := defense.DefaultPrepareOptions()
	o.MagNet.Epochs, o.PatchDB.MaxPatches = f.magnetEpochs, f.quiltPatches
	root := f.baselineDir
	if root == "" {
		root = filepath.Join(filepath.Dir(filepath.Clean(f.out)), "baselines")
	}
	o.Dir = filepath.Join(root, imagesKey(train.Images))
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return cfg, err
	}
	cfg, err := defense.PrepareBaselines(ctx, cfg, []string{f.defense}, train.Images, o, rep)
	if err != nil {
		return cfg, err
	}
	fmt.Fprintf(stdout, "%s: learned from %d training images of %s, cached in %s\n", f.defense, train.Len(), train.Name, o.Dir)
	return cfg, nil
}

// imagesKey names a set of images by its shape and pixels: the first 16
// hex digits of their SHA-256.
func imagesKey(x *tensor.Tensor) string {
	h := sha256.New()
	fmt.Fprintf(h, "%v\n", x.Shape)
	buf := make([]byte, 0, 1<<16)
	for _, v := range x.Data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func runAttack(ctx context.Context, f attackFlags, stdout io.Writer, bar progress.Reporter) error {
	a, err := f.build()
	if err != nil {
		return usageError{err}
	}
	clf, err := nn.Load(f.model)
	if err != nil {
		return err
	}
	if f.threads > 0 {
		clf.SetThreads(f.threads)
	}
	c, h, w := clf.InputShape()
	spec := f.data
	if spec == "" {
		spec = dataset.DefaultSpec
		fmt.Fprintf(stdout, "no --data given: using the embedded sample %s\n", spec)
	}
	lo := dataset.DefaultLoadOptions()
	lo.Size, lo.Progress = h, bar
	train, test, err := dataset.LoadContext(ctx, spec, lo)
	if err != nil {
		return err
	}
	set := test
	if f.split == "train" {
		set = train
	}
	if set == nil || set.Len() == 0 {
		return fmt.Errorf("data set %s has no %s images", spec, f.split)
	}
	if _, sc, sh, sw, _ := set.Images.NCHW(); sc != c || sh != h || sw != w {
		return fmt.Errorf("model %s takes %dx%dx%d images, data set %s holds %dx%dx%d", f.model, c, h, w, spec, sc, sh, sw)
	}
	if len(set.Classes) > clf.NumClasses() {
		return fmt.Errorf("model %s has %d classes, data set %s %d", f.model, clf.NumClasses(), spec, len(set.Classes))
	}
	var indices []int
	if f.n > 0 && f.n < set.Len() {
		if indices, err = dataset.BalancedIndices(set.Labels, len(set.Classes), f.n, f.subsetSeed); err != nil {
			return err
		}
		set = set.Subset(indices)
	}
	labels := set.Labels
	goal := labels
	if f.targeted {
		goal = make([]int, len(labels))
		for i, y := range labels {
			goal[i] = (y + 1) % clf.NumClasses()
		}
	}

	var target attack.Model = clf
	var tr attack.Transform
	if f.defense != "" {
		if tr, err = loadDefense(ctx, f, train, stdout, bar); err != nil {
			return err
		}
		if f.bpda {
			if target, err = attack.Adaptive(tr, clf, nil, f.eot); err != nil {
				return err
			}
		}
	}
	name := a.Name()
	if f.bpda {
		name += " via BPDA(" + tr.Name() + ")"
		if tr.Randomized() {
			name += fmt.Sprintf(" EOT x%d", f.eot)
		}
	}
	fmt.Fprintf(stdout, "%s on %d images of %s (%s), model %s\n", name, set.Len(), set.Name, f.split, f.model)
	partial := filepath.Join(f.out, ".partial")
	bo := attack.BatchOptions{Size: f.batch, Progress: bar, CheckpointDir: partial, Key: attackRunKey(f, a, set.Name, indices)}
	res, err := attack.RunBatches(ctx, a, target, set.Images, goal, bo)
	if err != nil {
		return err
	}
	s, err := attack.NewSet(a, goal, res)
	if err != nil {
		return err
	}
	s.Meta.Attack, s.Meta.Model, s.Meta.Data, s.Meta.Indices = name, f.model, set.Name, indices
	if err := s.Save(f.out); err != nil {
		return err
	}
	if err := os.RemoveAll(partial); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "success rate %.4f", res.SuccessRate())
	if !f.targeted {
		// The rate among the images the (defended) classifier got right
		// before the attack, the ones the attack had to flip.
		right, flipped := 0, 0
		for i, p := range res.CleanPred {
			if p == labels[i] {
				right++
				if res.Success[i] {
					flipped++
				}
			}
		}
		fmt.Fprintf(stdout, " (%d of the %d images classified correctly before)", flipped, right)
	}
	fmt.Fprintln(stdout)
	if f.bpda {
		fmt.Fprintf(stdout, "accuracy through %s: clean %.4f, adversarial %.4f\n", tr.Name(), res.CleanAccuracy(labels), res.AdvAccuracy(labels))
	} else {
		fmt.Fprintf(stdout, "accuracy: clean %.4f, adversarial %.4f\n", res.CleanAccuracy(labels), res.AdvAccuracy(labels))
	}
	fmt.Fprintf(stdout, "dissimilarity: mean %.4f max %.4f; L-inf: mean %.4f max %.4f\n",
		meanOf(res.Dissim), maxOf(res.Dissim), meanOf(res.LInf), maxOf(res.LInf))
	if tr != nil && !f.bpda {
		accC, err := defendedAccuracy(ctx, tr, clf, set.Images, labels, f.batch, bar)
		if err != nil {
			return err
		}
		accA, err := defendedAccuracy(ctx, tr, clf, res.Adv, labels, f.batch, bar)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "accuracy through %s (gray-box): clean %.4f, adversarial %.4f\n", tr.Name(), accC, accA)
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s, %s)\n", f.out, attack.AdvFile, attack.LabelsFile, attack.MetaFile)
	return nil
}

// attackRunKey identifies what a checkpointed batch was computed from: the
// model files, the data, the subset, the attack's options and the defense.
// An interrupted run resumes only from batches with the same key.
func attackRunKey(f attackFlags, a attack.Attack, data string, indices []int) string {
	h := sha256.New()
	for _, name := range []string{nn.MetadataFile, nn.WeightsFile} {
		if st, err := os.Stat(filepath.Join(f.model, name)); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", name, st.Size(), st.ModTime().UnixNano())
		}
	}
	opts, _ := json.Marshal(a)
	fmt.Fprintf(h, "%s\n%s\n%s\n%v\n%s\n%s\n%v %d %d %v\n", f.model, data, f.split, indices, a.Name(), opts,
		f.targeted, f.batch, f.eot, f.bpda)
	fmt.Fprintf(h, "%s\n", f.defense)
	if db, dae := defense.BaselineNeeds(f.defense); db || dae {
		fmt.Fprintf(h, "%d %d %d %d\n", f.baselineTrain, f.subsetSeed, f.magnetEpochs, f.quiltPatches)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// defendedAccuracy is the accuracy of m on T(x), in batches.
func defendedAccuracy(ctx context.Context, t attack.Transform, m attack.Model, x *tensor.Tensor, labels []int, batch int, rep progress.Reporter) (float64, error) {
	n := len(labels)
	right := 0
	stage := "defend " + t.Name()
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		xb := x.Batch(lo, hi)
		y, err := t.Apply(ctx, xb)
		if err != nil {
			return 0, err
		}
		z, err := m.Logits(ctx, y)
		if err != nil {
			return 0, err
		}
		k := m.NumClasses()
		for i := 0; i < hi-lo; i++ {
			if tensor.Argmax(z.Data[i*k:(i+1)*k]) == labels[lo+i] {
				right++
			}
		}
		rep.Report(stage, hi, n, "")
	}
	return float64(right) / float64(n), nil
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
