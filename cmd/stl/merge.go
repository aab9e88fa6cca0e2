package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/experiment"
)

func init() {
	var out string
	cmd := &cobra.Command{
		Use:   "merge --out OUT PART...",
		Short: "Concatenate the parts written by --shard i/n, in order",
		Long: `merge concatenates, in the order given, the outputs of the parts of a sharded job:
the adversarial sets of "stl attack --shard i/n --out DIR" into one set directory
(their per-image figures kept, the summary figures recomputed over all images), or
the .npy outputs of "stl defend --shard i/n --out X.npy" (with their labels and
classes when they have them) into one .npy. The result equals what one unsharded
command writes. Parts of different attacks, models, data or image sizes are refused.

  stl merge --out adv/pgd adv/pgd-0 adv/pgd-1 adv/pgd-2
  stl merge --out proj.npy proj-0.npy proj-1.npy`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, parts []string) error {
			return runMerge(cmd.Context(), cmd.OutOrStdout(), out, parts)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "the merged set directory or .npy file (required)")
	rootCmd.AddCommand(cmd)
}

func runMerge(_ context.Context, stdout io.Writer, out string, parts []string) error {
	if out == "" {
		return usagef("--out is required")
	}
	for _, p := range parts {
		if filepath.Clean(p) == filepath.Clean(out) {
			return usagef("--out %s is one of the parts", out)
		}
	}
	if _, isSet := experiment.AttackSetDir(parts[0]); isSet {
		for _, p := range parts {
			if _, ok := experiment.AttackSetDir(p); !ok {
				return usagef("%s is not an adversarial set, %s is: merge parts of one kind", p, parts[0])
			}
		}
		merged, err := experiment.MergeAttackSets(out, parts)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "merged %d adversarial sets, %d images -> %s\n", len(parts), len(merged.Labels), out)
		return nil
	}
	merged, err := experiment.MergeImages(out, parts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "merged %d parts, %d images of %v -> %s\n", len(parts), merged.N, []int{merged.Shape.C, merged.Shape.H, merged.Shape.W}, out)
	return nil
}
