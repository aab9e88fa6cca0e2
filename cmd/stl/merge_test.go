package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/progress"
)

// TestShardsMerge: `stl attack` and `stl defend` run as 3 shards and merged
// with `stl merge` write what one unsharded run writes, byte for byte.
func TestShardsMerge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	model := savedClassifier(t)
	attackTo := func(out string, sh dataset.Shard) {
		t.Helper()
		f := attackFlags{Opts: experiment.AttackOptions{Model: model, Data: dataset.DefaultSpec, Split: "test", N: 23, SubsetSeed: 1,
			Batch: 4, EOT: 1, Out: out, Shard: sh}, Method: "pgd", Steps: 3, Seed: 1, StepFrac: 0.25}
		if err := runAttack(ctx, f, &bytes.Buffer{}, progress.Nop); err != nil {
			t.Fatalf("attack shard %v: %v", sh, err)
		}
	}
	whole := filepath.Join(dir, "whole")
	attackTo(whole, dataset.Shard{})
	var parts []string
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprintf("part%d", i))
		attackTo(p, dataset.Shard{Index: i, Count: 3})
		parts = append(parts, p)
	}
	merged := filepath.Join(dir, "merged")
	var stdout bytes.Buffer
	if err := runMerge(ctx, &stdout, merged, parts); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{attack.AdvFile, attack.LabelsFile, attack.MetaFile} {
		sameFile(t, filepath.Join(whole, f), filepath.Join(merged, f))
	}

	def := tinyDefense(t, dir)
	proj := func(out string, sh dataset.Shard) {
		t.Helper()
		if err := runDefend(ctx, &bytes.Buffer{}, &bytes.Buffer{}, defendOptions{defense: def, in: whole, out: out, batch: 3, shard: sh}); err != nil {
			t.Fatalf("defend shard %v: %v", sh, err)
		}
	}
	proj(filepath.Join(dir, "proj.npy"), dataset.Shard{})
	parts = parts[:0]
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprintf("proj-%d.npy", i))
		proj(p, dataset.Shard{Index: i, Count: 3})
		parts = append(parts, p)
	}
	if err := runMerge(ctx, &stdout, filepath.Join(dir, "merged.npy"), parts); err != nil {
		t.Fatal(err)
	}
	sameFile(t, filepath.Join(dir, "proj.npy"), filepath.Join(dir, "merged.npy"))
	sameFile(t, filepath.Join(dir, "proj.labels.npy"), filepath.Join(dir, "merged.labels.npy"))

	// Parts of different attacks are refused.
	other := filepath.Join(dir, "other")
	f := attackFlags{Opts: experiment.AttackOptions{Model: model, Data: dataset.DefaultSpec, Split: "test", N: 4, Batch: 4, EOT: 1, Out: other}, Method: "fgsm", Budget: 0.04}
	if err := runAttack(ctx, f, &bytes.Buffer{}, progress.Nop); err != nil {
		t.Fatal(err)
	}
	if err := runMerge(ctx, &stdout, filepath.Join(dir, "bad"), []string{filepath.Join(dir, "part0"), other}); err == nil {
		t.Error("merged the sets of two different attacks")
	}
	if err := runMerge(ctx, &stdout, filepath.Join(dir, "bad.npy"), []string{filepath.Join(dir, "part0"), filepath.Join(dir, "proj-0.npy")}); err == nil {
		t.Error("merged an adversarial set with an .npy")
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil || !bytes.Equal(x, y) {
		t.Errorf("%s differs from %s (%v)", b, a, err)
	}
}
