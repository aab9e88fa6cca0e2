package defense

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// fakeBackend trains the mean encoder and "learns" a dictionary whose
// values are the mean of the images and the seed, counting calls.
type fakeBackend struct {
	encoders, dicts atomic.Int32
	dictSizes       []int
}

func (f *fakeBackend) backend() Backend {
	return Backend{
		TrainEncoder: func(ctx context.Context, x *tensor.Tensor, opt TrainOptions, rep progress.Reporter) (SavableEncoder, error) {
			f.encoders.Add(1)
			if x.Shape[2] != opt.EncoderResolution || x.Shape[3] != opt.EncoderResolution {
				return nil, errors.New("fake: DAE images at the wrong resolution")
			}
			return &savableMean{meanEncoder{res: opt.EncoderResolution}}, nil
		},
		LearnDictionary: func(ctx context.Context, x *tensor.Tensor, opt TrainOptions, seed uint64, rep progress.Reporter) (*csc.Dictionary, error) {
			f.dicts.Add(1)
			f.dictSizes = append(f.dictSizes, x.Shape[0])
			var mean float64
			for _, v := range x.Data {
				mean += float64(v)
			}
			mean /= float64(len(x.Data))
			d := &csc.Dictionary{M: opt.Filters, C: x.Shape[1], R: opt.FilterSize, S: opt.FilterSize,
				Filters: make([]float32, opt.Filters*x.Shape[1]*opt.FilterSize*opt.FilterSize)}
			for i := range d.Filters {
				d.Filters[i] = float32(mean) + float32(seed%1000)/1e6 + float32(opt.Lambda)
			}
			return d, nil
		},
		NewProjector: projectorFromDict,
	}
}

func smallTrainOptions(f *fakeBackend) TrainOptions {
	opt := DefaultTrainOptions()
	opt.Clusters, opt.PCAComponents, opt.KNN = 3, 4, 5
	opt.Filters, opt.FilterSize = 4, 3
	opt.DictImages = 10
	opt.Backend = f.backend()
	return opt
}

