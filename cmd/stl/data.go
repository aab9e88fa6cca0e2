package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/dataset/fetch"
	"github.com/stl-defense/stl/progress"
)

// dataCmd groups the data set commands.
var dataCmd = &cobra.Command{
	Use:   "data",
	Short: "List, download, inspect and convert data sets",
	Long: `Data sets are named by a spec (the --data flag of every command):

  sample:cifar10      the CIFAR-10 sample built into stl (2,000 train + 500 test, 32x32)
  sample:imagenet10   the ImageNet-10 sample built into stl (500 + 200, 64x64, Imagenette classes)
  cifar10, imagenette a data set downloaded by 'stl data fetch' into the data directory
  DIR                 a CIFAR-10 binary folder, a train_HxW.bin/val_HxW.bin record folder,
                      train/ and val/ image folders, or a folder written by 'stl data export'
  FILE.tar.gz|.tgz    the cifar-10-binary archive or an image-folder archive

The data directory is $STL_DATA, else the user cache directory (~/.cache/stl).`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
}

// dataFetchOptions are the flags of "stl data fetch".
type dataFetchOptions struct {
	dir     string
	retries int
}

// dataShowOptions are the flags of "stl data show".
type dataShowOptions struct {
	data string
	size int
}

// dataConvertOptions are the flags of "stl data convert".
type dataConvertOptions struct {
	data string
	out  string
	size int
}

// dataExportOptions are the flags of "stl data export".
type dataExportOptions struct {
	data   string
	out    string
	format string
	size   int
	limit  int
	seed   int64
}

func init() {
	var fo dataFetchOptions
	fetchCmd := &cobra.Command{
		Use:   "fetch NAME... [--dir DIR]",
		Short: "Download data sets (cifar10, imagenette), resumably and verified",
		Long: `fetch downloads the named data sets from their official addresses into DIR/NAME/.
An interrupted download is resumed when run again; the result is checked against the
published size and checksum (CIFAR-10: md5; Imagenette publishes none, so only a
truncated transfer is caught there).`,
		Args:      cobra.MinimumNArgs(1),
		ValidArgs: fetch.Names(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDataFetch(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args, fo)
		},
	}
	fetchCmd.Flags().StringVar(&fo.dir, "dir", "", "data directory (default $STL_DATA, else the user cache directory)")
	fetchCmd.Flags().IntVar(&fo.retries, "retries", fetch.DefaultOptions().Retries, "times an interrupted transfer is resumed before giving up")

	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List the built-in samples, the downloadable sets and what is in the data directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDataList(cmd.OutOrStdout())
		},
	}

	so := dataShowOptions{data: dataset.DefaultSpec}
	showCmd := &cobra.Command{
		Use:   "show [--data SPEC]",
		Short: "Print a data set's sizes, classes and pixel statistics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDataShow(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), so, !cmd.Flags().Changed("data"))
		},
	}
	showCmd.Flags().StringVar(&so.data, "data", so.data, "data set spec (see 'stl data --help')")
	showCmd.Flags().IntVar(&so.size, "size", 0, "side image folders are resized to (0: their own size)")

	eo := dataExportOptions{data: dataset.DefaultSpec, format: string(dataset.FormatBinary), seed: 1}
	exportCmd := &cobra.Command{
		Use:   "export --out DIR [--data SPEC] [--format bin|npy|png]",
		Short: "Write a data set (train and test) to a folder that --data can read back",
		Long: `export converts a data set: bin writes gzipped 8-bit records (train_HxW.bin.gz,
test_HxW.bin.gz, classes.txt), compact and fast to load, for example to turn the
imagenette JPEG archive into 64x64 records once; npy writes float32 arrays that keep
every value exactly (train.npy, train.labels.npy, train.classes.txt, and test.*);
png writes train/<class>/*.png and test/<class>/*.png to look at.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDataExport(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), eo, !cmd.Flags().Changed("data"))
		},
	}
	ef := exportCmd.Flags()
	ef.StringVar(&eo.data, "data", eo.data, "data set spec (see 'stl data --help')")
	ef.StringVar(&eo.out, "out", "", "output folder (required)")
	ef.StringVar(&eo.format, "format", eo.format, "bin, npy or png")
	ef.IntVar(&eo.size, "size", 0, "side image folders are resized to (0: their own size; imagenette defaults to 64)")
	ef.IntVar(&eo.limit, "limit", 0, "keep a class-balanced subset of this many images per part, drawn with --seed (0: all)")
	ef.Int64Var(&eo.seed, "seed", eo.seed, "seed of the --limit draw")

	co := dataConvertOptions{size: 64}
	convertCmd := &cobra.Command{
		Use:   "convert --data SRC --out DIR [--size N]",
		Short: "Stream an image folder or archive into 8-bit records, one image in memory at a time",
		Long: `convert decodes the images of an image folder (train/ and val/ or test/ with
<class>/ subfolders), an image archive such as imagenette2-160.tgz, or the fetched
"imagenette", center-crops and area-averages them to SIZE x SIZE, and writes
train_SIZExSIZE.bin.gz, val_SIZExSIZE.bin.gz and classes.txt to DIR, which --data then
loads in seconds. Unlike export it never holds the set in memory, so it also makes the
128 px ImageNet-10 of the paper from a large source.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDataConvert(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), co)
		},
	}
	cf := convertCmd.Flags()
	cf.StringVar(&co.data, "data", "", "image folder, image archive, or imagenette (required)")
	cf.StringVar(&co.out, "out", "", "output folder (required)")
	cf.IntVar(&co.size, "size", co.size, "side of the square output images (paper: 64 or 128 for ImageNet-10)")

	dataCmd.AddCommand(fetchCmd, listCmd, showCmd, exportCmd, convertCmd)
	rootCmd.AddCommand(dataCmd)
}

