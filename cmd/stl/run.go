package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/progress"
)

// runOptions are the flags of `stl run`.
type runOptions struct {
	out, config string
	official    bool              // --official, applied in resolve
	sweep       []string          // --lambda-sweep, parsed in resolve so that "" means none
	flags       experiment.Config // the values of the configFlags
}

func init() { rootCmd.AddCommand(newRunCmd()) }

func newRunCmd() *cobra.Command {
	o := &runOptions{flags: experiment.DefaultConfig()}
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
			out := o.out
			if out == "" {
				out = filepath.Join("runs", cfg.Name)
			}
			return runRun(cmd.Context(), cfg, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "run directory (default runs/<name>)")
	f.StringVar(&o.config, "config", "", "YAML or JSON configuration file; flags override it")
	for _, b := range configFlags {
		b.register(f, &o.flags)
	}
	sweep := make([]string, len(o.flags.LambdaSweep))
	for i, l := range o.flags.LambdaSweep {
		sweep[i] = strconv.FormatFloat(l, 'g', -1, 64)
	}
	f.StringSliceVar(&o.sweep, "lambda-sweep", sweep, "lambdas of the Figure 5 study (\"\" for none)")
	f.BoolVar(&o.official, flagOfficial, false, usageOfficial)
	runOpts[cmd] = o
	return cmd
}

// runOpts maps each run command to its options, for tests.
var runOpts = map[*cobra.Command]*runOptions{}

// configFlag is a flag of `stl run` bound to the Config field it sets.
// Registration and the override of the configuration file both derive from
// the table configFlags, so a setting's flag is declared once.
type configFlag struct {
	name  string
	field func(*experiment.Config) any // a pointer to the field
	usage string
}

