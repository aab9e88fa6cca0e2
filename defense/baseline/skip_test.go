package baseline

import (
	"context"
	"slices"
	"testing"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/tensor"
)

// TestSkipResumesRandomizedTransforms: applying a randomized baseline to a
// set batch by batch, with the first batches skipped instead of
// transformed, gives the later batches an uninterrupted run gives.
func TestSkipResumesRandomizedTransforms(t *testing.T) {
	x := tensor.New(6, 3, 16, 16)
	for i := range x.Data {
		x.Data[i] = float32((i*37)%101) / 101
	}
	batch := func(lo, hi int) *tensor.Tensor { return x.Batch(lo, hi) }
	for _, name := range []string{"tvm", "deflect", "crop-ens", "pd-ens"} {
		mk := func() defense.Transform {
			c := DefaultConfig()
			tr, err := New(name, c.Seeded(7))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return tr
		}
		whole := mk()
		if !whole.Randomized() || !defense.CanResume(whole) {
			t.Fatalf("%s: randomized %v, can resume %v; want both", name, whole.Randomized(), defense.CanResume(whole))
		}
		var want []*tensor.Tensor
		for lo := 0; lo < 6; lo += 2 {
			y, err := whole.Apply(context.Background(), batch(lo, lo+2))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, y)
		}
		resumed := mk()
		resumed.(defense.Skipper).Skip(4)
		got, err := resumed.Apply(context.Background(), batch(4, 6))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data, want[2].Data) {
			t.Errorf("%s: the batch after skipping 4 images differs from the uninterrupted run's", name)
		}
		fresh := mk()
		other, _ := fresh.Apply(context.Background(), batch(4, 6))
		if slices.Equal(other.Data, want[2].Data) {
			t.Errorf("%s: the third batch equals a first batch's draw; the test cannot tell skipping from not", name)
		}
	}
}
