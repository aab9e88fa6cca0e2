package cli

import (
	"flag"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/evaluate"
)

// The flags of defense.ApplyOptions, shared by "stl defense train", "stl
// run" and "stl-beam run", and the preset that turns on the released
// code's choices.
const (
	FlagOutputMapping     = "output-mapping"
	FlagQuantize8         = "quantize-8bit"
	FlagClusterAssignment = "cluster-assignment"
	FlagOfficial          = "official"
)

// Usages of the ApplyOptions flags and of --official.
var (
	UsageOutputMapping = "how the STL maps lowpass + D x to its output: " + strings.Join(defense.OutputMappings, " (default), ") +
		" (divide by each image's maximum, as the released code)"
	UsageQuantize8         = "round the STL's output to 8 bits, as the released code saved it"
	UsageClusterAssignment = "how STL (cluster) assigns clusters: " + strings.Join(defense.ClusterAssignments, " (default), ") +
		" (k-means labels of the training codes and each set together, as the released code; it sees the test images)"
	UsageOfficial = "the released code's choices: --" + FlagOutputMapping + " " + defense.OutputMax + " --" + FlagQuantize8 +
		" --" + FlagClusterAssignment + " " + defense.AssignTransductive + " (flags given explicitly override it)"
)

// OfficialApply returns a with defense.ReleaseApplyOptions in each field
// whose flag was not given on the command line (changed reports that).
func OfficialApply(a defense.ApplyOptions, changed func(flag string) bool) defense.ApplyOptions {
	r := defense.ReleaseApplyOptions()
	if !changed(FlagOutputMapping) {
		a.Output = r.Output
	}
	if !changed(FlagQuantize8) {
		a.Quantize8 = r.Quantize8
	}
	if !changed(FlagClusterAssignment) {
		a.Assign = r.Assign
	}
	return a
}

// RunFlags are the options of "stl run" (and "stl-beam run"): the run
// directory, a configuration file, --official, --lambda-sweep (parsed in
// Resolve, so that "" means none) and the values of ConfigFlags.
type RunFlags struct {
	Out, Config string
	Official    bool
	Sweep       []string
	Flags       experiment.Config
}

// ListVar is what Register needs to define a flag taking a comma-separated
// list: pflag's StringSliceVar, or StringsVar on a standard flag set.
type ListVar func(p *[]string, name string, value []string, usage string)

// StringsVar defines on fs a flag taking a comma-separated list, as
// pflag's StringSliceVar does (given again, it appends).
func StringsVar(fs *flag.FlagSet) ListVar {
	return func(p *[]string, name string, value []string, usage string) {
		*p = append([]string(nil), value...)
		fs.Var(&stringList{p: p}, name, usage)
	}
}

// stringList is a flag.Value of comma-separated names.
type stringList struct {
	p   *[]string
	set bool
}

func (l *stringList) String() string {
	if l == nil || l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l *stringList) Set(s string) error {
	if !l.set {
		*l.p, l.set = nil, true
	}
	*l.p = append(*l.p, strings.Split(s, ",")...)
	return nil
}

// Register defines the flags of "stl run" on fl (lists through list),
// with the defaults of experiment.DefaultConfig, storing into f.
func (f *RunFlags) Register(fl FlagSet, list ListVar) {
	f.Flags = experiment.DefaultConfig()
	fl.StringVar(&f.Out, "out", "", "run directory (default runs/<name>)")
	fl.StringVar(&f.Config, "config", "", "YAML or JSON configuration file; flags override it")
	for _, b := range ConfigFlags {
		b.Register(fl, list, &f.Flags)
	}
	sweep := make([]string, len(f.Flags.LambdaSweep))
	for i, l := range f.Flags.LambdaSweep {
		sweep[i] = strconv.FormatFloat(l, 'g', -1, 64)
	}
	list(&f.Sweep, "lambda-sweep", sweep, "lambdas of the Figure 5 study (\"\" for none)")
	fl.BoolVar(&f.Official, FlagOfficial, false, UsageOfficial)
}