// configFlags are the flags that set Config fields; --lambda-sweep, whose
// values are parsed in resolve, is the one setting declared apart.
var configFlags = []configFlag{
	{"name", func(c *experiment.Config) any { return &c.Name }, "run name"},
	{"data", func(c *experiment.Config) any { return &c.Data }, "data set: sample:cifar10, sample:imagenet10, or a path"},
	{"resolution", func(c *experiment.Config) any { return &c.Resolution }, "image side in pixels for folders (0: the data's own)"},
	{"arch", func(c *experiment.Config) any { return &c.Arch }, "classifier: " + orList(experiment.Archs)},
	{"seed", func(c *experiment.Config) any { return &c.Seed }, "seed of every random choice"},
	{"limit", func(c *experiment.Config) any { return &c.Limit }, "use at most this many training images (class-balanced; 0: all)"},
	{"test-limit", func(c *experiment.Config) any { return &c.TestLimit }, "use at most this many test images (class-balanced; 0: all)"},
	{"epochs", func(c *experiment.Config) any { return &c.Epochs }, "training epochs of the vanilla classifier"},
	{"retrain-epochs", func(c *experiment.Config) any { return &c.RetrainEpochs }, "training epochs of the retrained classifiers (0: --epochs)"},
	{"batch-size", func(c *experiment.Config) any { return &c.BatchSize }, "training mini-batch size"},
	{"lr", func(c *experiment.Config) any { return &c.LearningRate }, "initial learning rate"},
	{"cutout", func(c *experiment.Config) any { return &c.Cutout }, "cutout augmentation: side of the square zeroed in each training image, for every classifier the run trains (0: none)"},
	{"dropout", func(c *experiment.Config) any { return &c.Dropout }, "dropout before the vgg-small dense layers, for every classifier the run trains, in [0,1)"},
	{"vanilla", func(c *experiment.Config) any { return &c.VanillaModel }, "load the vanilla classifier instead of training it: a " + strings.TrimPrefix(usageAnyModel, "classifier: a ") + "; Table 1 retrains only in front of a model directory (see docs/run.md)"},
	{"lambda", func(c *experiment.Config) any { return &c.Lambda }, "CBPDN sparsity weight (paper: 0.2)"},
	{"filters", func(c *experiment.Config) any { return &c.Filters }, "dictionary filters (paper: 64)"},
	{"filter-size", func(c *experiment.Config) any { return &c.FilterSize }, "filter side in pixels (paper: 8)"},
	{"clusters", func(c *experiment.Config) any { return &c.Clusters }, "latent-space clusters (paper: 4 for CIFAR-10)"},
	{"dict-images", func(c *experiment.Config) any { return &c.DictImages }, "images each dictionary is learned on (0: all)"},
	{"dict-iterations", func(c *experiment.Config) any { return &c.DictIterations }, "dictionary-learning iterations"},
	{"dae-epochs", func(c *experiment.Config) any { return &c.DAEEpochs }, "training epochs of the denoising auto-encoder"},
	{flagOutputMapping, func(c *experiment.Config) any { return &c.Output }, usageOutputMapping},
	{flagQuantize8, func(c *experiment.Config) any { return &c.Quantize8 }, usageQuantize8},
	{flagClusterAssignment, func(c *experiment.Config) any { return &c.Assign }, usageClusterAssignment},
	{"attacks", func(c *experiment.Config) any { return &c.Attacks }, "attacks to run (some of " + strings.Join(experiment.KnownAttacks, ", ") + "; UAP, the universal perturbation of Table 3, only when listed)"},
	{"uap-fit-images", func(c *experiment.Config) any { return &c.UAP.FitImages }, "UAP column: training images the universal perturbation is fitted on (0: 500)"},
	{"uap-eps", func(c *experiment.Config) any { return &c.UAP.Eps }, "UAP column: its budget, the average normalized L2 dissimilarity over the fitting images (0: 0.06)"},
	{"uap-fooling-rate", func(c *experiment.Config) any { return &c.UAP.FoolingRate }, "UAP column: stop fitting once this fraction of the fitting images is fooled (0: 0.8)"},
	{"uap-max-passes", func(c *experiment.Config) any { return &c.UAP.MaxPasses }, "UAP column: passes over the fitting images at most (0: 10)"},
	{"target-dissimilarity", func(c *experiment.Config) any { return &c.TargetDissimilarity }, "search every attack column's strength so that the average normalized L2 dissimilarity on the vanilla classifier's normalized tensors is this (the paper's Table 3: 0.06; 0: off)"},
	{"target-tolerance", func(c *experiment.Config) any { return &c.TargetTolerance }, "with --target-dissimilarity: how far from it a column's average may end (0: 1% of it)"},
	{"attack-subset", func(c *experiment.Config) any { return &c.AttackSubset }, "test images attacked, a class-balanced seeded subset (0: all)"},
	{flagProtocol, func(c *experiment.Config) any { return &c.Protocol }, usageProtocol},
	{flagRound8, func(c *experiment.Config) any { return &c.Round8 }, usageRound8},
	{"cw-iterations", func(c *experiment.Config) any { return &c.CWIterations }, "Adam steps per binary-search step of CW"},
	{"cw-binary-steps", func(c *experiment.Config) any { return &c.CWBinarySteps }, "binary-search steps of CW"},
	{"baselines", func(c *experiment.Config) any { return &c.Baselines }, `baseline defenses ("all", or names such as jpeg,tvm,quilt; "" for none)`},
	{"retrain-baselines", func(c *experiment.Config) any { return &c.RetrainBaselines }, "also retrain a classifier on each baseline (Table 1 form)"},
	{"grid-images", func(c *experiment.Config) any { return &c.GridImages }, "examples in the image grid"},
	{"whitebox", func(c *experiment.Config) any { return &c.WhiteBox }, "add the white-box Table 4 form (PGD L-inf 0.031 through BPDA, EOT for randomized defenses) and its sanity checks (accuracy vs iterations and vs epsilon, noise and transfer controls)"},
	{"whitebox-steps", func(c *experiment.Config) any { return &c.WhiteBoxSteps }, "PGD steps of the white-box attack"},
	{"eot-draws", func(c *experiment.Config) any { return &c.EOTDraws }, "EOT draws per gradient for randomized defenses"},
	{"whitebox-losses", func(c *experiment.Config) any { return &c.WhiteBoxLosses }, "losses of the white-box PGD, one Table 4 column each: ce (cross-entropy; required, the sanity checks use it), cw (Carlini-Wagner margin)"},
	{"whitebox-cw-kappa", func(c *experiment.Config) any { return &c.WhiteBoxCWKappa }, "confidence kappa of the white-box CW loss: images stop moving once misclassified by kappa logits (0: Carlini-Wagner's f6; a positive value strengthens it against randomized defenses)"},
	{"whitebox-subset", func(c *experiment.Config) any { return &c.WhiteBoxSubset }, "run the white-box table and its sanity checks on a class-balanced seeded subset of this many attacked images (0: all)"},
	{"sanity-baselines", func(c *experiment.Config) any { return &c.SanityBaselines }, "also run the white-box sanity checks on every baseline (about 6 times its white-box attack again, EOT for randomized ones)"},
	{"whitebox-suite", func(c *experiment.Config) any { return &c.WhiteBoxSuite.Attacks }, "add stl evaluate's adaptive suite on every white-box row: attacks (" + strings.Join(evaluate.AttackNames, ", ") + ", or all; needs --whitebox; default: none)"},
	{"whitebox-suite-routes", func(c *experiment.Config) any { return &c.WhiteBoxSuite.Routes }, "gradient routes of the suite: bpda (the Table 4 backward pass), implicit, unrolled (the STL's exact gradients, STL rows only) (default: bpda)"},
	{"whitebox-suite-apgd-steps", func(c *experiment.Config) any { return &c.WhiteBoxSuite.APGDSteps }, "suite: APGD iterations (0: 100)"},
	{"whitebox-suite-queries", func(c *experiment.Config) any { return &c.WhiteBoxSuite.SquareQueries }, "suite: Square's queries per image (0: 1000)"},
	{"whitebox-suite-square-n", func(c *experiment.Config) any { return &c.WhiteBoxSuite.SquareImages }, "suite: run Square on a class-balanced subset of this many white-box images (0: all)"},
	{"whitebox-suite-eval-draws", func(c *experiment.Config) any { return &c.WhiteBoxSuite.EvalDraws }, "suite: evaluations of each image through a randomized defense, correct only when every one is (0: 10)"},
	{"whitebox-suite-cg-tol", func(c *experiment.Config) any { return &c.WhiteBoxSuite.CGTol }, "suite, implicit route: conjugate-gradient tolerance (0: 1e-6)"},
	{"whitebox-suite-cg-max-iter", func(c *experiment.Config) any { return &c.WhiteBoxSuite.CGMaxIter }, "suite, implicit route: conjugate-gradient iterations per image at most (0: 500)"},
	{"whitebox-suite-unroll-iterations", func(c *experiment.Config) any { return &c.WhiteBoxSuite.UnrollIterations }, "suite, unrolled route: ADMM iterations differentiated (0: the forward run's own)"},
	{"whitebox-suite-cluster-gradient", func(c *experiment.Config) any { return &c.WhiteBoxSuite.ClusterGradient }, "suite, exact routes through STL (cluster): vote or eot (default: vote)"},
	{"whitebox-suite-warm-start", func(c *experiment.Config) any { return &c.WhiteBoxSuite.WarmStart }, "suite: start each projection of an attack through STL and STL (cluster) from the previous query's state of the same image (default: cold starts)"},
	{"adv-train", func(c *experiment.Config) any { return &c.AdvTrain.Method }, "adversarial training for the white-box rows AT alone, STL + AT and STL (cluster) + AT: pgd or fgsm-rs (needs --whitebox; default: none)"},
	{"adv-eps", func(c *experiment.Config) any { return &c.AdvTrain.Eps }, "L-infinity radius of adversarial training (0: 8/255)"},
	{"adv-step", func(c *experiment.Config) any { return &c.AdvTrain.Step }, "step of the adversarial-training attack (0: 2/255 for pgd, 1.25 eps for fgsm-rs)"},
	{"adv-steps", func(c *experiment.Config) any { return &c.AdvTrain.Steps }, "steps of the adversarial-training attack (0: 7 for pgd; fgsm-rs takes 1)"},
	{"adv-fraction", func(c *experiment.Config) any { return &c.AdvTrain.Fraction }, "share of each batch made adversarial (0: all)"},
	{"adv-epochs", func(c *experiment.Config) any { return &c.AdvTrain.Epochs }, "adversarial-training epochs (0: those of the classifier each row replaces)"},
	{"adv-fine-tune", func(c *experiment.Config) any { return &c.AdvTrain.FineTune }, "start adversarial training from the vanilla and retrained classifiers instead of from scratch"},
	{"adv-lr", func(c *experiment.Config) any { return &c.AdvTrain.LearningRate }, "peak learning rate of adversarial training (0: --lr)"},
}

