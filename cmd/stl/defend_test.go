package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// tinyDefense trains a small defense on 40 sample images into dir/def
// (about a second) and returns its directory.
func tinyDefense(t *testing.T, dir string) string {
	t.Helper()
	def := filepath.Join(dir, "def")
	o := defenseTrainOptions{data: dataset.DefaultSpec, out: def, limit: 40, train: defense.DefaultTrainOptions()}
	tr := &o.train
	tr.DAEEpochs, tr.Clusters, tr.KNN, tr.PCAComponents, tr.KMeansRestarts = 1, 2, 3, 8, 2
	tr.Filters, tr.DictImages, tr.DictIterations = 8, 4, 2
	var stdout, stderr bytes.Buffer
	if err := runDefenseTrain(context.Background(), &stdout, &stderr, o); err != nil {
		t.Fatalf("defense train: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "defense saved to") {
		t.Errorf("stdout %q", stdout.String())
	}
	if _, err := defense.ReadManifest(def); err != nil {
		t.Fatal(err)
	}
	return def
}

func TestDefenseTrainAndDefend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	var stdout, stderr bytes.Buffer

	// Three test images as a bare .npy, projected to .npy and to a PNG folder.
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.npy")
	if err := npy.WriteFile(in, test.Head(3).Images); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		out       string
		universal bool
	}{{filepath.Join(dir, "out.npy"), false}, {filepath.Join(dir, "png"), true}} {
		stdout.Reset()
		err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: def, in: in, out: tc.out, universal: tc.universal, batch: 2})
		if err != nil {
			t.Fatalf("defend -> %s: %v", tc.out, err)
		}
		if !strings.Contains(stdout.String(), "images/s") {
			t.Errorf("defend printed %q, want a rate in images/s", stdout.String())
		}
		if got := strings.Contains(stdout.String(), "images per cluster: ["); got == tc.universal {
			t.Errorf("universal %v: defend printed %q", tc.universal, stdout.String())
		}
	}
	got, err := npy.ReadFile(filepath.Join(dir, "out.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(got, test.Head(3).Images) {
		t.Errorf("projected shape %v", got.Shape)
	}
	if pngs, _ := filepath.Glob(filepath.Join(dir, "png", "*", "*.png")); len(pngs) != 3 {
		t.Errorf("%d PNG files written, want 3", len(pngs))
	}

	// The active-set solver projects the same images to nearly the same
	// output (its objective is certified within 1e-5 of the optimum,
	// which ADMM approaches to a few 1e-4; csc's tests compare them).
	stdout.Reset()
	asOut := filepath.Join(dir, "out_as.npy")
	if err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: def, in: in, out: asOut, batch: 2, solver: "active-set"}); err != nil {
		t.Fatalf("defend --solver active-set: %v", err)
	}
	as, err := npy.ReadFile(asOut)
	if err != nil {
		t.Fatal(err)
	}
	var worst, sum float64
	for i, v := range as.Data {
		d := math.Abs(float64(v - got.Data[i]))
		worst, sum = max(worst, d), sum+d
	}
	t.Logf("active set vs ADMM: largest pixel difference %.4f, mean %.2g", worst, sum/float64(len(as.Data)))
	if worst > 0.01 || sum/float64(len(as.Data)) > 1e-3 {
		t.Errorf("active set vs ADMM: largest pixel difference %.4f, mean %.2g", worst, sum/float64(len(as.Data)))
	}

	// Images of another resolution are refused with a clear error.
	small := filepath.Join(dir, "small.npy")
	if err := npy.WriteFile(small, tensor.New(2, 3, 16, 16)); err != nil {
		t.Fatal(err)
	}
	var ie *defense.ImageSpecError
	if err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: def, in: small, out: filepath.Join(dir, "x.npy"), batch: 8}); !errors.As(err, &ie) {
		t.Errorf("16x16 images: err = %v, want *defense.ImageSpecError", err)
	}
}