func runDataFetch(ctx context.Context, stdout, stderr io.Writer, names []string, o dataFetchOptions) error {
	var srcs []fetch.Source
	for _, n := range names {
		src, ok := fetch.Sources[n]
		if !ok {
			return usagef("unknown data set %q; can fetch: %s", n, strings.Join(fetch.Names(), ", "))
		}
		srcs = append(srcs, src)
	}
	if o.retries < 0 {
		return usagef("--retries must be >= 0")
	}
	dir := o.dir
	if dir == "" {
		d, err := fetch.DefaultDir()
		if err != nil {
			return err
		}
		dir = d
	}
	opts := fetch.DefaultOptions()
	opts.Retries, opts.Progress = o.retries, progress.NewBar(stderr)
	for _, src := range srcs {
		fmt.Fprintf(stderr, "stl: fetching %s from %s\n", src.Name, src.URL)
		res, err := fetch.Fetch(ctx, src, dir, opts)
		if err != nil {
			return err
		}
		what := "downloaded"
		switch {
		case res.Existing:
			what = "already present"
		case res.Resumed:
			what = "download resumed and completed"
		}
		fmt.Fprintf(stdout, "%s: %s, %s verified: %s\n", src.Name, what, res.Verified, res.Path)
		if src.MD5 == "" && src.SHA256 == "" {
			fmt.Fprintf(stderr, "stl: note: %s publishes no checksum; only the transfer's completeness was checked\n", src.Name)
		}
		if o.dir != "" {
			fmt.Fprintf(stdout, "use it with --data %s\n", filepath.Dir(res.Path))
		} else {
			fmt.Fprintf(stdout, "use it with --data %s\n", src.Name)
		}
	}
	return nil
}

func runDataList(stdout io.Writer) error {
	fmt.Fprintln(stdout, "built in:")
	for _, s := range dataset.Samples {
		fmt.Fprintf(stdout, "  %-18s embedded sample (see dataset/sample/README.md)\n", s)
	}
	dir, err := fetch.DefaultDir()
	if err != nil {
		dir = "(none: " + err.Error() + ")"
	}
	fmt.Fprintf(stdout, "downloadable with 'stl data fetch NAME' into %s:\n", dir)
	for _, n := range fetch.Names() {
		src := fetch.Sources[n]
		state := "not fetched"
		if _, err := os.Stat(filepath.Join(dir, src.Name, src.File)); err == nil {
			state = "fetched"
		}
		fmt.Fprintf(stdout, "  %-18s %s [%s]\n", n, src.About, state)
	}
	return nil
}

