package experiment

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
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

// jitter adds one seeded random offset per image: a randomized transform
// whose random numbers can be skipped.
type jitter struct {
	rng  *rand.Rand
	fail *int // when > 0, fail after that many more Apply calls
}

func (j *jitter) Name() string     { return "jitter" }
func (j *jitter) Randomized() bool { return true }
func (j *jitter) Skip(n int) bool {
	for range n {
		j.rng.Float32()
	}
	return true
}
func (j *jitter) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if *j.fail > 0 {
		if *j.fail--; *j.fail == 0 {
			return nil, errors.New("interrupted")
		}
	}
	y := x.Clone()
	per := len(y.Data) / y.Shape[0]
	for i := range y.Shape[0] {
		d := 0.01 * j.rng.Float32()
		for k := range per {
			y.Data[i*per+k] += d
		}
	}
	return y, nil
}

// TestWhiteBoxResumes: a white-box stage against a randomized transform,
// interrupted in its third chunk, resumes from the two saved chunks, skips
// the random numbers the transform drew for them and returns what an
// uninterrupted stage returns; a deterministic transform resumes too.
func TestWhiteBoxResumes(t *testing.T) {
	x := rampImages(3*attackBatch + 5)
	labels := make([]int, x.Shape[0])
	calls := 0
	// The attacker queries the defended model twice per chunk (as EOT
	// would), so its output depends on the transform's draws.
	pgd := func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
		calls++
		y := x.Clone()
		for range 2 {
			z, err := m.Logits(ctx, x)
			if err != nil {
				return nil, err
			}
			for i := range y.Data {
				y.Data[i] += 0.001 * z.Data[(i/4)%len(z.Data)]
			}
		}
		return y, nil
	}
	for _, randomized := range []bool{true, false} {
		fail := 0
		newT := func(seed uint64) (defense.Transform, error) {
			if !randomized {
				return shrink{"s", 0.5}, nil
			}
			return &jitter{rng: rand.New(rand.NewPCG(seed, 1)), fail: &fail}, nil
		}
		r := &runner{cfg: Config{Seed: 3, EOTDraws: 1}, wbX: x, wbY: labels, rep: progress.Nop}
		r.b.Adaptive = func(t defense.Transform, m attack.Model, draws int) (attack.Model, error) {
			return attack.Adaptive(t, m, nil, draws)
		}
		rw := &row{name: "R", newT: newT}
		m := &identityModel{}
		want, err := r.whiteBoxImages(context.Background(), rw, m, pgd, "whitebox-r", "w", nil)
		if err != nil {
			t.Fatal(err)
		}
		part := mustPartial(t)
		fail = 5 // the third chunk's first query (two per chunk, then one more)
		if !randomized {
			r.wbY = slices.Repeat([]int{-1}, len(labels))
			calls = 0
		}
		failing := func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
			if labels[0] == -1 && calls == 2 {
				return nil, errors.New("interrupted")
			}
			return pgd(ctx, m, x, labels, rep)
		}
		if _, err := r.whiteBoxImages(context.Background(), rw, m, failing, "whitebox-r", "w", part); err == nil {
			t.Fatalf("randomized %v: the interrupted stage succeeded", randomized)
		}
		r.wbY, fail, calls = labels, 0, 0
		got, err := r.whiteBoxImages(context.Background(), rw, m, pgd, "whitebox-r", "w", part)
		if err != nil {
			t.Fatal(err)
		}
		if calls != 2 {
			t.Errorf("randomized %v: resumed stage attacked %d chunks, want the 2 not saved", randomized, calls)
		}
		if !slices.Equal(got.Data, want.Data) {
			t.Errorf("randomized %v: resumed output differs from the uninterrupted one", randomized)
		}
	}
}

// identityModel has logits equal to the first four pixels' sums.
type identityModel struct{}

func (identityModel) InputShape() (int, int, int) { return 1, 2, 2 }
func (identityModel) NumClasses() int             { return 2 }
func (identityModel) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	out := tensor.New(n, 2)
	for i := range n {
		for k := range 4 {
			out.Data[2*i] += x.Data[4*i+k]
		}
		out.Data[2*i+1] = -out.Data[2*i]
	}
	return out, nil
}
func (m identityModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, _ := m.Logits(ctx, x)
	return z, tensor.New(x.Shape...), nil
}

// setMean is a defense.SetTransform whose output is every image's pixels
// minus the mean of its set: the mean of the call's batch for Apply, of the
// whole set for ForSet.
type setMean struct{ shrink }

func (setMean) mean(x *tensor.Tensor) float32 {
	var s float64
	for _, v := range x.Data {
		s += float64(v)
	}
	return float32(s / float64(len(x.Data)))
}

func (m setMean) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y := x.Clone()
	mu := m.mean(x)
	for i := range y.Data {
		y.Data[i] -= mu
	}
	return y, nil
}

func (m setMean) ForSet(_ context.Context, x *tensor.Tensor) (func(context.Context, int, int) (*tensor.Tensor, error), error) {
	mu := m.mean(x)
	return func(_ context.Context, lo, hi int) (*tensor.Tensor, error) {
		y := x.Batch(lo, hi).Clone()
		for i := range y.Data {
			y.Data[i] -= mu
		}
		return y, nil
	}, nil
}

// TestApplyBatchedSetTransform: a transform whose output depends on the
// set (the transductive STL (cluster)) is applied as one set, whatever the
// batches.
func TestApplyBatchedSetTransform(t *testing.T) {
	x := rampImages(2*transformBatch + 5)
	want, _ := setMean{}.Apply(context.Background(), x)
	got, err := applyBatched(context.Background(), setMean{shrink{"m", 1}}, x, "x", progress.Nop, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Data, want.Data) {
		t.Error("a set transform was applied batch by batch, not to the whole set")
	}
}
