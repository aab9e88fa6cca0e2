package main

import (
	"bytes"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/npy"
)

// TestOfficialDefenseEndToEnd trains a tiny defense with the released
// code's choices through "stl defense train --official" and projects a few
// sample images with "stl defend": the manifest records the choices, every
// projected image is rescaled to its maximum (1) and quantized to 8 bits,
// and the transductive clusters do not depend on the batch size.
func TestOfficialDefenseEndToEnd(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "def")
	small := []string{"--limit", "40", "--dae-epochs", "1", "--clusters", "2", "--knn", "3", "--pca", "8", "--restarts", "2",
		"--filters", "8", "--dict-images", "4", "--dict-iterations", "2"}
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&bytes.Buffer{})
	defer rootCmd.SetOut(nil)
	defer rootCmd.SetErr(nil)
	defer rootCmd.SetArgs(nil)
	rootCmd.SetArgs(append([]string{"defense", "train", "--out", def, "--official"}, small...))
	if err := rootCmd.Execute(); err != nil {
		t.Fatal(err)
	}
	m, err := defense.ReadManifest(def)
	if err != nil {
		t.Fatal(err)
	}
	if m.Apply != defense.ReleaseApplyOptions() {
		t.Fatalf("manifest apply options %+v, want the release's", m.Apply)
	}
	if !strings.Contains(out.String(), "transductively") {
		t.Errorf("defense train does not state the options: %q", out.String())
	}

	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.npy")
	if err := npy.WriteFile(in, test.Head(7).Images); err != nil {
		t.Fatal(err)
	}
	var outs [][]float32
	for _, batch := range []string{"2", "7"} {
		dst := filepath.Join(dir, "out-"+batch+".npy")
		out.Reset()
		rootCmd.SetArgs([]string{"defend", "--defense", def, "--in", in, "--out", dst, "--batch", batch})
		if err := rootCmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "transductively") {
			t.Errorf("defend does not state the options: %q", out.String())
		}
		y, err := npy.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		per := y.Len() / y.Shape[0]
		for i := 0; i < y.Shape[0]; i++ {
			img := y.Data[i*per : (i+1)*per]
			if mx := slices.Max(img); mx != 1 {
				t.Errorf("batch %s, image %d: maximum %g, want 1", batch, i, mx)
			}
			for _, v := range img {
				if b := float64(v) * 255; math.Abs(b-math.Round(b)) > 1e-4 || v < 0 {
					t.Fatalf("batch %s, image %d: value %g is not a multiple of 1/255 in [0, 1]", batch, i, v)
				}
			}
		}
		outs = append(outs, y.Data)
	}
	if !slices.Equal(outs[0], outs[1]) {
		t.Error("the projection depends on --batch: the transductive clusters were not computed on the whole set")
	}
	// Shards cluster with the whole input set too: their outputs
	// concatenated equal one run's.
	var sharded []float32
	for _, sh := range []string{"0/2", "1/2"} {
		dst := filepath.Join(dir, "shard-"+sh[:1]+".npy")
		rootCmd.SetArgs([]string{"defend", "--defense", def, "--in", in, "--out", dst, "--batch", "2", "--shard", sh})
		if err := rootCmd.Execute(); err != nil {
			t.Fatal(err)
		}
		y, err := npy.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		sharded = append(sharded, y.Data...)
	}
	if !slices.Equal(sharded, outs[0]) {
		t.Error("the shards' projections differ from the unsharded one: the transductive clusters were computed per shard")
	}

	// An explicit flag overrides the preset.
	def2 := filepath.Join(dir, "def2")
	rootCmd.SetArgs(append([]string{"defense", "train", "--out", def2, "--official", "--quantize-8bit=false"}, small...))
	if err := rootCmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if m, err := defense.ReadManifest(def2); err != nil || m.Apply.Quantize8 || m.Apply.Output != defense.OutputMax {
		t.Errorf("--official --quantize-8bit=false: %+v, %v", m.Apply, err)
	}
}
