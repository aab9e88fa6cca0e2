package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// trainFlags are the options of "stl train classifier" and "stl train dae".
type trainFlags struct {
	arch      string
	data      string
	size      int
	limit     int
	epochs    int
	batch     int
	lr        float64
	schedule  string
	wd        float64
	smoothing float64
	cutout    int
	dropout   float64
	sigma     float64
	seed      uint64
	threads   int
	out       string
	resume    bool
	conv      string
	adv       advFlags // classifier only
}

var trainCmd = &cobra.Command{
	Use:   "train",
	Short: "Train a classifier or the denoising auto-encoder",
	Args:  cobra.NoArgs,
	RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
}

func init() {
	var cf, df trainFlags
	classifier := &cobra.Command{
		Use:   "classifier --out DIR [--arch " + strings.Join(nn.ClassifierArchNames(), "|") + "] [--data SPEC]",
		Short: "Train " + orList(nn.ClassifierArchNames()) + " with SGD, one-cycle LR, crop+flip augmentation",
		Long: `classifier trains a classifier on the training part of --data and reports the test
accuracy after every epoch. Every epoch is checkpointed in --out (atomic writes); after an
interruption (exit code 130) run the same command with --resume to continue exactly where
it stopped. The final model is --out/model.safetensors with --out/model.json (architecture,
input size, normalization, data set, seed, accuracy). The same seed and --threads give the
same model.

--adv pgd or --adv fgsm-rs trains adversarially: every batch is replaced by adversarial
examples of the current model at L-infinity --adv-eps (default 8/255), PGD with 7 steps of
2/255 from a random start (Madry et al. 2018) or FGSM with random start and one step of
1.25 eps (Wong et al. 2020), costing about 8 or 2 times a standard epoch. With
--adv-defense DIR the classifier is trained behind the defense's projection T on T(x_adv),
the examples attacking it through T by BPDA (the STL + AT defender of the paper's Table 4);
each attack step then projects the batch once. --adv-fraction makes only a share of each
batch adversarial. The examples are drawn per batch from --seed, so --resume stays exact.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.check(); err != nil {
				return err
			}
			return runTrainClassifier(cmd.Context(), cf, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	dae := &cobra.Command{
		Use:   "dae --out DIR [--data SPEC]",
		Short: "Train the denoising auto-encoder whose latent codes stratify the image space",
		Long: `dae trains the DAE of section 3.4 on clean training images and Gaussian-noised copies
(--sigma, clipped to [0,1]) with binary cross-entropy and Adam. Checkpoints, --resume and
the saved files are as for "stl train classifier".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := df.check(); err != nil {
				return err
			}
			return runTrainDAE(cmd.Context(), df, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	def := nn.DefaultTrainOptions()
	ddef := nn.DefaultDAETrainOptions()
	common := func(c *cobra.Command, f *trainFlags, epochs, batch int, lr float64, sched string) {
		fl := c.Flags()
		fl.StringVar(&f.data, "data", dataset.DefaultSpec, "data set spec (see 'stl data')")
		fl.IntVar(&f.size, "size", 0, "resize image folders to this side in pixels (0: as stored)")
		fl.IntVar(&f.limit, "limit", 0, "use only the first N training images (0: all)")
		fl.IntVar(&f.epochs, "epochs", epochs, "training epochs")
		fl.IntVar(&f.batch, "batch", batch, "batch size")
		fl.Float64Var(&f.lr, "lr", lr, "learning rate (the peak of the one-cycle schedule)")
		fl.StringVar(&f.schedule, "schedule", sched, "learning-rate schedule: onecycle, cosine, step or constant")
		fl.Uint64Var(&f.seed, "seed", 1, "seed of the initialization, shuffling, augmentation and noise")
		fl.IntVar(&f.threads, "threads", runtime.NumCPU(), "threads (results are reproducible for a given count)")
		fl.StringVar(&f.out, "out", "", "output and checkpoint directory (required)")
		fl.BoolVar(&f.resume, "resume", false, "continue from the checkpoint in --out")
		fl.StringVar(&f.conv, "conv", "", "convolution backend: "+fmt.Sprint(nn.ConvBackends())+" (default: the first)")
		c.MarkFlagRequired("out")
	}
	common(classifier, &cf, def.Epochs, def.BatchSize, def.LR, string(def.Schedule))
	classifier.Flags().StringVar(&cf.arch, "arch", nn.ArchVGGSmall, "architecture: "+orList(nn.ClassifierArchNames()))
	classifier.Flags().Float64Var(&cf.wd, "wd", def.SGD.WeightDecay, "weight decay")
	classifier.Flags().Float64Var(&cf.smoothing, "smoothing", 0, "label smoothing")
	classifier.Flags().IntVar(&cf.cutout, "cutout", 0, "cutout augmentation: side of the square set to gray (0: off)")
	classifier.Flags().Float64Var(&cf.dropout, "dropout", 0, "dropout before the vgg-small dense layers")
	cf.adv.register(classifier.Flags())
	common(dae, &df, ddef.Epochs, ddef.BatchSize, ddef.LR, string(ddef.Schedule))
	dae.Flags().Float64Var(&df.sigma, "sigma", ddef.NoiseSigma, "std of the Gaussian training noise (pixels in [0,1])")
	trainCmd.AddCommand(classifier, dae)
	rootCmd.AddCommand(trainCmd)
}

func (f trainFlags) check() error {
	if f.out == "" {
		return usagef("--out is required")
	}
	if f.epochs < 1 || f.batch < 2 || !(f.lr > 0) || f.threads < 1 || f.limit < 0 || f.size < 0 {
		return usagef("--epochs, --threads must be >= 1, --batch >= 2, --lr > 0, --limit and --size >= 0")
	}
	switch nn.ScheduleKind(f.schedule) {
	case nn.ScheduleOneCycle, nn.ScheduleCosine, nn.ScheduleStep, nn.ScheduleConstant:
	default:
		return usagef("--schedule %q: want onecycle, cosine, step or constant", f.schedule)
	}
	if f.wd < 0 || f.smoothing < 0 || f.smoothing >= 1 || f.sigma < 0 || f.cutout < 0 || f.dropout < 0 || f.dropout >= 1 {
		return usagef("--wd, --sigma and --cutout must be >= 0, --smoothing and --dropout in [0,1)")
	}
	_, err := f.adv.options(f.seed)
	return err
}

// checkOut refuses to overwrite an existing training run unless resuming,
// and to resume where there is nothing to resume.
func checkOut(f trainFlags) error {
	_, err := os.Stat(filepath.Join(f.out, "train_state.json"))
	if f.resume {
		if err != nil {
			return usagef("--resume: %s holds no training checkpoint (train_state.json); run without --resume to start training", f.out)
		}
		return nil
	}
	if err == nil {
		return usagef("%s holds a training run; add --resume to continue it or choose another --out", f.out)
	}
	return nil
}

func loadTrainData(ctx context.Context, f trainFlags, w io.Writer) (train, test *dataset.Set, err error) {
	train, test, err = dataset.LoadContext(ctx, f.data, dataset.LoadOptions{Size: f.size})
	if err != nil {
		return nil, nil, err
	}
	if f.limit > 0 && f.limit < train.Len() {
		train = train.Head(f.limit)
	}
	fmt.Fprintf(w, "data %s: %d train, %d test images of %s\n", f.data, train.Len(), test.Len(), train.Shape())
	return train, test, nil
}

// pixelStats returns the per-channel mean and standard deviation of a
// batch, the classifier's input normalization.
func pixelStats(x *tensor.Tensor) (mean, std []float32) {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Len() / (n * c)
	for ch := 0; ch < c; ch++ {
		var s, ss float64
		for i := 0; i < n; i++ {
			for _, v := range x.Data[(i*c+ch)*hw : (i*c+ch+1)*hw] {
				s += float64(v)
				ss += float64(v) * float64(v)
			}
		}
		m := s / float64(n*hw)
		sd := math.Sqrt(math.Max(ss/float64(n*hw)-m*m, 1e-8))
		mean, std = append(mean, float32(m)), append(std, float32(sd))
	}
	return mean, std
}

func printEpoch(w io.Writer, e nn.EpochStats) {
	{
		line := fmt.Sprintf("epoch %3d  lr %.4g  train loss %.4f", e.Epoch, e.LR, e.TrainLoss)
		if !math.IsNaN(e.TrainAcc) {
			line += fmt.Sprintf(" acc %.2f%%", 100*e.TrainAcc)
		}
		if !math.IsNaN(e.TestLoss) {
			line += fmt.Sprintf("  test loss %.4f", e.TestLoss)
		}
		if !math.IsNaN(e.TestAcc) {
			line += fmt.Sprintf(" acc %.2f%%", 100*e.TestAcc)
		}
		line += fmt.Sprintf("  %.0fs %.0f img/s", e.Seconds, e.ImgPerSec)
		fmt.Fprintln(w, line)
	}
}

func runTrainClassifier(ctx context.Context, f trainFlags, w io.Writer, bar progress.Reporter) error {
	if err := checkOut(f); err != nil {
		return err
	}
	train, test, err := loadTrainData(ctx, f, w)
	if err != nil {
		return err
	}
	cfg := nn.DefaultClassifierConfig()
	sh := train.Shape()
	cfg.Arch, cfg.Channels, cfg.Height, cfg.Width = f.arch, sh.C, sh.H, sh.W
	cfg.Classes = len(train.Classes)
	if cfg.Classes < 2 {
		for _, y := range train.Labels {
			cfg.Classes = max(cfg.Classes, y+1)
		}
	}
	cfg.Mean, cfg.Std = pixelStats(train.Images)
	cfg.Seed, cfg.Threads, cfg.ConvBackend, cfg.Dropout = f.seed, f.threads, f.conv, f.dropout
	m, err := nn.NewClassifier(cfg)
	if err != nil {
		var ce *nn.ConfigError
		if errors.As(err, &ce) {
			return usageError{err}
		}
		return err
	}
	o := nn.DefaultTrainOptions()
	o.Epochs, o.BatchSize, o.LR, o.Schedule = f.epochs, f.batch, f.lr, nn.ScheduleKind(f.schedule)
	o.SGD.WeightDecay, o.LabelSmoothing, o.Seed, o.Cutout = f.wd, f.smoothing, f.seed, f.cutout
	o.CheckpointDir, o.Resume, o.Dataset = f.out, f.resume, f.data
	o.EpochDone = func(e nn.EpochStats) { printEpoch(w, e) }
	if o.BatchHook, err = setupAdv(f, m, w); err != nil {
		return err
	}
	_, err = nn.Train(ctx, m, nn.Labeled{Images: train.Images, Labels: train.Labels},
		nn.Labeled{Images: test.Images, Labels: test.Labels}, o, bar)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "saved %s (test accuracy %.2f%%, %.0f s)\n", filepath.Join(f.out, nn.WeightsFile), 100*m.Meta.TestAccuracy, m.Meta.Seconds)
	return nil
}

func runTrainDAE(ctx context.Context, f trainFlags, w io.Writer, bar progress.Reporter) error {
	if err := checkOut(f); err != nil {
		return err
	}
	train, test, err := loadTrainData(ctx, f, w)
	if err != nil {
		return err
	}
	cfg := nn.DefaultDAEConfig()
	sh := train.Shape()
	cfg.Channels, cfg.Height, cfg.Width = sh.C, sh.H, sh.W
	cfg.Seed, cfg.Threads, cfg.ConvBackend = f.seed, f.threads, f.conv
	d, err := nn.NewDAE(cfg)
	if err != nil {
		var ce *nn.ConfigError
		if errors.As(err, &ce) {
			return usageError{err}
		}
		return err
	}
	o := nn.DefaultDAETrainOptions()
	o.Epochs, o.BatchSize, o.LR, o.Schedule = f.epochs, f.batch, f.lr, nn.ScheduleKind(f.schedule)
	o.NoiseSigma, o.Seed = f.sigma, f.seed
	o.CheckpointDir, o.Resume, o.Dataset = f.out, f.resume, f.data
	o.EpochDone = func(e nn.EpochStats) { printEpoch(w, e) }
	if _, err := nn.TrainDAE(ctx, d, train.Images, test.Images, o, bar); err != nil {
		return err
	}
	fmt.Fprintf(w, "saved %s (test BCE %.4f, latent %d values per image)\n", filepath.Join(f.out, nn.WeightsFile), d.Meta.TestLoss, d.LatentDim())
	return nil
}
