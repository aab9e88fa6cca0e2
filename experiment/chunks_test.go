package experiment

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// countingShrink is shrink that counts the images it transforms and fails
// once it has done failAfter of them (0: never).
type countingShrink struct {
	shrink
	images, failAfter int
}

func (c *countingShrink) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if c.failAfter > 0 && c.images >= c.failAfter {
		return nil, errors.New("interrupted")
	}
	c.images += x.Shape[0]
	return c.shrink.Apply(ctx, x)
}

func rampImages(n int) *tensor.Tensor {
	x := tensor.New(n, 1, 2, 2)
	for i := range x.Data {
		x.Data[i] = float32(i%97) / 97
	}
	return x
}

// TestApplyBatchedResumes: a transform stage interrupted after two batches
// resumes from the saved batches, transforms only the rest and returns what
// an uninterrupted call returns.
func TestApplyBatchedResumes(t *testing.T) {
	x := rampImages(3*transformBatch + 7)
	want, err := applyBatched(context.Background(), shrink{"s", 0.5}, x, "x", progress.Nop, nil)
	if err != nil {
		t.Fatal(err)
	}
	part, err := cache.OpenPartial(t.TempDir(), "k")
	if err != nil {
		t.Fatal(err)
	}
	first := &countingShrink{shrink: shrink{"s", 0.5}, failAfter: 2 * transformBatch}
	if _, err := applyBatched(context.Background(), first, x, "x", progress.Nop, part); err == nil {
		t.Fatal("the interrupted call succeeded")
	}
	again := &countingShrink{shrink: shrink{"s", 0.5}}
	got, err := applyBatched(context.Background(), again, x, "x", progress.Nop, part)
	if err != nil {
		t.Fatal(err)
	}
	if again.images != x.Shape[0]-2*transformBatch {
		t.Errorf("resumed call transformed %d images, want %d", again.images, x.Shape[0]-2*transformBatch)
	}
	if !slices.Equal(got.Data, want.Data) {
		t.Error("resumed output differs from the uninterrupted one")
	}
}

// TestAttackInChunksResumes: the same for an attack stage, whose chunks are
// the attack's own batches.
func TestAttackInChunksResumes(t *testing.T) {
	x := rampImages(2*attackBatch + 3)
	labels := make([]int, x.Shape[0])
	calls := 0
	atk := func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
		calls++
		if calls == 2 && labels[0] == -1 {
			return nil, errors.New("interrupted")
		}
		return shrink{"a", 0.9}.Apply(ctx, x)
	}
	want, err := attackInChunks(context.Background(), atk, nil, x, labels, "a", progress.Nop, mustPartial(t))
	if err != nil {
		t.Fatal(err)
	}
	part := mustPartial(t)
	bad := slices.Repeat([]int{-1}, len(labels))
	calls = 0
	if _, err := attackInChunks(context.Background(), atk, nil, x, bad, "a", progress.Nop, part); err == nil {
		t.Fatal("the interrupted call succeeded")
	}
	calls = 0
	got, err := attackInChunks(context.Background(), atk, nil, x, labels, "a", progress.Nop, part)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("resumed stage ran %d chunks, want the 2 not saved", calls)
	}
	if !slices.Equal(got.Data, want.Data) {
		t.Error("resumed output differs from the uninterrupted one")
	}
}

func mustPartial(t *testing.T) *cache.Partial {
	t.Helper()
	p, err := cache.OpenPartial(t.TempDir(), "k")
	if err != nil {
		t.Fatal(err)
	}
	return p
}