func TestTrainStratifies(t *testing.T) {
	f := &fakeBackend{}
	train, cls := colourImages(60, 16, testColours, 1)
	d, err := Train(context.Background(), train, smallTrainOptions(f), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := d.Manifest
	if m.Resolution != 16 || m.Channels != 3 || m.Clusters != 3 || m.TrainImages != 60 || m.LatentDim != 6 || m.PCAComponents != 4 || m.Lambda != 0.2 {
		t.Errorf("manifest: %+v", m)
	}
	if !slices.Equal(m.ClusterSizes, []int{20, 20, 20}) {
		t.Errorf("cluster sizes %v, want 20 each", m.ClusterSizes)
	}
	// Clusters are the colour classes.
	of := map[int]int{}
	for i, l := range d.Labels {
		if v, ok := of[cls[i]]; ok && v != l {
			t.Fatalf("class %d split over clusters %d and %d", cls[i], v, l)
		}
		of[cls[i]] = l
	}
	// Each dictionary was learned on DictImages images of its cluster:
	// its value is the cluster's mean pixel, which differs per colour.
	if !slices.Equal(f.dictSizes, []int{10, 10, 10, 10}) {
		t.Errorf("dictionary subsets %v, want 4 x 10", f.dictSizes)
	}
	if d.Dictionaries[0].Filters[0] == d.Dictionaries[1].Filters[0] || len(d.Dictionaries) != 3 {
		t.Error("cluster dictionaries are not distinct")
	}
	// The result saves and loads.
	dir := filepath.Join(t.TempDir(), "def")
	if err := Save(dir, d); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
	// Deterministic: a second training gives the same defense.
	d2, err := Train(context.Background(), train, smallTrainOptions(&fakeBackend{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Labels, d2.Labels) || !slices.Equal(d.Universal.Filters, d2.Universal.Filters) || !slices.Equal(d.Codes.Data, d2.Codes.Data) {
		t.Error("two trainings with the same seed differ")
	}
}

func TestTrainResumes(t *testing.T) {
	train, _ := colourImages(45, 16, testColours, 2)
	run := func(dir string, f *fakeBackend, edit func(*TrainOptions), x *tensor.Tensor) *Defense {
		t.Helper()
		opt := smallTrainOptions(f)
		opt.CheckpointDir = dir
		if edit != nil {
			edit(&opt)
		}
		d, err := Train(context.Background(), x, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	changed := train.Clone()
	changed.Data[0] = 0.5
	tests := []struct {
		name          string
		edit          func(*TrainOptions)
		data          *tensor.Tensor
		encoders, dic int32
	}{
		{"same settings reuse everything", nil, train, 0, 0},
		{"new lambda relearns the dictionaries only", func(o *TrainOptions) { o.Lambda = 0.1 }, train, 0, 4},
		// The fake DAE gives the same clusters, hence the same dictionary subsets.
		{"new DAE epochs retrain the DAE only", func(o *TrainOptions) { o.DAEEpochs = 3 }, train, 1, 0},
		{"new subset size relearns the dictionaries", func(o *TrainOptions) { o.DictImages = 9 }, train, 0, 4},
		{"new data retrain everything", nil, changed, 1, 4},
		{"new backend version recomputes everything", func(o *TrainOptions) { o.Backend.Version = "v2" }, train, 1, 4},
	}
	for _, tc := range tests {
		dir := t.TempDir()
		f0 := &fakeBackend{}
		d0 := run(dir, f0, nil, train)
		if f0.encoders.Load() != 1 || f0.dicts.Load() != 4 {
			t.Fatalf("first run: %d DAE, %d dictionary trainings; want 1, 4", f0.encoders.Load(), f0.dicts.Load())
		}
		f := &fakeBackend{}
		d := run(dir, f, tc.edit, tc.data)
		if f.encoders.Load() != tc.encoders || f.dicts.Load() != tc.dic {
			t.Errorf("%s: %d DAE, %d dictionary trainings; want %d, %d", tc.name, f.encoders.Load(), f.dicts.Load(), tc.encoders, tc.dic)
		}
		if tc.edit == nil && tc.data == train && (!slices.Equal(d.Universal.Filters, d0.Universal.Filters) || !slices.Equal(d.Labels, d0.Labels)) {
			t.Errorf("%s: resumed defense differs", tc.name)
		}
	}
}

func TestTrainErrors(t *testing.T) {
	f := &fakeBackend{}
	good, _ := colourImages(20, 16, testColours, 1)
	ctx := context.Background()
	var oe *TrainOptionError
	for _, edit := range []func(*TrainOptions){
		func(o *TrainOptions) { o.Clusters = 0 },
		func(o *TrainOptions) { o.Lambda = -1 },
		func(o *TrainOptions) { o.DictImages = -1 },
		func(o *TrainOptions) { o.KNN = 0 },
	} {
		opt := smallTrainOptions(f)
		edit(&opt)
		if _, err := Train(ctx, good, opt, nil); !errors.As(err, &oe) {
			t.Errorf("err = %v, want *TrainOptionError", err)
		}
	}
	opt := smallTrainOptions(f)
	for name, x := range map[string]*tensor.Tensor{
		"not square": tensor.New(20, 3, 16, 12),
		"too few":    tensor.New(2, 3, 16, 16),
		"3-D":        tensor.New(20, 16, 16),
	} {
		if _, err := Train(ctx, x, opt, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Train(cancelled, good, opt, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

// TestTrainRefusesMorePCAComponentsThanCodeValues: a PCA wider than the
// encoder's codes is an error naming the limit, not a silent clamp.
func TestTrainRefusesMorePCAComponentsThanCodeValues(t *testing.T) {
	f := &fakeBackend{}
	train, _ := colourImages(60, 16, testColours, 1)
	opt := smallTrainOptions(f)
	opt.PCAComponents = 100000
	_, err := Train(context.Background(), train, opt, nil)
	if err == nil || !strings.Contains(err.Error(), "100000 PCA components asked") || !strings.Contains(err.Error(), "at most 6") {
		t.Errorf("err = %v, want one naming 100000 and the limit 6", err)
	}
}
