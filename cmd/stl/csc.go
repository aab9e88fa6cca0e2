package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg" // register JPEG for image.Decode
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// cscFlags are the CBPDN flags shared by "stl csc solve" and "stl csc project".
type cscFlags struct {
	lambda     float64
	maxIter    int
	relStopTol float64
	threads    int
	json       bool
}

func (f *cscFlags) register(cmd *cobra.Command) {
	d := csc.DefaultOptions()
	fs := cmd.Flags()
	fs.Float64Var(&f.lambda, "lambda", d.Lambda, "l1 weight of CBPDN")
	fs.IntVar(&f.maxIter, "max-iter", d.ADMM.MaxIter, "maximum ADMM iterations per image")
	fs.Float64Var(&f.relStopTol, "rel-stop-tol", d.ADMM.RelStopTol, "relative stopping tolerance of ADMM")
	fs.IntVar(&f.threads, "threads", 0, "worker goroutines (0 = all cores)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per image")
}

func (f *cscFlags) options() (csc.Options, error) {
	o := csc.DefaultOptions()
	o.Lambda, o.ADMM.MaxIter, o.ADMM.RelStopTol, o.Workers = f.lambda, f.maxIter, f.relStopTol, f.threads
	if err := o.Validate(); err != nil {
		return o, usagef("%v", err)
	}
	return o, nil
}