func loadForCmd(ctx context.Context, stderr io.Writer, spec string, size int, defaulted bool) (train, test *dataset.Set, err error) {
	if size < 0 {
		return nil, nil, usagef("--size must be >= 0")
	}
	if defaulted {
		fmt.Fprintf(stderr, "stl: no --data given; using the embedded sample %s\n", spec)
	}
	opts := dataset.DefaultLoadOptions()
	opts.Size, opts.Progress = size, progress.NewBar(stderr)
	return dataset.LoadContext(ctx, spec, opts)
}

func runDataShow(ctx context.Context, stdout, stderr io.Writer, o dataShowOptions, defaulted bool) error {
	train, test, err := loadForCmd(ctx, stderr, o.data, o.size, defaulted)
	if err != nil {
		return err
	}
	for _, s := range []*dataset.Set{train, test} {
		sh := s.Shape()
		fmt.Fprintf(stdout, "%s: %d images, %d channels, %dx%d\n", s.Name, s.Len(), sh.C, sh.H, sh.W)
		counts := s.ClassCounts()
		for c, name := range s.Classes {
			fmt.Fprintf(stdout, "  %2d %-20s %6d\n", c, name, counts[c])
		}
		mean, std := channelStats(s)
		fmt.Fprintf(stdout, "  pixel mean %s  std %s (0-255 scale)\n", fmtFloats(mean), fmtFloats(std))
	}
	return nil
}

// channelStats returns per-channel mean and standard deviation on the
// 0-255 scale, the figures data set READMEs quote.
func channelStats(s *dataset.Set) (mean, std []float64) {
	sh := s.Shape()
	hw := sh.H * sh.W
	mean, std = make([]float64, sh.C), make([]float64, sh.C)
	for i := 0; i < s.Len(); i++ {
		img := s.Image(i)
		for c := 0; c < sh.C; c++ {
			for _, v := range img[c*hw : (c+1)*hw] {
				x := float64(v) * 255
				mean[c] += x
				std[c] += x * x
			}
		}
	}
	n := float64(s.Len() * hw)
	for c := range mean {
		mean[c] /= n
		std[c] = math.Sqrt(math.Max(std[c]/n-mean[c]*mean[c], 0))
	}
	return mean, std
}

func fmtFloats(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, "/")
}

func runDataExport(ctx context.Context, stdout, stderr io.Writer, o dataExportOptions, defaulted bool) error {
	if o.out == "" {
		return usagef("--out DIR is required")
	}
	f := dataset.Format(o.format)
	valid := false
	for _, g := range dataset.Formats {
		valid = valid || g == f
	}
	if !valid {
		return usagef("--format %q: want bin, npy or png", o.format)
	}
	if o.limit < 0 {
		return usagef("--limit must be >= 0")
	}
	train, test, err := loadForCmd(ctx, stderr, o.data, o.size, defaulted)
	if err != nil {
		return err
	}
	if o.limit > 0 {
		for _, p := range []**dataset.Set{&train, &test} {
			if o.limit < (*p).Len() {
				if *p, err = (*p).BalancedSubset(o.limit, o.seed); err != nil {
					return err
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := dataset.Save(o.out, train, test, f, progress.NewBar(stderr)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d train and %d test images (%s) to %s; read them back with --data %s\n",
		train.Len(), test.Len(), f, o.out, o.out)
	return nil
}

func runDataConvert(ctx context.Context, stdout, stderr io.Writer, o dataConvertOptions) error {
	if o.data == "" || o.out == "" {
		return usagef("--data SRC and --out DIR are required")
	}
	if o.size <= 0 || o.size > 4096 {
		return usagef("--size must be in 1..4096")
	}
	nTrain, nTest, err := dataset.ConvertImages(ctx, o.data, o.out, o.size, progress.NewBar(stderr))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d train and %d test images at %dx%d to %s; read them with --data %s\n",
		nTrain, nTest, o.size, o.size, o.out, o.out)
	return nil
}
