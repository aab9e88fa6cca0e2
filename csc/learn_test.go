package csc

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// crops cuts n h×h crops of the 128x128 highpass reference image.
func crops(t testing.TB, n, h int) *tensor.Tensor {
	img := loadImage(t, "img128_hi")
	out := tensor.New(n, 3, h, h)
	for i := 0; i < n; i++ {
		oy, ox := (i*37)%(128-h), (i*59)%(128-h)
		for c := 0; c < 3; c++ {
			for y := 0; y < h; y++ {
				copy(out.Data[((i*3+c)*h+y)*h:][:h], img.Data[(c*128+oy+y)*128+ox:][:h])
			}
		}
	}
	return out
}

func smallLearnOptions() LearnOptions {
	opt := DefaultLearnOptions()
	opt.Filters = 12
	opt.Size = 6
	opt.Iterations = 25
	opt.Workers = 2
	return opt
}

func TestLearnObjectiveDecreasesAndConstraintsHold(t *testing.T) {
	imgs := crops(t, 8, 24)
	var st []LearnStats
	d, err := Learn(context.Background(), imgs, smallLearnOptions(), LearnRecorderFunc(func(s LearnStats) { st = append(st, s) }))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 25 {
		t.Fatalf("recorded %d iterations, want 25", len(st))
	}
	t.Logf("objective: first %.4f, 5th %.4f, last %.4f", st[0].Objective, st[4].Objective, st[len(st)-1].Objective)
	if !(st[len(st)-1].Objective < 0.9*st[4].Objective) {
		t.Errorf("objective did not decrease: %.4f at iteration 5, %.4f at the end", st[4].Objective, st[len(st)-1].Objective)
	}
	for m := 0; m < d.M; m++ {
		if n := d.filterNorm(m); math.Abs(n-1) > 1e-5 {
			t.Errorf("filter %d norm %v, want 1", m, n)
		}
		for c := 0; c < d.C; c++ {
			mean := 0.0
			for _, v := range d.Filters[(m*d.C+c)*36 : (m*d.C+c+1)*36] {
				mean += float64(v)
			}
			if math.Abs(mean) > 1e-5 {
				t.Errorf("filter %d channel %d mean %v, want 0", m, c, mean)
			}
		}
	}
	// The learned dictionary codes the training images better than the
	// random initial one.
	coder0, _ := NewCoder(randomDictionary(12, 3, 6, 1, true), DefaultOptions())
	coder1, _ := NewCoder(d, DefaultOptions())
	r0, _ := coder0.SolveBatch(context.Background(), imgs, nil)
	r1, _ := coder1.SolveBatch(context.Background(), imgs, nil)
	var o0, o1 float64
	for i := range r0 {
		o0 += r0[i].Objective
		o1 += r1[i].Objective
	}
	t.Logf("CBPDN objective on the training crops: random %.4f, learned %.4f", o0, o1)
	if !(o1 < o0) {
		t.Errorf("learned dictionary %.4f no better than random %.4f", o1, o0)
	}
}

func TestLearnIndependentOfWorkers(t *testing.T) {
	imgs := crops(t, 5, 16)
	opt := smallLearnOptions()
	opt.Iterations = 6
	var ref *Dictionary
	for _, w := range []int{1, 3} {
		opt.Workers = w
		d, err := Learn(context.Background(), imgs, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = d
			continue
		}
		for i := range d.Filters {
			if d.Filters[i] != ref.Filters[i] {
				t.Fatalf("workers=%d: filter value %d differs", w, i)
			}
		}
	}
}

func TestLearnCheckpointResume(t *testing.T) {
	imgs := crops(t, 4, 16)
	opt := smallLearnOptions()
	opt.Iterations = 4
	opt.CheckpointEvery = 2
	opt.Checkpoint = filepath.Join(t.TempDir(), "dict.npy")
	if _, err := Learn(context.Background(), imgs, opt, nil); err != nil {
		t.Fatal(err)
	}
	d4, it, err := readCheckpoint(opt.Checkpoint)
	if err != nil || it != 4 {
		t.Fatalf("checkpoint: iteration %d, err %v", it, err)
	}
	opt.Iterations = 7
	opt.Resume = true
	var iters []int
	d, err := Learn(context.Background(), imgs, opt, LearnRecorderFunc(func(s LearnStats) { iters = append(iters, s.Iter) }))
	if err != nil {
		t.Fatal(err)
	}
	if len(iters) != 3 || iters[0] != 4 {
		t.Fatalf("resumed iterations %v, want [4 5 6]", iters)
	}
	if d.Filters[0] == d4.Filters[0] && d.Filters[1] == d4.Filters[1] {
		t.Error("dictionary did not change after resuming")
	}
	// Asking for fewer iterations than the checkpoint holds returns it
	// unchanged and leaves the checkpoint alone.
	opt.Iterations = 5
	d5, err := Learn(context.Background(), imgs, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d5.Filters[0] != d.Filters[0] {
		t.Error("resumed past the requested iterations")
	}
	if _, it, _ := readCheckpoint(opt.Checkpoint); it != 7 {
		t.Errorf("checkpoint iteration %d after a shorter run, want 7", it)
	}
	// Cancellation writes a checkpoint and returns the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opt.Iterations = 20
	if _, err := Learn(ctx, imgs, opt, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, it, _ := readCheckpoint(opt.Checkpoint); it != 7 {
		t.Errorf("checkpoint after cancel at iteration %d, want 7", it)
	}
	// A corrupt checkpoint is an error that says how to start afresh.
	if err := os.WriteFile(opt.Checkpoint+".json", []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Learn(context.Background(), imgs, opt, nil); err == nil || !strings.Contains(err.Error(), "to start afresh, delete "+opt.Checkpoint) {
		t.Errorf("corrupt checkpoint: err = %v, want it to say which files to delete", err)
	}
}

func TestLearnBadInput(t *testing.T) {
	good := crops(t, 2, 16)
	nan := good.Clone()
	nan.Data[3] = float32(math.NaN())
	cases := []struct {
		name string
		img  *tensor.Tensor
		mod  func(*LearnOptions)
	}{
		{"lambda", good, func(o *LearnOptions) { o.Lambda = 0 }},
		{"filters", good, func(o *LearnOptions) { o.Filters = 0 }},
		{"too small", tensor.New(2, 3, 5, 5), nil},
		{"empty", tensor.New(0, 3, 16, 16), nil},
		{"NaN", nan, nil},
		{"rank", tensor.New(3, 16, 16), nil},
		{"memory", good, func(o *LearnOptions) { o.MaxMemory = 1000 }},
	}
	for _, c := range cases {
		opt := smallLearnOptions()
		if c.mod != nil {
			c.mod(&opt)
		}
		_, err := Learn(context.Background(), c.img, opt, nil)
		if err == nil {
			t.Errorf("%s: no error", c.name)
		}
		var me *MemoryError
		if c.name == "memory" && !errors.As(err, &me) {
			t.Errorf("memory: err = %v, want *MemoryError", err)
		}
	}
}

func TestLearnMemoryEstimate(t *testing.T) {
	// 256 32x32 colour images, 64 filters: the figure documented on
	// LearnOptions.MaxMemory (2.5 MB per image).
	per := float64(learnMemory(256, 3, 32, 32, 64)) / 256 / 1e6
	if per < 2.4 || per > 2.6 {
		t.Errorf("%.2f MB per image, want about 2.5", per)
	}
}