// ConfigFlag is a flag of "stl run" bound to the Config field it sets.
// Registration and the override of the configuration file both derive
// from the table ConfigFlags, so a setting's flag is declared once.
type ConfigFlag struct {
	Name  string
	Field func(*experiment.Config) any // a pointer to the field
	Usage string
}

// ConfigFlags are the flags that set Config fields; --lambda-sweep, whose
// values are parsed in Resolve, is the one setting declared apart.
var ConfigFlags = []ConfigFlag{
	{"name", func(c *experiment.Config) any { return &c.Name }, "run name"},
	{"data", func(c *experiment.Config) any { return &c.Data }, "data set: sample:cifar10, sample:imagenet10, or a path"},
	{"resolution", func(c *experiment.Config) any { return &c.Resolution }, "image side in pixels for folders (0: the data's own)"},
	{"arch", func(c *experiment.Config) any { return &c.Arch }, "classifier: " + OrList(experiment.Archs)},
	{"seed", func(c *experiment.Config) any { return &c.Seed }, "seed of every random choice"},
	{"limit", func(c *experiment.Config) any { return &c.Limit }, "use at most this many training images (class-balanced; 0: all)"},
	{"test-limit", func(c *experiment.Config) any { return &c.TestLimit }, "use at most this many test images (class-balanced; 0: all)"},
	{"epochs", func(c *experiment.Config) any { return &c.Epochs }, "training epochs of the vanilla classifier"},
	{"retrain-epochs", func(c *experiment.Config) any { return &c.RetrainEpochs }, "training epochs of the retrained classifiers (0: --epochs)"},
	{"batch-size", func(c *experiment.Config) any { return &c.BatchSize }, "training mini-batch size"},
	{"lr", func(c *experiment.Config) any { return &c.LearningRate }, "initial learning rate"},
	{"cutout", func(c *experiment.Config) any { return &c.Cutout }, "cutout augmentation: side of the square zeroed in each training image, for every classifier the run trains (0: none)"},
	{"dropout", func(c *experiment.Config) any { return &c.Dropout }, "dropout before the vgg-small dense layers, for every classifier the run trains, in [0,1)"},
	{"vanilla", func(c *experiment.Config) any { return &c.VanillaModel }, "load the vanilla classifier instead of training it: a " + strings.TrimPrefix(UsageAnyModel, "classifier: a ") + "; Table 1 retrains only in front of a model directory (see docs/run.md)"},
	{"lambda", func(c *experiment.Config) any { return &c.Lambda }, "CBPDN sparsity weight (paper: 0.2)"},
	{"filters", func(c *experiment.Config) any { return &c.Filters }, "dictionary filters (paper: 64)"},
	{"filter-size", func(c *experiment.Config) any { return &c.FilterSize }, "filter side in pixels (paper: 8)"},
	{"clusters", func(c *experiment.Config) any { return &c.Clusters }, "latent-space clusters (paper: 4 for CIFAR-10)"},
	{"dict-images", func(c *experiment.Config) any { return &c.DictImages }, "images each dictionary is learned on (0: all)"},
	{"dict-iterations", func(c *experiment.Config) any { return &c.DictIterations }, "dictionary-learning iterations"},
	{"dae-epochs", func(c *experiment.Config) any { return &c.DAEEpochs }, "training epochs of the denoising auto-encoder"},
	{FlagOutputMapping, func(c *experiment.Config) any { return &c.Output }, UsageOutputMapping},
	{FlagQuantize8, func(c *experiment.Config) any { return &c.Quantize8 }, UsageQuantize8},
	{FlagClusterAssignment, func(c *experiment.Config) any { return &c.Assign }, UsageClusterAssignment},
	{"attacks", func(c *experiment.Config) any { return &c.Attacks }, "attacks to run (some of " + strings.Join(experiment.KnownAttacks, ", ") + "; UAP, the universal perturbation of Table 3, only when listed)"},
	{"uap-fit-images", func(c *experiment.Config) any { return &c.UAP.FitImages }, "UAP column: training images the universal perturbation is fitted on (0: 500)"},
	{"uap-eps", func(c *experiment.Config) any { return &c.UAP.Eps }, "UAP column: its budget, the average normalized L2 dissimilarity over the fitting images (0: 0.06)"},
	{"uap-fooling-rate", func(c *experiment.Config) any { return &c.UAP.FoolingRate }, "UAP column: stop fitting once this fraction of the fitting images is fooled (0: 0.8)"},
	{"uap-max-passes", func(c *experiment.Config) any { return &c.UAP.MaxPasses }, "UAP column: passes over the fitting images at most (0: 10)"},
	{"target-dissimilarity", func(c *experiment.Config) any { return &c.TargetDissimilarity }, "search every attack column's strength so that the average normalized L2 dissimilarity on the vanilla classifier's normalized tensors is this (the paper's Table 3: 0.06; 0: off)"},
	{"target-tolerance", func(c *experiment.Config) any { return &c.TargetTolerance }, "with --target-dissimilarity: how far from it a column's average may end (0: 1% of it)"},
	{"attack-subset", func(c *experiment.Config) any { return &c.AttackSubset }, "test images attacked, a class-balanced seeded subset (0: all)"},
	{FlagProtocol, func(c *experiment.Config) any { return &c.Protocol }, UsageProtocol},
	{FlagRound8, func(c *experiment.Config) any { return &c.Round8 }, UsageRound8},
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

// Register adds the flag to fl (a list through list), bound to its field
// of c, whose value is the flag's default. A field of another type is not
// registered (TestConfigFlags of stl checks that none is left out).
func (b ConfigFlag) Register(fl FlagSet, list ListVar, c *experiment.Config) {
	switch p := b.Field(c).(type) {
	case *string:
		fl.StringVar(p, b.Name, *p, b.Usage)
	case *int:
		fl.IntVar(p, b.Name, *p, b.Usage)
	case *int64:
		fl.Int64Var(p, b.Name, *p, b.Usage)
	case *float64:
		fl.Float64Var(p, b.Name, *p, b.Usage)
	case *bool:
		fl.BoolVar(p, b.Name, *p, b.Usage)
	case *[]string:
		list(p, b.Name, *p, b.Usage)
	}
}

// override sets the field of cfg to its value in flags, the flags' Config.
// Empty names are dropped from lists, so that --baselines "" means none.
func (b ConfigFlag) override(cfg, flags *experiment.Config) {
	dst, src := reflect.ValueOf(b.Field(cfg)).Elem(), reflect.ValueOf(b.Field(flags)).Elem()
	if names, ok := src.Interface().([]string); ok {
		src = reflect.ValueOf(nonEmpty(names))
	}
	dst.Set(src)
}

// Resolve merges, in increasing priority, the defaults, the --config file
// and the flags given on the command line (changed reports which). Its
// errors are UsageErrors.
func (f *RunFlags) Resolve(changed func(string) bool) (experiment.Config, error) {
	cfg := experiment.DefaultConfig()
	if f.Config != "" {
		var err error
		if cfg, err = experiment.LoadConfig(f.Config); err != nil {
			return cfg, usagef("--config: %v", err)
		}
	}
	if f.Official {
		cfg.ApplyOptions = OfficialApply(cfg.ApplyOptions, changed)
	}
	for _, b := range ConfigFlags {
		if changed(b.Name) {
			b.override(&cfg, &f.Flags)
		}
	}
	if changed("lambda-sweep") {
		cfg.LambdaSweep = []float64{}
		for _, v := range nonEmpty(f.Sweep) {
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
		cfg.Name = RunName(cfg.Data)
		if cfg.Resolution > 0 {
			cfg.Name += "-" + strconv.Itoa(cfg.Resolution)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// RunDir is the run directory: --out, or runs/<name>.
func (f *RunFlags) RunDir(cfg experiment.Config) string {
	if f.Out != "" {
		return f.Out
	}
	return filepath.Join("runs", cfg.Name)
}

// RunName derives a run name from a data spec: "sample:imagenet10" gives
// "imagenet10-sample", "../shared/data/cifar10" gives "cifar10".
func RunName(data string) string {
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
