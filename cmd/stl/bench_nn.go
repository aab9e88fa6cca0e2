package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/nn"
)

// benchNNFlags are the options of "stl bench nn".
type benchNNFlags struct {
	archs   []string
	threads []int
	batch   int
	size    int
	iters   int
	conv    string
	json    bool
	inProc  bool // run one configuration in this process (used by the parent)
}

// benchNNRow is one JSON line of "stl bench nn --json".
type benchNNRow struct {
	nn.BenchResult
	PeakRSSMB float64 `json:"peak_rss_mb"`
	machine
}

func init() {
	var f benchNNFlags
	cmd := &cobra.Command{
		Use:   "nn",
		Short: "Training, inference and input-gradient images/s of " + strings.Join(nn.ClassifierArchNames(), " and "),
		Long: `bench nn times, on random 32x32 images at batch 128, one SGD training step (forward,
backward, update), inference (Logits) and one input-gradient pass (InputGrad) of freshly
initialized networks, for each --arch and --threads. Each configuration runs in a child
process so that its peak resident memory (peak_rss_mb) is its own. Figures are noisy on a
shared machine: each figure also reports the process's CPU seconds per wall second
(train_cpu, infer_cpu, input_grad_cpu; about --threads on a quiet machine), and images per
CPU-second (img/s divided by it) are the steadier figure to compare builds with when other
jobs take the cores. With --json it prints one JSON object per line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.batch < 2 || f.size < 8 || f.iters < 1 {
				return usagef("--batch must be >= 2, --size >= 8, --iters >= 1")
			}
			for _, t := range f.threads {
				if t < 1 {
					return usagef("--threads values must be >= 1")
				}
			}
			return runBenchNN(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.archs, "arch", nn.ClassifierArchNames(), "architectures")
	fl.IntSliceVar(&f.threads, "threads", []int{1, 2}, "thread counts")
	fl.IntVar(&f.batch, "batch", 128, "batch size")
	fl.IntVar(&f.size, "size", 32, "image side in pixels")
	fl.IntVar(&f.iters, "iters", 5, "timed iterations per figure (after one warm-up)")
	fl.StringVar(&f.conv, "conv", "", "convolution backend: "+fmt.Sprint(nn.ConvBackends())+" (default: the first)")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per configuration")
	fl.BoolVar(&f.inProc, "in-process", false, "run a single configuration in this process")
	fl.MarkHidden("in-process")
	benchCmd.AddCommand(cmd)
}

func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // Linux reports KiB
}

func runBenchNN(ctx context.Context, f benchNNFlags, w io.Writer) error {
	if f.inProc {
		if len(f.archs) != 1 || len(f.threads) != 1 {
			return usagef("--in-process needs one --arch and one --threads")
		}
		o := nn.DefaultBenchOptions()
		o.Arch, o.Threads, o.Batch, o.Size, o.Iters, o.Backend = f.archs[0], f.threads[0], f.batch, f.size, f.iters, f.conv
		r, err := nn.Bench(ctx, o)
		if err != nil {
			return err
		}
		return json.NewEncoder(w).Encode(benchNNRow{r, peakRSSMB(), thisMachine()})
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if !f.json {
		fmt.Fprintln(w, thisMachine())
		fmt.Fprintf(w, "%-10s %7s %-12s %12s %12s %16s %12s %15s\n", "arch", "threads", "conv", "train img/s", "infer img/s", "input-grad img/s", "peak RSS MB", "CPU/wall t/i/g")
	}
	for _, a := range f.archs {
		for _, t := range f.threads {
			args := []string{"bench", "nn", "--in-process", "--arch", a, "--threads", strconv.Itoa(t),
				"--batch", strconv.Itoa(f.batch), "--size", strconv.Itoa(f.size), "--iters", strconv.Itoa(f.iters)}
			if f.conv != "" {
				args = append(args, "--conv", f.conv)
			}
			c := exec.CommandContext(ctx, exe, args...)
			c.Stderr = os.Stderr
			out, err := c.Output()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("bench nn %s threads %d: %w", a, t, err)
			}
			if f.json {
				fmt.Fprint(w, string(out))
				continue
			}
			var r benchNNRow
			if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &r); err != nil {
				return err
			}
			fmt.Fprintf(w, "%-10s %7d %-12s %12.1f %12.1f %16.1f %12.0f %15s\n", r.Arch, r.Threads, r.Backend, r.TrainImgS, r.InferImgS, r.InputGradImgS, r.PeakRSSMB,
				fmt.Sprintf("%.2f/%.2f/%.2f", r.TrainCPU, r.InferCPU, r.InputGradCPU))
		}
	}
	return nil
}