func init() {
	cscCmd := &cobra.Command{
		Use:   "csc",
		Short: "Convolutional sparse coding: solve CBPDN, project images, learn dictionaries",
		Long: `csc runs the convolutional sparse coding engine. Without a subcommand it projects the
shipped sample image (a 32x32 crop of Kodak kodim23) onto the shipped dictionary and says
what it did.

Arrays are NumPy .npy files in SPORCO's layouts: dictionaries (rows, cols, channels,
filters), images (H, W, C) or (H, W, C, N). PNG and JPEG images are accepted too (RGB,
pixels scaled to [0, 1]).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCSCDemo(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cscCmd.AddCommand(newCSCSolveCmd(), newCSCProjectCmd(), newCSCLearnCmd())
	rootCmd.AddCommand(cscCmd)
}

func runCSCDemo(ctx context.Context, w io.Writer) error {
	d := csc.SampleDictionary()
	img, err := csc.SampleImage("img32")
	if err != nil {
		return err
	}
	p, err := csc.NewProjection(d, csc.DefaultProjectOptions())
	if err != nil {
		return err
	}
	out := tensor.New(img.Shape...)
	st, err := p.ProjectBatch(ctx, out, img, nil)
	if err != nil {
		return err
	}
	var mse float64
	for i, v := range out.Data {
		e := float64(v - img.Data[i])
		mse += e * e
	}
	mse /= float64(len(out.Data))
	fmt.Fprintf(w, "projected the sample 32x32 image (kodim23 crop) onto the sample dictionary (%d filters %dx%dx%d, lambda %.2g):\n",
		d.M, d.R, d.S, d.C, csc.DefaultOptions().Lambda)
	fmt.Fprintf(w, "  Tikhonov split (lambda 5, pad 16), CBPDN on the highpass part: objective %.6f after %d ADMM iterations (converged %v) in %.1f ms\n",
		st[0].Objective, st[0].Iterations, st[0].Converged, 1000*st[0].Seconds)
	fmt.Fprintf(w, "  output = lowpass + D x clipped to [0,1]; mean squared change from the input %.3g (PSNR %.1f dB)\n",
		mse, psnr(mse))
	return nil
}

func psnr(mse float64) float64 {
	if mse == 0 {
		return 999
	}
	return 10 * math.Log10(1/mse)
}

// ---- stl csc solve ----

type cscSolveOptions struct {
	cscFlags
	dict, image, out string
	trace            bool
}

func newCSCSolveCmd() *cobra.Command {
	var o cscSolveOptions
	cmd := &cobra.Command{
		Use:   "solve --dict D.npy --image S.npy [--out X.npy] [--json]",
		Short: "Solve plain CBPDN on images as given (no lowpass split)",
		Long: `solve codes each image (H, W, C) or each of the N images of (H, W, C, N) independently
by CBPDN with SPORCO's ADMM defaults and prints per image the objective (exact, float64,
on the returned sparse variable), the iterations and the time. --out writes the
coefficient maps in SPORCO's layout (H, W, 1, N, M), or (H, W, C, N, M) when a
single-channel dictionary codes the C channels of colour images separately.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCSCSolve(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	o.register(cmd)
	f := cmd.Flags()
	f.StringVar(&o.dict, "dict", "", "dictionary .npy (R, S, C, M) (required)")
	f.StringVar(&o.image, "image", "", "image .npy (H, W, C[, N]), .png or .jpg (required)")
	f.StringVar(&o.out, "out", "", "write the coefficient maps here (.npy)")
	f.BoolVar(&o.trace, "trace", false, "print every ADMM iteration's statistics to stderr (solves the images one at a time)")
	return cmd
}

func runCSCSolve(ctx context.Context, stdout, stderr io.Writer, o cscSolveOptions) error {
	if o.dict == "" || o.image == "" {
		return usagef("--dict and --image are required")
	}
	opt, err := o.options()
	if err != nil {
		return err
	}
	d, err := csc.ReadDictionary(o.dict)
	if err != nil {
		return err
	}
	imgs, err := readCSCImages(o.image)
	if err != nil {
		return err
	}
	coder, err := csc.NewCoder(d, opt)
	if err != nil {
		return err
	}
	var res []*csc.Result
	if o.trace {
		res, err = solveTraced(ctx, stderr, coder, imgs, o.json)
	} else {
		var rep progress.Reporter
		if imgs.Shape[0] > 1 {
			rep = progress.NewBar(stderr)
		}
		res, err = coder.SolveBatch(ctx, imgs, rep)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for i, r := range res {
		if o.json {
			if err := enc.Encode(map[string]any{"image": i, "objective": r.Objective, "dfid": r.DFid, "reg": r.Reg,
				"iterations": r.Iterations, "converged": r.Converged, "rho": r.Rho, "seconds": r.Seconds}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "image %d: objective %.8f (data %.6f + l1 %.6f), %d iterations, converged %v, %.1f ms\n",
			i, r.Objective, r.DFid, r.Reg, r.Iterations, r.Converged, 1000*r.Seconds)
	}
	if o.out != "" {
		// SPORCO's layout (H, W, Cx, N, M): Cx = 1 for coefficient maps
		// shared by the channels, C when a single-channel dictionary codes
		// each channel separately.
		n, h, w, m := len(res), imgs.Shape[2], imgs.Shape[3], d.M
		cx := 1
		if len(res[0].X.Shape) == 4 {
			cx = res[0].X.Shape[0]
		}
		x := tensor.New(h, w, cx, n, m)
		for i, r := range res {
			for c := 0; c < cx; c++ {
				for k := 0; k < m; k++ {
					for p := 0; p < h*w; p++ {
						x.Data[((p*cx+c)*n+i)*m+k] = r.X.Data[(c*m+k)*h*w+p]
					}
				}
			}
		}
		if err := npy.WriteFile(o.out, x); err != nil {
			return err
		}
	}
	return nil
}

// solveTraced solves the images one by one with a recorder that prints
// every iteration's statistics (objective, residuals, thresholds, rho) to w.
func solveTraced(ctx context.Context, w io.Writer, coder *csc.Coder, imgs *tensor.Tensor, asJSON bool) ([]*csc.Result, error) {
	enc := json.NewEncoder(w)
	var res []*csc.Result
	for i := 0; i < imgs.Shape[0]; i++ {
		rec := admm.RecorderFunc(func(s admm.Stats) {
			if asJSON {
				enc.Encode(map[string]any{"image": i, "iteration": s.Iter, "objective": s.Objective, "dfid": s.DFid,
					"reg": s.Reg, "primal": s.Primal, "dual": s.Dual, "eps_primal": s.EpsPrimal, "eps_dual": s.EpsDual,
					"rho": s.Rho, "seconds": s.Elapsed.Seconds()})
				return
			}
			fmt.Fprintf(w, "image %d  it %4d  objective %.8f  data %.6f  l1 %.6f  r %.3e (%.1e)  s %.3e (%.1e)  rho %.4g\n",
				i, s.Iter, s.Objective, s.DFid, s.Reg, s.Primal, s.EpsPrimal, s.Dual, s.EpsDual, s.Rho)
		})
		r, err := coder.Solve(ctx, imgs.Sample(i), rec)
		if err != nil {
			return nil, err
		}
		res = append(res, r)
	}
	return res, nil
}

// ---- stl csc project ----

type cscProjectOptions struct {
	cscFlags
	dict, image, out string
	tikhonov         float64
	pad              int
	noClip           bool
}

func newCSCProjectCmd() *cobra.Command {
	var o cscProjectOptions
	cmd := &cobra.Command{
		Use:   "project --dict D.npy --image IN --out OUT",
		Short: "Apply the STL projection: Tikhonov lowpass + D x of the coded highpass part",
		Long: `project splits each image into a Tikhonov lowpass and a highpass part, codes the
highpass part by CBPDN and writes lowpass + D x, clipped to [0, 1] unless --no-clip.
IN is a .npy (H, W, C[, N]) or a PNG/JPEG image; OUT is written in the same form as
its extension says (.npy, or .png for a single image).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCSCProject(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	o.register(cmd)
	d := csc.DefaultProjectOptions()
	f := cmd.Flags()
	f.StringVar(&o.dict, "dict", "", "dictionary .npy (R, S, C, M) (required)")
	f.StringVar(&o.image, "image", "", "input .npy, .png or .jpg (required)")
	f.StringVar(&o.out, "out", "", "output .npy or .png (required)")
	f.Float64Var(&o.tikhonov, "tikhonov-lambda", d.TikhonovLambda, "regularization of the lowpass filter")
	f.IntVar(&o.pad, "pad", d.Pad, "symmetric padding of the lowpass filter, pixels")
	f.BoolVar(&o.noClip, "no-clip", false, "do not clip the output to [0, 1]")
	return cmd
}

func runCSCProject(ctx context.Context, stdout, stderr io.Writer, o cscProjectOptions) error {
	if o.dict == "" || o.image == "" || o.out == "" {
		return usagef("--dict, --image and --out are required")
	}
	copt, err := o.options()
	if err != nil {
		return err
	}
	popt := csc.ProjectOptions{CSC: copt, TikhonovLambda: o.tikhonov, Pad: o.pad, Clip: !o.noClip}
	if err := popt.Validate(); err != nil {
		return usagef("%v", err)
	}
	d, err := csc.ReadDictionary(o.dict)
	if err != nil {
		return err
	}
	imgs, err := readCSCImages(o.image)
	if err != nil {
		return err
	}
	p, err := csc.NewProjection(d, popt)
	if err != nil {
		return err
	}
	var rep progress.Reporter
	if imgs.Shape[0] > 1 {
		rep = progress.NewBar(stderr)
	}
	out := tensor.New(imgs.Shape...)
	st, err := p.ProjectBatch(ctx, out, imgs, rep)
	if err != nil {
		return err
	}
	if err := writeCSCImages(o.out, out); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for i, s := range st {
		if o.json {
			if err := enc.Encode(map[string]any{"image": i, "objective": s.Objective, "iterations": s.Iterations,
				"converged": s.Converged, "seconds": s.Seconds}); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "image %d: highpass objective %.6f, %d iterations, converged %v, %.1f ms\n",
			i, s.Objective, s.Iterations, s.Converged, 1000*s.Seconds)
	}
	return nil
}

// ---- stl csc learn ----

type cscLearnOptions struct {
	images          []string
	out             string
	filters, size   int
	lambda          float64
	iterations      int
	seed            uint64
	checkpointEvery int
	noZeroMean      bool
	raw             bool
	fresh           bool
	threads         int
	json            bool
}

func newCSCLearnCmd() *cobra.Command {
	var o cscLearnOptions
	d := csc.DefaultLearnOptions()
	cmd := &cobra.Command{
		Use:   "learn --images FILES --out D.npy",
		Short: "Learn a convolutional dictionary from images",
		Long: `learn alternates CBPDN with a consensus ADMM dictionary update over the training images
(unit-norm filters, zero-mean channels unless --no-zero-mean) and writes the dictionary
in SPORCO's layout (R, S, C, M). Images are coded after a Tikhonov highpass split
(lambda 5, pad 16), as the STL projection codes them, unless --raw.

--out doubles as the checkpoint, written atomically every --checkpoint-every iterations
(with OUT.json holding the iteration count). Running the same command again resumes from
it; --fresh starts over.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCSCLearn(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.images, "images", nil, "training images: .npy (H, W, C[, N]), PNG/JPEG files or folders of them, comma-separated or repeated (required)")
	f.StringVar(&o.out, "out", "", "dictionary .npy to write (required)")
	f.IntVar(&o.filters, "filters", d.Filters, "number of filters")
	f.IntVar(&o.size, "size", d.Size, "filter height and width")
	f.Float64Var(&o.lambda, "lambda", d.Lambda, "l1 weight of the coding step")
	f.IntVar(&o.iterations, "iterations", d.Iterations, "outer iterations")
	f.Uint64Var(&o.seed, "seed", d.Seed, "seed of the random initial dictionary")
	f.IntVar(&o.checkpointEvery, "checkpoint-every", d.CheckpointEvery, "iterations between checkpoints")
	f.BoolVar(&o.noZeroMean, "no-zero-mean", false, "do not constrain filter channels to zero mean")
	f.BoolVar(&o.raw, "raw", false, "learn on the images as given, without the highpass split")
	f.BoolVar(&o.fresh, "fresh", false, "ignore an existing checkpoint at --out")
	f.IntVar(&o.threads, "threads", 0, "worker goroutines (0 = all cores)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per iteration")
	return cmd
}

func runCSCLearn(ctx context.Context, stdout, stderr io.Writer, o cscLearnOptions) error {
	if len(o.images) == 0 || o.out == "" {
		return usagef("--images and --out are required")
	}
	opt := csc.DefaultLearnOptions()
	opt.Filters, opt.Size, opt.Lambda, opt.Iterations, opt.Seed = o.filters, o.size, o.lambda, o.iterations, o.seed
	opt.CheckpointEvery, opt.ZeroMean, opt.Workers = o.checkpointEvery, !o.noZeroMean, o.threads
	opt.Checkpoint, opt.Resume = o.out, !o.fresh
	if err := opt.Validate(); err != nil {
		return usagef("%v", err)
	}
	var files []string
	for _, p := range o.images {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".png", ".jpg", ".jpeg", ".npy":
				if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
	}
	if len(files) == 0 {
		return usagef("--images: no .npy, .png or .jpg files")
	}
	var parts []*tensor.Tensor
	for _, p := range files {
		t, err := readCSCImages(p)
		if err != nil {
			return err
		}
		if len(parts) > 0 && !tensor.SameShape(t.Sample(0), parts[0].Sample(0)) {
			return fmt.Errorf("%s: images of shape %v, earlier ones %v", p, t.Shape[1:], parts[0].Shape[1:])
		}
		parts = append(parts, t)
	}
	imgs := concatBatches(parts)
	if !o.raw {
		n, c, h, w, _ := imgs.NCHW()
		tk, err := csc.NewTikhonov(5, 16)
		if err != nil {
			return err
		}
		for i := 0; i < n*c; i++ {
			ch := imgs.Data[i*h*w : (i+1)*h*w]
			if err := tk.Split(nil, ch, append([]float32(nil), ch...), h, w); err != nil {
				return err
			}
		}
	}
	bar := progress.NewBar(stderr)
	enc := json.NewEncoder(stdout)
	rec := csc.LearnRecorderFunc(func(s csc.LearnStats) {
		if o.json {
			enc.Encode(map[string]any{"iteration": s.Iter, "objective": s.Objective, "dfid": s.DFid, "reg": s.Reg,
				"code_rho": s.CodeRho, "dict_rho": s.DictRho, "seconds": s.Elapsed.Seconds()})
			return
		}
		bar.Report("csc learn", s.Iter+1, opt.Iterations, fmt.Sprintf("objective %.5f", s.Objective))
	})
	d, err := csc.Learn(ctx, imgs, opt, rec)
	if err != nil {
		return err
	}
	if !o.json {
		fmt.Fprintf(stdout, "wrote %s: %d filters %dx%dx%d learned on %d images\n", o.out, d.M, d.R, d.S, d.C, imgs.Shape[0])
	}
	return nil
}

func concatBatches(parts []*tensor.Tensor) *tensor.Tensor {
	if len(parts) == 1 {
		return parts[0]
	}
	n := 0
	for _, p := range parts {
		n += p.Shape[0]
	}
	out := tensor.New(append([]int{n}, parts[0].Shape[1:]...)...)
	off := 0
	for _, p := range parts {
		off += copy(out.Data[off:], p.Data)
	}
	return out
}

// readCSCImages reads a SPORCO-layout .npy or a PNG/JPEG image into a
// (N, C, H, W) batch.
func readCSCImages(path string) (*tensor.Tensor, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".npy":
		t, err := npy.ReadFile(path)
		if err != nil {
			return nil, err
		}
		b, err := csc.ImagesFromSPORCO(t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return b, nil
	case ".png", ".jpg", ".jpeg":
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		img, _, err := image.Decode(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		b := img.Bounds()
		t := tensor.New(1, 3, b.Dy(), b.Dx())
		if err := dataset.ImageToCHW(t.Data, img, 0); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return t, nil
	}
	return nil, usagef("%s: want a .npy, .png, .jpg or .jpeg file", path)
}

// writeCSCImages writes a (N, C, H, W) batch as SPORCO-layout .npy ((H, W, C)
// for one image) or, for one image, as PNG.
func writeCSCImages(path string, t *tensor.Tensor) error {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".npy":
		s, err := csc.ImagesToSPORCO(t, true)
		if err != nil {
			return err
		}
		return npy.WriteFile(path, s)
	case ".png":
		n, c, h, w, _ := t.NCHW()
		if n != 1 {
			return usagef("%s: %d images cannot go to one PNG; use .npy", path, n)
		}
		img, err := dataset.CHWToImage(t.Data, dataset.Shape{C: c, H: h, W: w})
		if err != nil {
			return err
		}
		return safefile.Write(path, func(wr io.Writer) error { return png.Encode(wr, img) })
	}
	return usagef("%s: want a .npy or .png output", path)
}
