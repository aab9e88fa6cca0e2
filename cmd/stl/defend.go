package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/cli"
	"github.com/stl-defense/stl/progress"
)

// defendOptions are the flags of "stl defend".
type defendOptions struct {
	defense   string
	in, out   string
	universal bool
	batch     int
	shard     dataset.Shard
	// data, baselineDir and baselineTrain serve a baseline that learns
	// from training images (experiment.ProjectOptions).
	data, baselineDir string
	baselineTrain     int
	// solver is the CBPDN algorithm of an STL defense's projection.
	solver string
}

func init() {
	var o defendOptions
	cmd := &cobra.Command{
		Use:   "defend --defense DIR|BASELINE --in IMAGES --out IMAGES",
		Short: "Project images with a saved defense (STL (cluster), or STL with --universal) or a baseline",
		Long: `defend applies a defense built by "stl defense train" to images: each image is routed
to its cluster by the auto-encoder and the kNN vote and projected onto that cluster's
dictionary ("STL (cluster)"), or onto the universal dictionary with --universal ("STL").
The output mapping and the cluster assignment are those the defense was trained with
(its manifest): a defense trained with --cluster-assignment transductive clusters the
whole input set with its training codes (every shard takes its part of that).

IMAGES may be a folder of PNG/JPEG images in class subfolders (IN/<class>/*.png), a
binary record file (.bin or .bin.gz: 1 label byte + C*H*W planar bytes per image, as
CIFAR-10), a float32 .npy array (N, C, H, W) (with X.labels.npy beside it, if any)
or an adversarial set written by "stl attack --out DIR" (DIR or DIR/adv.npy; its
labels are kept: the true classes, or the target classes of a targeted attack).
The output's form follows its name: .npy (with X.labels.npy and X.classes.txt when
the input has labels), .bin, or else a PNG folder. The images must have the
resolution and channel count the defense was built for.

--defense may instead name a baseline (jpeg, tvm, d3, ...; see docs/baselines.md), applied
with its published options. One that learns from clean training images (quilt, magnet,
d3, ...) learns from the training images of --data at the input's resolution, cached in
--baseline-dir as stl attack and stl evaluate cache it; binary records, which do not say
their image size, are not read for a baseline.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDefend(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.defense, "defense", "", "defense directory written by 'stl defense train', or a baseline ("+strings.Join(baseline.Names(), ", ")+") (required)")
	f.StringVar(&o.data, "data", "", "data set whose training images a learning baseline ("+joinList(cli.LearningBaselines(), "or")+") learns from")
	f.StringVar(&o.baselineDir, "baseline-dir", "", "cache of what the baselines learn, as for 'stl attack' (default: 'baselines' beside --out)")
	f.IntVar(&o.baselineTrain, "baseline-train", 0, "train learning baselines on a class-balanced subset of this many training images (0: all)")
	f.StringVar(&o.in, "in", "", "images to project (required)")
	f.StringVar(&o.out, "out", "", "where to write the projected images (required)")
	f.BoolVar(&o.universal, "universal", false, "use the universal dictionary (STL) instead of the per-cluster ones (STL (cluster))")
	f.StringVar(&o.solver, "solver", "admm", `CBPDN solver of the STL projection: "admm" (the paper's reference solver) or "active-set" (an objective certified within 5e-5 of the optimum; 2.3-2.4x less CPU than ADMM for the whole command on the learned 32 and 64 px defenses measured; docs/csc.md)`)
	f.IntVar(&o.batch, "batch", 64, "images projected per batch (progress and cancellation granularity)")
	f.Var(shardFlag{&o.shard}, "shard", "project only part i of n of the images (0-based, e.g. 3/8; contiguous, sizes within one) for array jobs; the parts' outputs concatenated in order equal one run's")
	rootCmd.AddCommand(cmd)
}

func runDefend(ctx context.Context, stdout, stderr io.Writer, o defendOptions) error {
	if o.solver == "" {
		o.solver = csc.MethodADMM.String()
	}
	solver, serr := csc.ParseMethod(o.solver)
	po := experiment.ProjectOptions{Defense: o.defense, In: o.in, Out: o.out, Universal: o.universal, Batch: o.batch, Shard: o.shard,
		Data: o.data, BaselineDir: o.baselineDir, BaselineTrain: o.baselineTrain, Solver: solver}
	switch err := po.Validate(); {
	case serr != nil:
		return usagef("--solver %q: want admm or active-set", o.solver)
	case o.defense == "" || o.in == "" || o.out == "":
		return usagef("--defense, --in and --out are required")
	case o.batch < 1:
		return usagef("--batch %d, want >= 1", o.batch)
	case o.baselineTrain < 0:
		return usagef("--baseline-train %d, want >= 0", o.baselineTrain)
	case errors.Is(err, experiment.ErrOverwrite):
		return usagef("--out %s: %v", o.out, err)
	case err != nil:
		return usagef("%v", err)
	}
	res, err := experiment.Project(ctx, po, progress.NewBar(stderr))
	if errors.Is(err, experiment.ErrImageForm) {
		return usagef("--in %v", err)
	}
	if err != nil {
		return err
	}
	if res.Resumed > 0 {
		fmt.Fprintf(stdout, "resumed: %d of %d images were projected by an earlier, interrupted run\n", res.Resumed, res.Images)
	}
	// The rate counts only the images this run projected.
	done := res.Images - res.Resumed
	fmt.Fprintf(stdout, "%s: projected %d images with %s in %s (%.1f images/s) -> %s\n",
		o.in, done, res.Transform, res.Elapsed.Round(time.Millisecond), float64(done)/res.Elapsed.Seconds(), o.out)
	if res.AttackSet != "" {
		fmt.Fprintf(stdout, "adversarial set %s (%s): %d labels kept\n", res.AttackSet, res.SetName, res.Images)
	}
	if res.ClusterSizes != nil {
		fmt.Fprintf(stdout, "images per cluster: %v\n", res.ClusterSizes)
	}
	if res.Baseline == "" {
		fmt.Fprintf(stdout, "applied with the defense's options: %s\n", res.Apply.Describe())
	}
	return nil
}

// shardFlag is a dataset.Shard as a flag value ("i/n").
type shardFlag struct{ s *dataset.Shard }

func (f shardFlag) String() string {
	if f.s == nil {
		return ""
	}
	return f.s.String()
}

func (f shardFlag) Set(v string) error {
	sh, err := dataset.ParseShard(v)
	if err != nil {
		return err
	}
	*f.s = sh
	return nil
}

func (shardFlag) Type() string { return "i/n" }
