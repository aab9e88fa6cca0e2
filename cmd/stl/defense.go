package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/progress"
)

// defenseCmd groups the commands that build saved defenses.
var defenseCmd = &cobra.Command{
	Use:   "defense",
	Short: "Build saved STL defenses",
	Args:  cobra.NoArgs,
	RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
}

// defenseTrainOptions are the flags of "stl defense train".
type defenseTrainOptions struct {
	data     string
	out      string
	size     int
	limit    int
	official bool // --official: resolved into train.ApplyOptions before runDefenseTrain
	train    defense.TrainOptions
}

func init() {
	o := defenseTrainOptions{train: defense.DefaultTrainOptions()}
	cmd := &cobra.Command{
		Use:   "train --out DIR [--data SPEC]",
		Short: "Train a stratified STL defense (DAE, clusters, dictionaries) and save it to a directory",
		Long: `train builds the defense of the paper (sections 3.3-3.4): a denoising auto-encoder on
the training images downsampled to 32x32, PCA of its latent codes, k-means++ clusters,
one convolutional dictionary per cluster and a universal one. The defense directory
(dictionaries as SPORCO .npy, the DAE, PCA, centres, vote codes, manifest.json) is
what "stl defend" applies. --output-mapping, --quantize-8bit and --cluster-assignment
(or --official for the released code's choices) set how the defense maps its output
and assigns clusters; the manifest records them. Finished pieces are checkpointed in DIR/checkpoints, so an
interrupted run resumes when started again with the same settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run := o
			if run.official {
				run.train.ApplyOptions = officialApply(run.train.ApplyOptions, cmd.Flags().Changed)
			}
			return runDefenseTrain(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), run)
		},
	}
	f := cmd.Flags()
	t := &o.train
	f.StringVar(&o.data, "data", dataset.DefaultSpec, "training data: a sample (sample:cifar10, sample:imagenet10), a CIFAR-10 or record folder, an image folder or archive")
	f.StringVar(&o.out, "out", "", "directory to write the defense to (required)")
	f.IntVar(&o.size, "size", 0, "side images of image folders are resized to (0: the data set's own)")
	f.IntVar(&o.limit, "limit", 0, "train on at most this many images: a class-balanced subset seeded by --seed (0: all)")
	f.IntVar(&t.Clusters, "clusters", t.Clusters, "number of k-means clusters (paper: 4 for CIFAR-10 and ImageNet-10, 10 for ImageNet)")
	f.Float64Var(&t.Lambda, "lambda", t.Lambda, "sparsity weight of dictionary learning and projection")
	f.IntVar(&t.Filters, "filters", t.Filters, "filters per dictionary")
	f.IntVar(&t.FilterSize, "filter-size", t.FilterSize, "filter side in pixels")
	f.IntVar(&t.DictImages, "dict-images", t.DictImages, "images each dictionary is learned on, a seeded subset (0: all)")
	f.IntVar(&t.DictIterations, "dict-iterations", t.DictIterations, "dictionary learning iterations")
	f.IntVar(&t.DAEEpochs, "dae-epochs", t.DAEEpochs, "denoising auto-encoder training epochs")
	f.IntVar(&t.EncoderResolution, "dae-resolution", t.EncoderResolution, "side images are downsampled to for the auto-encoder")
	f.IntVar(&t.PCAComponents, "pca", t.PCAComponents, "latent code dimensions kept by PCA")
	f.IntVar(&t.KNN, "knn", t.KNN, "training codes that vote for an image's cluster")
	f.IntVar(&t.KMeansRestarts, "restarts", t.KMeansRestarts, "k-means++ restarts")
	f.Int64Var(&t.Seed, "seed", t.Seed, "master seed")
	applyFlags(f, &t.ApplyOptions, &o.official)
	defenseCmd.AddCommand(cmd)
	rootCmd.AddCommand(defenseCmd)
}

func runDefenseTrain(ctx context.Context, stdout, stderr io.Writer, o defenseTrainOptions) error {
	if o.out == "" {
		return usagef("--out DIR is required")
	}
	if o.limit < 0 || o.size < 0 {
		return usagef("--limit and --size must be >= 0")
	}
	if err := o.train.Validate(); err != nil {
		return usagef("%v", err)
	}
	if o.data == dataset.DefaultSpec {
		fmt.Fprintf(stderr, "stl: no --data given; training on the shipped sample %s\n", o.data)
	}
	bar := progress.NewBar(stderr)
	lopt := dataset.DefaultLoadOptions()
	lopt.Size, lopt.Progress = o.size, bar
	train, _, err := dataset.LoadContext(ctx, o.data, lopt)
	if err != nil {
		return err
	}
	if o.limit > 0 && o.limit < train.Len() {
		if train, err = train.BalancedSubset(o.limit, o.train.Seed); err != nil {
			return err
		}
	}
	n, c, h, w, err := train.Images.NCHW()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "stl: training a defense on %d images of %dx%dx%d from %s\n", n, c, h, w, train.Name)
	o.train.CheckpointDir = filepath.Join(o.out, "checkpoints")
	start := time.Now()
	d, err := defense.Train(ctx, train.Images, o.train, bar)
	if err != nil {
		return err
	}
	if err := defense.Save(o.out, d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "defense saved to %s (%d clusters of %v images, %d filters %dx%d, lambda %g) in %s\n",
		o.out, d.Manifest.Clusters, d.Manifest.ClusterSizes, d.Manifest.Filters, d.Manifest.FilterSize, d.Manifest.FilterSize,
		d.Manifest.Lambda, time.Since(start).Round(time.Second))
	fmt.Fprintf(stdout, "applied with: %s\n", d.Manifest.Apply.Describe())
	return nil
}
