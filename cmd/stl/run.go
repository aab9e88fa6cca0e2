package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/progress"
)

// runOptions are the flags of `stl run`.
type runOptions struct {
	out, config string
	sweep       []string // --lambda-sweep, parsed in resolve so that "" means none
	cfg         experiment.Config
}

func init() { rootCmd.AddCommand(newRunCmd()) }

func newRunCmd() *cobra.Command {
	o := &runOptions{cfg: experiment.DefaultConfig()}
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
too.

--vanilla DIR evaluates the defenses in front of a classifier trained
beforehand with stl train classifier instead of training one; its input size
and classes must match the data (after --resolution), and replacing its
weights recomputes the attacks and everything after them.`,
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
	d := &o.cfg
	f.StringVar(&o.out, "out", "", "run directory (default runs/<name>)")
	f.StringVar(&o.config, "config", "", "YAML or JSON configuration file; flags override it")
	f.StringVar(&d.Name, "name", d.Name, "run name")
	f.StringVar(&d.Data, "data", d.Data, "data set: sample:cifar10, sample:imagenet10, or a path")
	f.IntVar(&d.Resolution, "resolution", d.Resolution, "image side in pixels for folders (0: the data's own)")
	f.StringVar(&d.Arch, "arch", d.Arch, "classifier: vgg-small or resnet-20")
	f.Int64Var(&d.Seed, "seed", d.Seed, "seed of every random choice")
	f.IntVar(&d.Limit, "limit", d.Limit, "use at most this many training images (class-balanced; 0: all)")
	f.IntVar(&d.TestLimit, "test-limit", d.TestLimit, "use at most this many test images (class-balanced; 0: all)")
	f.IntVar(&d.Epochs, "epochs", d.Epochs, "training epochs of the vanilla classifier")
	f.IntVar(&d.RetrainEpochs, "retrain-epochs", d.RetrainEpochs, "training epochs of the retrained classifiers (0: --epochs)")
	f.IntVar(&d.BatchSize, "batch-size", d.BatchSize, "training mini-batch size")
	f.Float64Var(&d.LearningRate, "lr", d.LearningRate, "initial learning rate")
	f.IntVar(&d.Cutout, "cutout", d.Cutout, "cutout augmentation: side of the square zeroed in each training image, for every classifier the run trains (0: none)")
	f.Float64Var(&d.Dropout, "dropout", d.Dropout, "dropout before the vgg-small dense layers, for every classifier the run trains, in [0,1)")
	f.StringVar(&d.VanillaModel, "vanilla", d.VanillaModel, "load the vanilla classifier from this model directory (written by stl train classifier) instead of training it")
	f.Float64Var(&d.Lambda, "lambda", d.Lambda, "CBPDN sparsity weight (paper: 0.2)")
	f.IntVar(&d.Filters, "filters", d.Filters, "dictionary filters (paper: 64)")
	f.IntVar(&d.FilterSize, "filter-size", d.FilterSize, "filter side in pixels (paper: 8)")
	f.IntVar(&d.Clusters, "clusters", d.Clusters, "latent-space clusters (paper: 4 for CIFAR-10)")
	f.IntVar(&d.DictImages, "dict-images", d.DictImages, "images each dictionary is learned on (0: all)")
	f.IntVar(&d.DictIterations, "dict-iterations", d.DictIterations, "dictionary-learning iterations")
	f.IntVar(&d.DAEEpochs, "dae-epochs", d.DAEEpochs, "training epochs of the denoising auto-encoder")
	f.StringSliceVar(&d.Attacks, "attacks", d.Attacks, "attacks to run (FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW)")
	f.IntVar(&d.AttackSubset, "attack-subset", d.AttackSubset, "test images attacked, a class-balanced seeded subset (0: all)")
	f.IntVar(&d.CWIterations, "cw-iterations", d.CWIterations, "Adam steps per binary-search step of CW")
	f.IntVar(&d.CWBinarySteps, "cw-binary-steps", d.CWBinarySteps, "binary-search steps of CW")
	f.StringSliceVar(&d.Baselines, "baselines", d.Baselines, `baseline defenses ("all", or names such as jpeg,tvm,quilt; "" for none)`)
	f.BoolVar(&d.RetrainBaselines, "retrain-baselines", d.RetrainBaselines, "also retrain a classifier on each baseline (Table 1 form)")
	f.IntVar(&d.GridImages, "grid-images", d.GridImages, "examples in the image grid")
	f.StringSliceVar(&o.sweep, "lambda-sweep", []string{"0.05", "0.1", "0.2", "0.3", "0.5"}, "lambdas of the Figure 5 study (\"\" for none)")
	f.BoolVar(&d.WhiteBox, "whitebox", d.WhiteBox, "add the white-box Table 4 form (PGD L-inf 0.031 through BPDA, EOT for randomized defenses) and its sanity checks (accuracy vs iterations and vs epsilon, noise and transfer controls)")
	f.IntVar(&d.WhiteBoxSteps, "whitebox-steps", d.WhiteBoxSteps, "PGD steps of the white-box attack")
	f.IntVar(&d.EOTDraws, "eot-draws", d.EOTDraws, "EOT draws per gradient for randomized defenses")
	f.StringSliceVar(&d.WhiteBoxLosses, "whitebox-losses", d.WhiteBoxLosses, "losses of the white-box PGD, one Table 4 column each: ce (cross-entropy; required, the sanity checks use it), cw (Carlini-Wagner margin)")
	f.Float64Var(&d.WhiteBoxCWKappa, "whitebox-cw-kappa", d.WhiteBoxCWKappa, "confidence kappa of the white-box CW loss: images stop moving once misclassified by kappa logits (0: Carlini-Wagner's f6; a positive value strengthens it against randomized defenses)")
	f.IntVar(&d.WhiteBoxSubset, "whitebox-subset", d.WhiteBoxSubset, "run the white-box table and its sanity checks on a class-balanced seeded subset of this many attacked images (0: all)")
	f.BoolVar(&d.SanityBaselines, "sanity-baselines", d.SanityBaselines, "also run the white-box sanity checks on every baseline (about 6 times its white-box attack again, EOT for randomized ones)")
	runOpts[cmd] = o
	return cmd
}

// runOpts maps each run command to its options, for tests.
var runOpts = map[*cobra.Command]*runOptions{}

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
	set := map[string]func(){
		"name": func() { cfg.Name = o.cfg.Name }, "data": func() { cfg.Data = o.cfg.Data },
		"resolution": func() { cfg.Resolution = o.cfg.Resolution }, "arch": func() { cfg.Arch = o.cfg.Arch },
		"seed": func() { cfg.Seed = o.cfg.Seed }, "limit": func() { cfg.Limit = o.cfg.Limit },
		"test-limit": func() { cfg.TestLimit = o.cfg.TestLimit }, "epochs": func() { cfg.Epochs = o.cfg.Epochs },
		"retrain-epochs": func() { cfg.RetrainEpochs = o.cfg.RetrainEpochs }, "batch-size": func() { cfg.BatchSize = o.cfg.BatchSize },
		"lr": func() { cfg.LearningRate = o.cfg.LearningRate }, "lambda": func() { cfg.Lambda = o.cfg.Lambda },
		"cutout": func() { cfg.Cutout = o.cfg.Cutout }, "dropout": func() { cfg.Dropout = o.cfg.Dropout },
		"vanilla": func() { cfg.VanillaModel = o.cfg.VanillaModel },
		"filters": func() { cfg.Filters = o.cfg.Filters }, "filter-size": func() { cfg.FilterSize = o.cfg.FilterSize },
		"clusters": func() { cfg.Clusters = o.cfg.Clusters }, "dict-images": func() { cfg.DictImages = o.cfg.DictImages },
		"dict-iterations": func() { cfg.DictIterations = o.cfg.DictIterations }, "dae-epochs": func() { cfg.DAEEpochs = o.cfg.DAEEpochs },
		"attacks": func() { cfg.Attacks = o.cfg.Attacks }, "attack-subset": func() { cfg.AttackSubset = o.cfg.AttackSubset },
		"cw-iterations": func() { cfg.CWIterations = o.cfg.CWIterations }, "cw-binary-steps": func() { cfg.CWBinarySteps = o.cfg.CWBinarySteps },
		"baselines":         func() { cfg.Baselines = nonEmpty(o.cfg.Baselines) },
		"retrain-baselines": func() { cfg.RetrainBaselines = o.cfg.RetrainBaselines },
		"grid-images":       func() { cfg.GridImages = o.cfg.GridImages },
		"lambda-sweep":      func() { cfg.LambdaSweep = nil },
		"whitebox":          func() { cfg.WhiteBox = o.cfg.WhiteBox },
		"whitebox-steps":    func() { cfg.WhiteBoxSteps = o.cfg.WhiteBoxSteps },
		"eot-draws":         func() { cfg.EOTDraws = o.cfg.EOTDraws },
		"whitebox-losses":   func() { cfg.WhiteBoxLosses = nonEmpty(o.cfg.WhiteBoxLosses) },
		"whitebox-cw-kappa": func() { cfg.WhiteBoxCWKappa = o.cfg.WhiteBoxCWKappa },
		"whitebox-subset":   func() { cfg.WhiteBoxSubset = o.cfg.WhiteBoxSubset },
		"sanity-baselines":  func() { cfg.SanityBaselines = o.cfg.SanityBaselines },
	}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if apply, ok := set[fl.Name]; ok {
			apply()
		}
	})
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