// register adds the flag to f, bound to its field of c, whose value is the
// flag's default. TestConfigFlags checks that every field has a flag type.
func (b configFlag) register(f *pflag.FlagSet, c *experiment.Config) {
	switch p := b.field(c).(type) {
	case *string:
		f.StringVar(p, b.name, *p, b.usage)
	case *int:
		f.IntVar(p, b.name, *p, b.usage)
	case *int64:
		f.Int64Var(p, b.name, *p, b.usage)
	case *float64:
		f.Float64Var(p, b.name, *p, b.usage)
	case *bool:
		f.BoolVar(p, b.name, *p, b.usage)
	case *[]string:
		f.StringSliceVar(p, b.name, *p, b.usage)
	}
}

// override sets the field of cfg to its value in flags, the flags' Config.
// Empty names are dropped from lists, so that --baselines "" means none.
func (b configFlag) override(cfg, flags *experiment.Config) {
	dst, src := reflect.ValueOf(b.field(cfg)).Elem(), reflect.ValueOf(b.field(flags)).Elem()
	if names, ok := src.Interface().([]string); ok {
		src = reflect.ValueOf(nonEmpty(names))
	}
	dst.Set(src)
}

// resolve merges, in increasing priority, the defaults, the --config file
// and the flags given on the command line.
func (o *runOptions) resolve(cmd *cobra.Command) (experiment.Config, error) {
	cfg := experiment.DefaultConfig()
	if o.config != "" {
		var err error
		if cfg, err = experiment.LoadConfig(o.config); err != nil {
			return cfg, usagef("--config: %v", err)
		}
	}
	if o.official {
		cfg.ApplyOptions = officialApply(cfg.ApplyOptions, cmd.Flags().Changed)
	}
	for _, b := range configFlags {
		if cmd.Flags().Changed(b.name) {
			b.override(&cfg, &o.flags)
		}
	}
	if cmd.Flags().Changed("lambda-sweep") {
		cfg.LambdaSweep = []float64{}
		for _, v := range nonEmpty(o.sweep) {
			l, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return cfg, usagef("--lambda-sweep: %q is not a number", v)
			}
			cfg.LambdaSweep = append(cfg.LambdaSweep, l)
		}
	}
	// A run on other data, or at another resolution, gets a name of its
	// own, so that its default directory does not replace the stages of
	// the sample's run or of the same data at another resolution.
	def := experiment.DefaultConfig()
	if cfg.Name == def.Name && (cfg.Data != def.Data || cfg.Resolution > 0) {
		cfg.Name = runName(cfg.Data)
		if cfg.Resolution > 0 {
			cfg.Name += "-" + strconv.Itoa(cfg.Resolution)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// runName derives a run name from a data spec: "sample:imagenet10" gives
// "imagenet10-sample", "../shared/data/cifar10" gives "cifar10".
func runName(data string) string {
	if rest, ok := strings.CutPrefix(data, "sample:"); ok {
		data = rest + "-sample"
	}
	base := filepath.Base(filepath.Clean(data))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.TrimLeft(b.String(), ".-_")
	if name == "" {
		return "run"
	}
	return name
}

// nonEmpty drops empty names, so that --baselines "" means none.
func nonEmpty(names []string) []string {
	out := []string{}
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

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
