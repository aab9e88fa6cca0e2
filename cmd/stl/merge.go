package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/npy"
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
		sets := make([]*attack.Set, len(parts))
		for i, p := range parts {
			dir, ok := experiment.AttackSetDir(p)
			if !ok {
				return usagef("%s is not an adversarial set, %s is: merge parts of one kind", p, parts[0])
			}
			s, err := attack.LoadSet(dir)
			if err != nil {
				return err
			}
			sets[i] = s
		}
		merged, err := attack.MergeSets(sets)
		if err != nil {
			return err
		}
		if err := merged.Save(out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "merged %d adversarial sets, %d images -> %s\n", len(parts), len(merged.Labels), out)
		return nil
	}
	if !strings.HasSuffix(strings.ToLower(out), ".npy") {
		return usagef("--out %s: merged images are written as .npy", out)
	}
	sets := make([]*dataset.Set, len(parts))
	bare := false
	for i, p := range parts {
		if !strings.HasSuffix(strings.ToLower(p), ".npy") {
			return usagef("%s: want adversarial set directories or .npy files", p)
		}
		labels := strings.TrimSuffix(p, filepath.Ext(p)) + ".labels.npy"
		_, err := os.Stat(labels)
		if i > 0 && bare != (err != nil) {
			return usagef("%s and %s disagree on having labels", parts[0], p)
		}
		bare = err != nil
		if bare {
			t, err := npy.ReadFile(p)
			if err != nil {
				return err
			}
			n, _, _, _, err := t.NCHW()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			sets[i] = &dataset.Set{Images: t, Labels: make([]int, n), Classes: []string{"0"}, Name: filepath.Base(p)}
		} else if sets[i], err = dataset.ReadNPY(p); err != nil {
			return err
		}
	}
	merged, err := dataset.Concat(filepath.Base(out), sets...)
	if err != nil {
		return err
	}
	if bare {
		err = npy.WriteFile(out, merged.Images)
	} else {
		err = dataset.WriteNPY(out, merged)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "merged %d parts, %d images of %v -> %s\n", len(parts), merged.Len(), merged.Images.Shape[1:], out)
	return nil
}
