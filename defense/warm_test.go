package defense

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

// signNoise returns x moved by +-eps per pixel, the signs drawn by an
// xorshift generator seeded with seed, clipped to [0, 1].
func signNoise(x *tensor.Tensor, eps float32, seed uint64) *tensor.Tensor {
	r := seed*0x9e3779b97f4a7c15 | 1
	y := x.Clone()
	for i, v := range y.Data {
		r ^= r << 13
		r ^= r >> 7
		r ^= r << 17
		if r&1 == 0 {
			v += eps
		} else {
			v -= eps
		}
		y.Data[i] = min(1, max(0, v))
	}
	return y
}

// maxDiff returns the largest absolute difference of a and b.
func maxDiff(a, b *tensor.Tensor) float64 {
	m := 0.0
	for i := range a.Data {
		m = max(m, math.Abs(float64(a.Data[i]-b.Data[i])))
	}
	return m
}

// countingWarm counts the images a WarmProjector started warm and cold.
type countingWarm struct {
	WarmProjector
	warm, cold int
}

func (c *countingWarm) ProjectFrom(ctx context.Context, dst, src *tensor.Tensor, from, to []*csc.State) error {
	for i := 0; i < src.Shape[0]; i++ {
		if from != nil && from[i] != nil {
			c.warm++
		} else {
			c.cold++
		}
	}
	return c.WarmProjector.ProjectFrom(ctx, dst, src, from, to)
}

// TestApplyFrom projects clean images into states, then their noisy copies
// cold and warm-started from those states, through STL and STL (cluster):
// the warm outputs differ from the cold ones (the start was used) by little,
// and a start's states fill to.
func TestApplyFrom(t *testing.T) {
	ctx := context.Background()
	x, _ := colourImages(6, 32, testColours, 4)
	strat, projs := stratifiedFixture(t)
	counters := make([]*countingWarm, len(projs))
	for k := range projs {
		counters[k] = &countingWarm{WarmProjector: sparseProjector(t, uint64(10+k))}
		strat.projs[k] = counters[k]
	}
	uni, err := NewSTL(&countingWarm{WarmProjector: sparseProjector(t, 20)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []WarmTransform{uni, strat} {
		t.Run(tr.Name(), func(t *testing.T) {
			states := make([]*WarmState, 6)
			if _, err := tr.ApplyFrom(ctx, x, nil, states); err != nil {
				t.Fatal(err)
			}
			for i, s := range states {
				if s == nil || s.state == nil {
					t.Fatalf("image %d: no state stored", i)
				}
			}
			xp := signNoise(x, 2.0/255, 5)
			cold, err := tr.Apply(ctx, xp)
			if err != nil {
				t.Fatal(err)
			}
			warm, err := tr.ApplyFrom(ctx, xp, states, states)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(cold, warm); d == 0 || d > 5e-3 {
				t.Errorf("warm and cold outputs differ by %g, want in (0, 5e-3]", d)
			}
			if _, err := tr.ApplyFrom(ctx, xp, states[:2], nil); err == nil {
				t.Error("starts of the wrong length gave no error")
			}
		})
	}
	warm, cold := 0, 0
	for _, c := range counters {
		warm, cold = warm+c.warm, cold+c.cold
	}
	if warm != 6 || cold != 6 { // Apply projects without ProjectFrom
		t.Errorf("STL (cluster) projected %d images warm and %d cold, want 6 and 6", warm, cold)
	}
}

// TestWarmCache: the cache starts an image warm from the nearest earlier
// input within its radius, whatever the order and subset of the batch,
// cold when none is near, and its outputs stay near a cold Apply's.
func TestWarmCache(t *testing.T) {
	ctx := context.Background()
	x, _ := colourImages(6, 32, testColours, 4)
	uni, err := NewSTL(sparseProjector(t, 20))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewWarmCache(uni, WarmOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		x          *tensor.Tensor
		warm, cold int // cumulative Starts
	}{
		{"first call: every image cold", x, 0, 6},
		{"noisy copies of three, reordered", reorder(signNoise(x, 0.5/255, 6), []int{4, 0, 2}), 3, 6},
		{"the same images again, in another order", reorder(signNoise(x, 0.5/255, 6), []int{0, 2, 4}), 6, 6},
		{"images beyond the radius", signNoise(x, 2.0/255, 8).Batch(0, 2), 6, 8},
	}
	for _, s := range steps {
		got, err := c.Apply(ctx, s.x)
		if err != nil {
			t.Fatal(err)
		}
		want, err := uni.Apply(ctx, s.x)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(got, want); d > 5e-3 {
			t.Errorf("%s: output %g from a cold Apply's", s.name, d)
		}
		if w, cl := c.Starts(); w != s.warm || cl != s.cold {
			t.Errorf("%s: %d warm and %d cold starts so far, want %d and %d", s.name, w, cl, s.warm, s.cold)
		}
	}
	for _, o := range []WarmOptions{{Radius: -1}, {Radius: math.Inf(1)}, {States: -1}, {Chain: -1}} {
		if _, err := NewWarmCache(uni, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	small, err := NewWarmCache(uni, WarmOptions{States: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := small.Apply(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if w, _ := small.Starts(); w != 2 || len(small.slots) != 2 {
		t.Errorf("a cache of 2 states: %d warm starts and %d states, want 2 and 2", w, len(small.slots))
	}
	// Chains of at most 2 warm starts: warm, warm, cold, warm, warm, cold.
	chained, err := NewWarmCache(uni, WarmOptions{Chain: 2})
	if err != nil {
		t.Fatal(err)
	}
	one := x.Batch(0, 1)
	var got []int
	for range 7 {
		w0, _ := chained.Starts()
		if _, err := chained.Apply(ctx, one); err != nil {
			t.Fatal(err)
		}
		w1, _ := chained.Starts()
		got = append(got, w1-w0)
	}
	if want := []int{0, 1, 1, 0, 1, 1, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("warm starts per call with chains of 2: %v, want %v", got, want)
	}
}

// sparseProjector is CSCProjector with a small random dictionary (seed)
// and a lambda small enough (0.01) that the noise of colourImages is
// coded: the ADMM has work to do.
func sparseProjector(t *testing.T, seed uint64) WarmProjector {
	t.Helper()
	p, err := CSCProjector(smallDictionary(seed, 4, 3), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	return p.(WarmProjector)
}

// reorder returns the images idx of x, in that order.
func reorder(x *tensor.Tensor, idx []int) *tensor.Tensor {
	d := len(x.Data) / x.Shape[0]
	out := tensor.New(append([]int{len(idx)}, x.Shape[1:]...)...)
	for a, i := range idx {
		copy(out.Data[a*d:(a+1)*d], x.Data[i*d:(i+1)*d])
	}
	return out
}
