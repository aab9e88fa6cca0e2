package defense

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stl-defense/stl/cluster"
	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

func TestMapOutput(t *testing.T) {
	q := func(b float64) float32 { return float32(b) / 255 }
	tests := []struct {
		name string
		opt  ApplyOptions
		in   []float32
		want []float32
	}{
		{"clip is the default", ApplyOptions{}, []float32{-0.5, 0, 0.25, 1, 1.5}, []float32{0, 0, 0.25, 1, 1}},
		{"clip named", ApplyOptions{Output: OutputClip}, []float32{-1e-30, 0.5, 2}, []float32{0, 0.5, 1}},
		{"max rescales to 1", ApplyOptions{Output: OutputMax}, []float32{0.5, 1, 2}, []float32{0.25, 0.5, 1}},
		{"max lifts a dark image", ApplyOptions{Output: OutputMax}, []float32{0.1, 0.2, 0.4}, []float32{0.25, 0.5, 1}},
		{"max sets negatives to 0", ApplyOptions{Output: OutputMax}, []float32{-0.3, 0.6, 1.2}, []float32{0, 0.5, 1}},
		{"max of a non-positive image", ApplyOptions{Output: OutputMax}, []float32{-0.3, -0.1, 0}, []float32{0, 0, 0}},
		{"clip then 8 bits", ApplyOptions{Quantize8: true}, []float32{0.4 / 255, 1.6 / 255, 0.3, 1.2, -1}, []float32{0, q(2), q(77), 1, 0}},
		{"max then 8 bits", ApplyOptions{Output: OutputMax, Quantize8: true}, []float32{0.3, 0.6, -0.2}, []float32{q(128), 1, 0}},
	}
	for _, tc := range tests {
		got := slices.Clone(tc.in)
		tc.opt.MapOutput(got)
		for i := range got {
			if math.Abs(float64(got[i]-tc.want[i])) > 1e-7 {
				t.Errorf("%s: MapOutput(%v) = %v, want %v", tc.name, tc.in, got, tc.want)
				break
			}
		}
		if math.Signbit(float64(got[0])) {
			t.Errorf("%s: -0 in the output", tc.name)
		}
		// Every mapping lands in [0, 1] and is idempotent.
		again := slices.Clone(got)
		tc.opt.MapOutput(again)
		for i := range got {
			if got[i] < 0 || got[i] > 1 || again[i] != got[i] {
				t.Errorf("%s: %v mapped again gives %v", tc.name, got, again)
				break
			}
		}
	}
}

