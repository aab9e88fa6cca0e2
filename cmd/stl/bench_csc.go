package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/csc"
)

type benchCSCOptions struct {
	json    bool
	quick   bool
	workers int
}

func init() {
	var o benchCSCOptions
	cmd := &cobra.Command{
		Use:   "csc [--json]",
		Short: "Measure the convolutional sparse coding engine on the embedded sample",
		Long: `bench csc times CBPDN iterations (img32_hi, img128_hi), whole 32x32 images with the
default stopping rule, the plain and the accelerated CBPDN solver side by side (256 32x32
and 64 64x64 tiles: iterations, objective, images per CPU second), the STL projection of
perturbed tiles (sign noise 2/255 and 8/255) cold and warm-started from the clean tiles'
states side by side ("warm" cases), the STL projection of unrelated tiles by ADMM and by
the active-set solver side by side ("method" cases: lambda 0.2 at 32x32 and 64x64, 0.05 and
0.5 at 32x32), dictionary learning iterations (256 tiles, 64 filters 8x8x3) and
batch projection throughput, each with the objective reached, on inputs embedded in the
binary (the SPORCO reference dictionary and kodim23 crops; tiles cut at seeded offsets).
Single-thread cases also report the thread's CPU time, steadier on a shared machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchCSC(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print one JSON object per case")
	f.BoolVar(&o.quick, "quick", false, "fewer repetitions (smoke test; figures not comparable)")
	f.IntVar(&o.workers, "workers", 2, "workers of the batch throughput case")
	benchCmd.AddCommand(cmd)
}

func runBenchCSC(ctx context.Context, w io.Writer, o benchCSCOptions) error {
	if o.workers < 1 {
		return usagef("--workers %d, want >= 1", o.workers)
	}
	enc := json.NewEncoder(w)
	mach := thisMachine()
	if !o.json {
		fmt.Fprintln(w, mach)
	}
	return csc.Benchmark(ctx, csc.BenchOptions{Quick: o.quick, Workers: o.workers}, func(r csc.BenchResult) error {
		if o.json {
			return enc.Encode(struct {
				csc.BenchResult
				machine
			}{r, mach})
		}
		name := r.Case
		if r.Solver != "" {
			name += "/" + r.Solver
		}
		line := fmt.Sprintf("%-18s %-52s %2d thr  %9.3f ms/%s", name, r.Input, r.Threads, 1000*r.Seconds, r.Unit)
		if r.CPUSeconds > 0 {
			line += fmt.Sprintf(" (cpu %.3f ms)", 1000*r.CPUSeconds)
		}
		if r.Goal > 0 {
			line += fmt.Sprintf("  goal %.3g ms", 1000*r.Goal)
		}
		if r.FFTBound > 0 {
			line += fmt.Sprintf("  fft-bound %.3f ms", 1000*r.FFTBound)
		}
		if r.Speedup > 0 {
			line += fmt.Sprintf("  %.1f img/s x%.2f", r.ImagesPerS, r.Speedup)
		}
		if r.Iterations > 0 {
			line += fmt.Sprintf("  %.1f iterations", r.Iterations)
		}
		if r.ImagesPerCPUS > 0 {
			line += fmt.Sprintf("  %.1f img/cpu-s", r.ImagesPerCPUS)
		}
		line += fmt.Sprintf("  objective %.6f", r.Objective)
		if r.ObjectiveMaxRel != 0 {
			line += fmt.Sprintf(" (max %+.1e relative to the first)", r.ObjectiveMaxRel)
		}
		_, err := fmt.Fprintln(w, line)
		return err
	})
}
