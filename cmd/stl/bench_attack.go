package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// benchAttackFlags are the options of "stl bench attack".
type benchAttackFlags struct {
	model, data string
	images      int
	cwMaxIter   int
	threads     int
	json        bool
}

// benchAttackResult is one attack's row of the benchmark.
type benchAttackResult struct {
	Attack string `json:"attack"`
	// Passes is the number of forward+backward passes on the batch (or
	// what remains of it: DeepFool and CW drop finished images) and
	// ImagePasses the number of images they carried.
	Passes          int     `json:"passes"`
	ImagePasses     int     `json:"image_passes"`
	Seconds         float64 `json:"seconds"`
	MsPerImage      float64 `json:"ms_per_image"`
	MsPerImagePass  float64 `json:"ms_per_image_pass"`
	SuccessRate     float64 `json:"success_rate"`
	MeanDissim      float64 `json:"mean_dissim"`
	MaxLInf         float64 `json:"max_linf"`
	CleanAccuracy   float64 `json:"clean_accuracy"`
	AdvAccuracy     float64 `json:"adv_accuracy"`
	SettingsChanged string  `json:"settings_changed,omitempty"`
}

// benchAttackReport is the JSON document printed with --json.
type benchAttackReport struct {
	Model   string `json:"model"`
	Data    string `json:"data"`
	Images  int    `json:"images"`
	Threads int    `json:"threads"`
	Go      string `json:"go"`
	machine
	Results []benchAttackResult `json:"results"`
}

func init() {
	var f benchAttackFlags
	cmd := &cobra.Command{
		Use:   "attack",
		Short: "Per-image cost of each attack with the paper's settings",
		Long: `bench attack times FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW (dissimilarity 0.04)
and PGD at L-infinity 0.031 (the BPDA setting) on one batch of test images,
against --model or, by default, a freshly initialized (seeded) vgg-small at
32 px (untrained: only the cost matters). The labels are the classifier's clean predictions, so that every
attack starts from correctly classified images. Each attack's cost is its number of forward+backward passes times the
classifier's cost per image and pass; both are reported. CW runs --cw-max-iter Adam steps
per binary-search step (0: its default 1000), which the row records.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.images < 1 || f.cwMaxIter < 0 || f.threads < 0 {
				return usagef("--images must be >= 1, --cw-max-iter and --threads >= 0")
			}
			return runBenchAttack(cmd.Context(), f, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", "classifier directory (default: a seeded, untrained vgg-small at 32 px)")
	fl.StringVar(&f.data, "data", dataset.DefaultSpec, "data set whose first test images are attacked")
	fl.IntVar(&f.images, "images", 16, "images in the batch")
	fl.IntVar(&f.cwMaxIter, "cw-max-iter", 100, "CW Adam steps per binary-search step (0: default 1000)")
	fl.IntVar(&f.threads, "threads", 0, "classifier threads (0: as saved, or all cores)")
	fl.BoolVar(&f.json, "json", false, "print the results as JSON")
	benchCmd.AddCommand(cmd)
}

func runBenchAttack(ctx context.Context, f benchAttackFlags, stdout io.Writer, bar progress.Reporter) error {
	var clf *nn.Classifier
	var err error
	name := f.model
	if f.model == "" {
		name = "vgg-small (untrained, seed 1)"
		clf, err = nn.NewClassifier(nn.DefaultClassifierConfig())
	} else {
		clf, err = nn.Load(f.model)
	}
	if err != nil {
		return err
	}
	threads := runtime.NumCPU()
	if f.threads > 0 {
		threads = f.threads
		clf.SetThreads(f.threads)
	} else if f.model != "" {
		threads = clf.Config().Threads
	}
	_, h, _ := clf.InputShape()
	lo := dataset.DefaultLoadOptions()
	lo.Size = h
	_, test, err := dataset.LoadContext(ctx, f.data, lo)
	if err != nil {
		return err
	}
	set := test.Head(f.images)
	// Attack the classifier's own predictions, so that every image starts
	// correctly classified and the minimal-perturbation attacks (DeepFool,
	// CW) do their full work even on an untrained network.
	z, err := clf.Logits(ctx, set.Images)
	if err != nil {
		return err
	}
	k := clf.NumClasses()
	for i := range set.Labels {
		row := z.Data[i*k : (i+1)*k]
		set.Labels[i] = tensor.Argmax(row)
	}
	rep := benchAttackReport{Model: name, Data: set.Name, Images: set.Len(), Threads: threads, Go: runtime.Version(), machine: thisMachine()}
	for _, pname := range attack.PaperAttacks {
		a, err := attack.PaperAttack(pname, 1)
		if err != nil {
			return err
		}
		changed := ""
		if cw, ok := a.(*attack.CW); ok && f.cwMaxIter > 0 {
			o := cw.Options()
			o.MaxIter = f.cwMaxIter
			if a, err = attack.NewCW(o); err != nil {
				return err
			}
			changed = fmt.Sprintf("MaxIter=%d", f.cwMaxIter)
		}
		cm := &countingModel{Model: clf}
		start := time.Now()
		res, err := attack.RunBatched(ctx, a, cm, set.Images, set.Labels, set.Len(), bar)
		if err != nil {
			return err
		}
		sec := time.Since(start).Seconds()
		n := float64(set.Len())
		rep.Results = append(rep.Results, benchAttackResult{
			Attack: a.Name(), Passes: res.Passes, ImagePasses: cm.images, Seconds: sec,
			MsPerImage:     1e3 * sec / n,
			MsPerImagePass: 1e3 * sec / float64(max(cm.images, 1)),
			SuccessRate:    res.SuccessRate(), MeanDissim: meanOf(res.Dissim), MaxLInf: maxOf(res.LInf),
			CleanAccuracy: res.CleanAccuracy(set.Labels), AdvAccuracy: res.AdvAccuracy(set.Labels),
			SettingsChanged: changed,
		})
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintln(stdout, rep.machine)
	fmt.Fprintf(stdout, "%s, %d images of %s, %d threads\n", rep.Model, rep.Images, rep.Data, rep.Threads)
	fmt.Fprintf(stdout, "%-16s %7s %12s %10s %12s %9s %8s\n", "attack", "passes", "image-passes", "ms/image", "ms/img/pass", "success", "dissim")
	for _, r := range rep.Results {
		fmt.Fprintf(stdout, "%-16s %7d %12d %10.1f %12.2f %9.3f %8.4f %s\n", r.Attack, r.Passes, r.ImagePasses, r.MsPerImage, r.MsPerImagePass, r.SuccessRate, r.MeanDissim, r.SettingsChanged)
	}
	return nil
}

// countingModel counts the images of the gradient passes it forwards.
type countingModel struct {
	attack.Model
	images int
}

func (c *countingModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	if len(x.Shape) > 0 {
		c.images += x.Shape[0]
	}
	return c.Model.InputGrad(ctx, x, seed)
}