func TestApplyOptionsValidate(t *testing.T) {
	var te *TrainOptionError
	for _, o := range []ApplyOptions{{Output: "rescale"}, {Assign: "kmeans"}} {
		if err := o.Validate(); !errors.As(err, &te) {
			t.Errorf("%+v: err = %v, want *TrainOptionError", o, err)
		}
		opt := DefaultTrainOptions()
		opt.ApplyOptions = o
		if err := opt.Validate(); !errors.As(err, &te) {
			t.Errorf("TrainOptions with %+v: err = %v, want *TrainOptionError", o, err)
		}
	}
	for _, o := range []ApplyOptions{{}, ReleaseApplyOptions(), {Output: OutputClip, Assign: AssignKNN}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// rawProjector is a fake projector whose "lowpass + D x" is 2 src - 0.25,
// leaving [0, 1] on both sides.
type rawProjector struct{}

func (rawProjector) Project(_ context.Context, dst, src *tensor.Tensor) error {
	for i, v := range src.Data {
		dst.Data[i] = 2*v - 0.25
	}
	return nil
}

// TestSTLOutputMapping checks that both transforms map every image of
// their output with MapOutput, image by image.
func TestSTLOutputMapping(t *testing.T) {
	enc := &meanEncoder{res: 32}
	train, _ := colourImages(30, 32, testColours, 1)
	s, _ := fitStratifier(t, enc, train, 3)
	x, _ := colourImages(5, 32, testColours, 2)
	per := 3 * 32 * 32
	for _, opt := range []ApplyOptions{{}, {Output: OutputMax}, {Quantize8: true}, {Output: OutputMax, Quantize8: true}} {
		uni, err := NewSTLWith(rawProjector{}, opt)
		if err != nil {
			t.Fatal(err)
		}
		strat, err := NewStratifiedSTLWith(s, []Projector{rawProjector{}, rawProjector{}, rawProjector{}}, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range []Transform{uni, strat} {
			y, err := tr.Apply(context.Background(), x)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				want := make([]float32, per)
				for j, v := range x.Data[i*per : (i+1)*per] {
					want[j] = 2*v - 0.25
				}
				opt.MapOutput(want)
				if !slices.Equal(y.Data[i*per:(i+1)*per], want) {
					t.Errorf("%s with %+v: image %d not mapped by MapOutput", tr.Name(), opt, i)
				}
			}
		}
	}
	if _, err := NewSTLWith(rawProjector{}, ApplyOptions{Output: "x"}); err == nil {
		t.Error("NewSTLWith an unknown mapping: no error")
	}
	if _, err := NewStratifiedSTLWith(s, []Projector{rawProjector{}, rawProjector{}, rawProjector{}}, ApplyOptions{Assign: AssignTransductive}); err == nil {
		t.Error("transductive options with a kNN stratifier: no error")
	}
}

// TestCSCProjectorDefaultClip checks that the default mapping keeps the
// defense's output bit for bit what csc's clipped projection gives.
func TestCSCProjectorDefaultClip(t *testing.T) {
	dict := paperDictionary(t)
	x, _ := colourImages(2, 32, testColours, 3)
	popt := csc.DefaultProjectOptions()
	ref, err := csc.NewProjection(dict, popt)
	if err != nil {
		t.Fatal(err)
	}
	want := tensor.New(x.Shape...)
	if err := ref.Project(context.Background(), want, x); err != nil {
		t.Fatal(err)
	}
	tr, err := NewSTL(mustProjector(t, dict))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tr.Apply(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Data {
		if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
			t.Fatalf("value %d: %g, csc's clipped projection %g", i, got.Data[i], want.Data[i])
		}
	}
}

// shiftImages returns n images of one colour whose brightness runs from lo
// to hi: their codes lie on a line.
func shiftImages(n int, lo, hi float32) *tensor.Tensor {
	x := tensor.New(n, 3, 32, 32)
	per := 3 * 32 * 32
	for i := 0; i < n; i++ {
		v := lo + (hi-lo)*float32(i)/float32(max(n-1, 1))
		for j := range per {
			x.Data[i*per+j] = v
		}
	}
	return x
}

// colourStratifiers fits a stratifier of 3 clusters on 60 colour images
// and returns it, its transductive version and its k-means.
func colourStratifiers(t *testing.T) (s, ts *Stratifier, km *cluster.KMeans) {
	t.Helper()
	train, _ := colourImages(60, 32, testColours, 1)
	s, km = fitStratifier(t, &meanEncoder{res: 32}, train, 3)
	ts, err := s.Transductive(km.Centers)
	if err != nil {
		t.Fatal(err)
	}
	return s, ts, km
}

func TestTransductiveAssignment(t *testing.T) {
	ctx := context.Background()
	s, ts, km := colourStratifiers(t)
	if s.IsTransductive() || !ts.IsTransductive() {
		t.Fatal("IsTransductive")
	}
	x, _ := colourImages(20, 32, testColours, 7)
	// The labels are those of k-means on the training codes and the set's
	// codes together, started from the training centres.
	got, err := ts.Assign(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	codes, _ := s.Codes(ctx, x)
	union := tensor.New(60+20, codes.Shape[1])
	copy(union.Data, s.codes.Data)
	copy(union.Data[len(s.codes.Data):], codes.Data)
	ref, err := cluster.FitKMeansFrom(ctx, union, km.Centers, kmeansOptions(3, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ref.Labels[60:]) {
		t.Errorf("transductive labels %v, want the union's k-means labels %v", got, ref.Labels[60:])
	}
	again, _ := ts.Assign(ctx, x)
	if !slices.Equal(got, again) {
		t.Errorf("not deterministic: %v then %v", got, again)
	}
	// On well-separated clusters it agrees with the kNN vote.
	vote, _ := s.Assign(ctx, x)
	if !slices.Equal(got, vote) {
		t.Errorf("transductive %v, vote %v on separated colours", got, vote)
	}

	// Transductive means set-dependent: a grey image between two clusters
	// of greys goes where its set pulls the centres.
	gtrain := shiftImages(40, 0, 1) // two clusters: dark and bright
	gs, gkm := fitStratifier(t, &meanEncoder{res: 32}, gtrain, 2)
	gts, err := gs.Transductive(gkm.Centers)
	if err != nil {
		t.Fatal(err)
	}
	probe := shiftImages(1, 0.5, 0.5)
	alone, err := gts.Assign(ctx, probe)
	if err != nil {
		t.Fatal(err)
	}
	// inSet assigns probe as the last image of a set of 200 greys in
	// [lo, hi].
	inSet := func(lo, hi float32) int {
		set := tensor.New(201, 3, 32, 32)
		copy(set.Data, shiftImages(200, lo, hi).Data)
		copy(set.Data[200*3*32*32:], probe.Data)
		a, err := gts.Assign(ctx, set)
		if err != nil {
			t.Fatal(err)
		}
		return a[200]
	}
	inDark, inBright := inSet(0.3, 0.45), inSet(0.55, 0.7)
	if inDark == inBright {
		t.Errorf("the mid-grey image got cluster %d in a dark set and in a bright set (alone: %d): want the set to matter", inDark, alone[0])
	}

	// Saved and loaded, a defense keeps its apply options.
	d := testDefense(t)
	d.Manifest.Apply = ReleaseApplyOptions()
	dir := filepath.Join(t.TempDir(), "def")
	if err := Save(dir, d); err != nil {
		t.Fatal(err)
	}
	ld, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ld.Manifest.Apply != ReleaseApplyOptions() {
		t.Errorf("apply options after the round trip: %+v", ld.Manifest.Apply)
	}
	_, strat, err := ld.Transforms(projectorFromDict)
	if err != nil {
		t.Fatal(err)
	}
	if !strat.Stratifier().IsTransductive() {
		t.Error("the loaded defense's STL (cluster) is not transductive")
	}
}

// TestForSet checks that a whole set bound with ForSet gives the same
// images however it is batched, and what Apply gives on the whole set.
func TestForSet(t *testing.T) {
	ctx := context.Background()
	s, ts, _ := colourStratifiers(t)
	projs := []Projector{&fillProjector{value: 0.25}, &fillProjector{value: 0.5}, &fillProjector{value: 0.75}}
	x, _ := colourImages(11, 32, testColours, 3)
	for _, st := range []*Stratifier{s, ts} {
		opt := ApplyOptions{}
		if st.IsTransductive() {
			opt.Assign = AssignTransductive
		}
		tr, err := NewStratifiedSTLWith(st, projs, opt)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := tr.Apply(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		for _, batch := range []int{1, 4, 11} {
			f, err := tr.ForSet(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			var got []float32
			for lo := 0; lo < 11; lo += batch {
				y, err := f(ctx, lo, min(lo+batch, 11))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, y.Data...)
			}
			if !slices.Equal(got, whole.Data) {
				t.Errorf("transductive %v, batches of %d: output differs from Apply on the whole set", st.IsTransductive(), batch)
			}
			if _, err := f(ctx, 5, 12); err == nil {
				t.Error("ForSet function past the set: no error")
			}
		}
	}
	if _, err := (&StratifiedSTL{strat: s}).ForSet(ctx, nil); !errors.Is(err, ErrNilInput) {
		t.Errorf("ForSet(nil): err = %v, want ErrNilInput", err)
	}
}
