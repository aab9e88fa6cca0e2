package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/csc"
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
	accelerate bool
	method     string
}

func (f *cscFlags) register(cmd *cobra.Command) {
	d := csc.DefaultOptions()
	fs := cmd.Flags()
	fs.Float64Var(&f.lambda, "lambda", d.Lambda, "l1 weight of CBPDN")
	fs.IntVar(&f.maxIter, "max-iter", d.ADMM.MaxIter, "maximum ADMM iterations per image")
	fs.Float64Var(&f.relStopTol, "rel-stop-tol", d.ADMM.RelStopTol, "relative stopping tolerance of ADMM")
	fs.IntVar(&f.threads, "threads", 0, "worker goroutines (0 = all cores)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per image")
	fs.BoolVar(&f.accelerate, "accelerate", false, "Anderson-accelerated ADMM (same objective within 1e-4, fewer iterations, more CPU per iteration; see docs/csc.md)")
	fs.StringVar(&f.method, "method", csc.MethodADMM.String(), `CBPDN solver: "admm" or "active-set" (a working set certified by a duality gap of 5e-5; --max-iter bounds its outer iterations; see docs/csc.md)`)
}

func (f *cscFlags) options() (csc.Options, error) {
	o := csc.DefaultOptions()
	o.Lambda, o.ADMM.MaxIter, o.ADMM.RelStopTol, o.Workers = f.lambda, f.maxIter, f.relStopTol, f.threads
	if f.accelerate {
		o = o.Accelerated()
	}
	if f.method != "" {
		m, err := csc.ParseMethod(f.method)
		if err != nil {
			return o, usagef("--method %q: want admm or active-set", f.method)
		}
		if m != csc.MethodADMM && f.accelerate {
			return o, usagef("--accelerate accelerates ADMM; it does not apply to --method %s", f.method)
		}
		o.Method = m
	}
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
	if o.out != "" {
		if err := checkOutput("--out", o.out, ".npy"); err != nil {
			return err
		}
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
		x, err := csc.MapsToSPORCO(res)
		if err != nil {
			return err
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
	if err := checkOutput("--out", o.out, ".npy", ".png"); err != nil {
		return err
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
	if err := checkOutput("--out", o.out, ".npy"); err != nil {
		return err
	}
	opt := csc.DefaultLearnOptions()
	opt.Filters, opt.Size, opt.Lambda, opt.Iterations, opt.Seed = o.filters, o.size, o.lambda, o.iterations, o.seed
	opt.CheckpointEvery, opt.ZeroMean, opt.Workers = o.checkpointEvery, !o.noZeroMean, o.threads
	opt.Checkpoint, opt.Resume = o.out, !o.fresh
	if err := opt.Validate(); err != nil {
		return usagef("%v", err)
	}
	imgs, err := readCSCImageSet(o.images)
	if err != nil {
		return err
	}
	if !o.raw {
		lp := csc.DefaultProjectOptions()
		if imgs, err = csc.Highpass(ctx, imgs, lp.TikhonovLambda, lp.Pad); err != nil {
			return err
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
