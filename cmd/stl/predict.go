package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/progress"
)

// predictOptions are the flags of "stl predict".
type predictOptions struct {
	model, data, in, split string
	defense                string
	universal              bool
	limit, batch, threads  int
	json                   bool
}

func init() {
	var o predictOptions
	cmd := &cobra.Command{
		Use:   "predict --model FILE|DIR (--data SPEC | --in IMAGES) [--defense DIR|NAME] [--json]",
		Short: "Classify images with a classifier, through a defense or not",
		Long: `predict classifies images with a classifier, optionally behind a defense, and
prints one line per image (its index, label, predicted class) and a summary with the
accuracy. With --json each image is a JSON object {"index", "label", "correct",
"predicted", "logits"} on a line of its own (label and correct only when the input has
labels), and the last line is {"images", "correct", "accuracy", "defense"}
(accuracy null without labels).

The images are a data set's test (or --split train) images (--data, default the
embedded sample), or a file or folder (--in) as "stl defend" reads them: a folder of
PNG/JPEG images in class subfolders, a binary record file (.bin/.bin.gz) of the
model's image size, a float32 .npy array (N, C, H, W) (labels from X.labels.npy
beside it, if any) or an adversarial set written by "stl attack --out DIR". Pixels
must be in [0, 1].

--defense is a directory written by "stl defense train" (STL (cluster), or STL with
--universal) or a baseline that learns nothing from training images (` + joinList(freeBaselines(), "and") + `).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPredict(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "classifier: a model directory written by 'stl train classifier' or any file 'stl' loads (required)")
	f.StringVar(&o.data, "data", "", "data set (see 'stl data'); default "+dataset.DefaultSpec+" unless --in is given")
	f.StringVar(&o.split, "split", "test", "with --data: test or train")
	f.StringVar(&o.in, "in", "", "images to classify instead of a data set: a folder, a .npy, a .bin/.bin.gz or an attack's output")
	f.StringVar(&o.defense, "defense", "", "defense in front of the classifier: a directory of 'stl defense train' or a baseline name")
	f.BoolVar(&o.universal, "universal", false, "with a defense directory: the universal dictionary (STL) instead of the per-cluster ones")
	f.IntVar(&o.limit, "limit", 0, "classify only the first N images (0: all)")
	f.IntVar(&o.batch, "batch", 64, "images per batch")
	f.IntVar(&o.threads, "threads", 0, "classifier threads (0: as saved)")
	f.BoolVar(&o.json, "json", false, "one JSON object per image, then a summary object")
	rootCmd.AddCommand(cmd)
}

// freeBaselines names the baselines that learn nothing from training
// images.
func freeBaselines() []string {
	var names []string
	for _, e := range baseline.Entries() {
		if !e.Learns() {
			names = append(names, e.Name)
		}
	}
	return names
}

func runPredict(ctx context.Context, stdout, stderr io.Writer, o predictOptions) error {
	switch {
	case o.model == "":
		return usagef("--model is required")
	case o.data != "" && o.in != "":
		return usagef("--data and --in exclude each other")
	case o.split != "test" && o.split != "train":
		return usagef("--split %q: want test or train", o.split)
	case o.in != "" && o.split != "test":
		return usagef("--split applies to --data only")
	case o.limit < 0:
		return usagef("--limit %d, want >= 0", o.limit)
	case o.batch < 1:
		return usagef("--batch %d, want >= 1", o.batch)
	case o.threads < 0:
		return usagef("--threads %d, want >= 0", o.threads)
	case o.universal && o.defense == "":
		return usagef("--universal needs --defense")
	}
	m, err := experiment.LoadModel(o.model, o.threads)
	if err != nil {
		return err
	}
	c, h, w := m.InputShape()
	var t *experiment.LoadedTransform
	if o.defense != "" {
		if t, err = experiment.LoadTransform(o.defense, o.universal); err != nil {
			return err
		}
		if err := t.CheckShape(c, h, w); err != nil {
			return fmt.Errorf("model %s: %w", o.model, err)
		}
	}
	bar := progress.NewBar(stderr)
	set, labeled, err := predictInput(ctx, stderr, o, dataset.Shape{C: c, H: h, W: w}, bar)
	if err != nil {
		return err
	}
	var labels []int
	if labeled {
		labels = set.Labels
	}
	enc := json.NewEncoder(stdout)
	each := func(p experiment.Prediction) error {
		if o.json {
			return enc.Encode(p)
		}
		line := fmt.Sprintf("%d\tpredicted %s", p.Index, className(set.Classes, p.Predicted))
		if p.Label != nil {
			line += fmt.Sprintf("\tlabel %s", className(set.Classes, *p.Label))
			if !*p.Correct {
				line += "\twrong"
			}
		}
		_, err := fmt.Fprintln(stdout, line)
		return err
	}
	var tr defense.Transform
	if t != nil {
		tr = t.Transform
	}
	sum, err := experiment.Predict(ctx, m, tr, set.Images, labels, o.batch, each, bar)
	if err != nil {
		return err
	}
	if o.json {
		return enc.Encode(sum)
	}
	through := ""
	if sum.Defense != "" {
		through = " through " + sum.Defense
	}
	if sum.Accuracy == nil {
		_, err = fmt.Fprintf(stdout, "%d images classified by %s%s (no labels: no accuracy)\n", sum.Images, o.model, through)
	} else {
		_, err = fmt.Fprintf(stdout, "%d images classified by %s%s: accuracy %.4f (%d correct)\n", sum.Images, o.model, through, *sum.Accuracy, sum.Correct)
	}
	return err
}

// predictInput reads the images of --in or --data (the first --limit);
// labeled is false for an .npy without labels.
func predictInput(ctx context.Context, stderr io.Writer, o predictOptions, shape dataset.Shape, rep progress.Reporter) (*dataset.Set, bool, error) {
	if o.in == "" && o.data == "" {
		fmt.Fprintf(stderr, "stl: no --data or --in given; using the embedded sample %s\n", dataset.DefaultSpec)
	}
	set, labeled, err := experiment.LoadPredictInput(ctx, experiment.PredictInput{In: o.in, Data: o.data, Split: o.split, Limit: o.limit}, shape, rep)
	if errors.Is(err, experiment.ErrImageForm) {
		return nil, false, usagef("--in %v", err)
	}
	return set, labeled, err
}

// className is "k (name)" when classes names class k, else "k".
func className(classes []string, k int) string {
	if k >= 0 && k < len(classes) && classes[k] != fmt.Sprint(k) {
		return fmt.Sprintf("%d (%s)", k, classes[k])
	}
	return fmt.Sprint(k)
}