// TestDefendAttackSet projects the output of "stl attack" (the set's
// directory and its adv.npy) and checks the labels survive.
func TestDefendAttackSet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	adv := filepath.Join(dir, "adv")
	f := attackFlags{Opts: experiment.AttackOptions{Model: savedClassifier(t), Data: dataset.DefaultSpec, Split: "test", N: 6, SubsetSeed: 1,
		Batch: 6, EOT: 1, Out: adv}, Method: "fgsm", Budget: 0.08}
	var stdout, stderr bytes.Buffer
	if err := runAttack(ctx, f, &stdout, progress.Nop); err != nil {
		t.Fatal(err)
	}
	s, err := attack.LoadSet(adv)
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[int]bool{}
	for _, l := range s.Labels {
		distinct[l] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("attack set labels %v: want several classes for the test to mean something", s.Labels)
	}

	// The set's directory, projected to .npy with its labels.
	out := filepath.Join(dir, "proj.npy")
	stdout.Reset()
	if err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: def, in: adv, out: out, batch: 4}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "6 labels kept") {
		t.Errorf("defend printed %q", stdout.String())
	}
	got, err := dataset.ReadNPY(out)
	if err != nil {
		t.Fatalf("projected set without labels: %v", err)
	}
	if !tensor.SameShape(got.Images, s.Adv) || !slices.Equal(got.Labels, s.Labels) {
		t.Errorf("projected shape %v labels %v, want %v and %v", got.Images.Shape, got.Labels, s.Adv.Shape, s.Labels)
	}
	if slices.Equal(got.Images.Data, s.Adv.Data) {
		t.Error("projection returned the adversarial images unchanged")
	}

	// Its adv.npy, projected universally to a PNG folder sorted by label.
	png := filepath.Join(dir, "png")
	if err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: def, in: filepath.Join(adv, attack.AdvFile), out: png, universal: true, batch: 4}); err != nil {
		t.Fatal(err)
	}
	for i, l := range s.Labels {
		if m, _ := filepath.Glob(filepath.Join(png, fmt.Sprint(l), fmt.Sprintf("%d.png", i))); len(m) != 1 {
			t.Errorf("image %d (label %d) not in its class folder", i, l)
		}
	}

	// Writing over the set is refused.
	for _, bad := range []string{adv, filepath.Join(adv, attack.LabelsFile)} {
		var ue usageError
		if err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: def, in: adv, out: bad, batch: 4}); !errors.As(err, &ue) {
			t.Errorf("--out %s: err = %v, want a usage error", bad, err)
		}
	}
	if _, err := attack.LoadSet(adv); err != nil {
		t.Errorf("set damaged: %v", err)
	}
}

func TestDefendUsage(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	dir := t.TempDir()
	tests := []struct {
		name string
		o    defendOptions
	}{
		{"no flags", defendOptions{batch: 1}},
		{"no out", defendOptions{defense: dir, in: "a.npy", batch: 1}},
		{"same in and out", defendOptions{defense: dir, in: "a.npy", out: "./a.npy", batch: 1}},
		{"zero batch", defendOptions{defense: dir, in: "a.npy", out: "b.npy"}},
		{"unknown solver", defendOptions{defense: dir, in: "a.npy", out: "b.npy", batch: 1, solver: "fista"}},
		{"solver of a baseline", defendOptions{defense: "jpeg", in: "a.npy", out: "b.npy", batch: 1, solver: "active-set"}},
	}
	for _, tc := range tests {
		var ue usageError
		if err := runDefend(ctx, &out, &out, tc.o); !errors.As(err, &ue) {
			t.Errorf("%s: err = %v, want a usage error", tc.name, err)
		}
	}
	// A directory that is not a defense.
	err := runDefend(ctx, &out, &out, defendOptions{defense: dir, in: "a.npy", out: "b.npy", batch: 1})
	if !errors.Is(err, defense.ErrNotDefense) {
		t.Errorf("not a defense: err = %v, want defense.ErrNotDefense", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.npy")); err == nil {
		t.Error("output written for a failed run")
	}
	var ue usageError
	if err := runDefenseTrain(ctx, &out, &out, defenseTrainOptions{train: defense.DefaultTrainOptions()}); !errors.As(err, &ue) {
		t.Errorf("train without --out: err = %v, want a usage error", err)
	}
	bad := defense.DefaultTrainOptions()
	bad.Clusters = 0
	if err := runDefenseTrain(ctx, &out, &out, defenseTrainOptions{out: dir, train: bad}); !errors.As(err, &ue) {
		t.Errorf("train with 0 clusters: err = %v, want a usage error", err)
	}
}

// TestDefendResumes interrupts a projection after its first finished batch
// and checks that the same command resumes from the saved batches and writes
// a file byte-identical to an uninterrupted run's.
func TestDefendResumes(t *testing.T) {
	dir := t.TempDir()
	def := tinyDefense(t, dir)
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.npy")
	if err := dataset.WriteNPY(in, test.Head(24)); err != nil {
		t.Fatal(err)
	}
	opts := func(out string) defendOptions {
		return defendOptions{defense: def, in: in, out: out, batch: 2}
	}
	var stdout, stderr bytes.Buffer

	// Pixels outside [0, 1] are refused before any work, nothing written.
	wide := test.Head(3).Images.Clone()
	wide.Data[2*len(wide.Data)/3] = 2
	if err := npy.WriteFile(filepath.Join(dir, "wide.npy"), wide); err != nil {
		t.Fatal(err)
	}
	err = runDefend(context.Background(), &stdout, &stderr, defendOptions{defense: def, in: filepath.Join(dir, "wide.npy"), out: filepath.Join(dir, "wide-out.npy"), batch: 2})
	if err == nil || !strings.Contains(err.Error(), "image 2 holds the pixel value 2, outside [0, 1]") {
		t.Errorf("pixels in [0, 2]: err = %v, want an error naming image 2 and the value", err)
	}
	if _, err := os.Stat(experiment.ProjectPartialDir(filepath.Join(dir, "wide-out.npy"))); err == nil {
		t.Error("a refused projection left partial results")
	}

	whole := filepath.Join(dir, "whole.npy")
	if err := runDefend(context.Background(), &stdout, &stderr, opts(whole)); err != nil {
		t.Fatal(err)
	}

	// Cancel as soon as the first batch is saved.
	out := filepath.Join(dir, "out.npy")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(experiment.ProjectPartialDir(out), "chunk-0")); err == nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	err = runDefend(ctx, &stdout, &stderr, opts(out))
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted defend returned %v, want context.Canceled", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("an interrupted defend wrote its output")
	}
	chunks, _ := filepath.Glob(filepath.Join(experiment.ProjectPartialDir(out), "chunk-*"))
	if len(chunks) == 0 || len(chunks) == 12 {
		t.Fatalf("%d of 12 batches saved before the interruption, want some but not all", len(chunks))
	}

	stdout.Reset()
	if err := runDefend(context.Background(), &stdout, &stderr, opts(out)); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("resumed: %d of 24 images", 2*len(chunks)); !strings.Contains(stdout.String(), want) {
		t.Errorf("resumed run printed %q, want %q", stdout.String(), want)
	}
	for _, f := range []string{"", ".labels"} {
		a, _ := os.ReadFile(strings.TrimSuffix(whole, ".npy") + f + ".npy")
		b, _ := os.ReadFile(strings.TrimSuffix(out, ".npy") + f + ".npy")
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("resumed output%s.npy differs from the uninterrupted run's (%d and %d bytes)", f, len(a), len(b))
		}
	}
	if _, err := os.Stat(experiment.ProjectPartialDir(out)); !os.IsNotExist(err) {
		t.Errorf("%s left behind after the output was written", experiment.ProjectPartialDir(out))
	}
}

// TestDefendBaseline projects images through baselines by name: one that
// learns nothing, and D3, which learns its dictionary from --data; the
// output must equal the transform applied directly with the dictionary
// the command cached.
func TestDefendBaseline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	set := test.Head(6)
	in := filepath.Join(dir, "in.npy")
	if err := dataset.WriteNPY(in, set); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	check := func(name, out string, want defense.Transform) {
		t.Helper()
		got, err := dataset.ReadNPY(out)
		if err != nil {
			t.Fatal(err)
		}
		y, err := want.Apply(ctx, set.Images)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Images.Data, y.Data) || !slices.Equal(got.Labels, set.Labels) {
			t.Errorf("%s: output differs from the transform applied directly", name)
		}
	}
	out := filepath.Join(dir, "jpeg.npy")
	if err := runDefend(ctx, &stdout, &stderr, defendOptions{defense: "jpeg", in: in, out: out, batch: 4}); err != nil {
		t.Fatal(err)
	}
	jpeg, _ := baseline.New("jpeg", baseline.DefaultConfig())
	check("jpeg", out, jpeg)

	err = runDefend(ctx, &stdout, &stderr, defendOptions{defense: "d3", in: in, out: filepath.Join(dir, "x.npy"), batch: 4})
	if err == nil || !strings.Contains(err.Error(), "name the data set") {
		t.Errorf("d3 without --data: %v", err)
	}
	err = runDefend(ctx, &stdout, &stderr, defendOptions{defense: "jpeg", in: filepath.Join(dir, "x.bin"), out: filepath.Join(dir, "x.npy"), batch: 4})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "do not say their image size") {
		t.Errorf("binary records for a baseline: %v, want a usage error", err)
	}

	stdout.Reset()
	out = filepath.Join(dir, "d3.npy")
	bl := filepath.Join(dir, "bl")
	o := defendOptions{defense: "d3", in: in, out: out, batch: 4, data: dataset.DefaultSpec, baselineDir: bl, baselineTrain: 100}
	if err := runDefend(ctx, &stdout, &stderr, o); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "projected 6 images with D3") {
		t.Errorf("stdout %q", stdout.String())
	}
	files, _ := filepath.Glob(filepath.Join(bl, "*", baseline.D3DictionaryFile(baseline.DefaultD3DictionaryOptions())))
	if len(files) != 1 {
		t.Fatalf("cached dictionaries %v, want one", files)
	}
	dict, err := baseline.LoadD3Dictionary(files[0])
	if err != nil {
		t.Fatal(err)
	}
	d3, err := baseline.NewD3(dict, baseline.DefaultD3Options())
	if err != nil {
		t.Fatal(err)
	}
	check("d3", out, d3)
}
