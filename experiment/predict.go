package experiment

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// LoadedTransform is a defense loaded from outside a run for the commands
// that put one in front of a classifier (stl predict, stl serve).
type LoadedTransform struct {
	defense.Transform
	// Spec is the directory or baseline name it was loaded from.
	Spec string
	// Channels and Resolution are the image shape the transform requires
	// (those a saved STL defense was built for); 0 when it takes any.
	Channels, Resolution int
}

// LoadTransform resolves a --defense argument: a defense directory written
// by `stl defense train` (its "STL (cluster)" transform, or "STL" with the
// universal dictionary when universal is set; both safe for concurrent
// use), or the name of a baseline that learns nothing from training images
// (built with its published options; a randomized one draws from its own
// seeded source and is not safe for concurrent use). A baseline that needs
// a patch database or an auto-encoder is refused with a message saying so;
// an unknown name wraps ErrUnknownDefense.
func LoadTransform(spec string, universal bool) (*LoadedTransform, error) {
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		d, err := defense.Load(spec)
		if err != nil {
			return nil, err
		}
		uni, strat, err := d.Transforms(defense.DefaultBackend().NewProjector)
		if err != nil {
			return nil, err
		}
		var t defense.Transform = strat
		if universal {
			t = uni
		}
		return &LoadedTransform{Transform: t, Spec: spec, Channels: d.Manifest.Channels, Resolution: d.Manifest.Resolution}, nil
	}
	e, err := baseline.Lookup(spec)
	if err != nil {
		return nil, fmt.Errorf("defense %q is neither a defense directory nor a baseline: %w (%s)", spec, ErrUnknownDefense, strings.Join(baseline.Names(), ", "))
	}
	if universal {
		return nil, fmt.Errorf("defense %s: the universal dictionary applies to a defense directory only", spec)
	}
	if e.Learns() {
		return nil, fmt.Errorf("defense %s learns from clean training images (a patch database, an auto-encoder or a patch dictionary): use it through stl run, stl attack, stl evaluate or stl defend --data", spec)
	}
	t, err := e.New(baseline.DefaultConfig())
	if err != nil {
		return nil, err
	}
	return &LoadedTransform{Transform: t, Spec: spec}, nil
}

// CheckShape returns an error when images of shape (c, h, w) do not fit
// the transform.
func (t *LoadedTransform) CheckShape(c, h, w int) error {
	if t.Resolution > 0 && (c != t.Channels || h != t.Resolution || w != t.Resolution) {
		return fmt.Errorf("defense %s was built for %dx%dx%d images, not %dx%dx%d", t.Spec, t.Channels, t.Resolution, t.Resolution, c, h, w)
	}
	return nil
}

// Prediction is a classifier's answer for one image: a line of `stl
// predict --json`.
type Prediction struct {
	// Index is the image's position in the input.
	Index int `json:"index"`
	// Label is the image's true class, nil when the input has no labels;
	// Correct then is nil too.
	Label   *int  `json:"label,omitempty"`
	Correct *bool `json:"correct,omitempty"`
	// Predicted is the class of the largest logit.
	Predicted int `json:"predicted"`
	// Logits are the classifier's K outputs (before softmax).
	Logits []float32 `json:"logits"`
}

// PredictSummary totals a prediction run: the last line of `stl predict
// --json`.
type PredictSummary struct {
	Images int `json:"images"`
	// Correct counts the images predicted as their label; Accuracy is
	// Correct/Images, nil when the input has no labels.
	Correct  int      `json:"correct"`
	Accuracy *float64 `json:"accuracy"`
	// Defense names the transform applied before the classifier, empty
	// for none.
	Defense string `json:"defense,omitempty"`
}

// ErrNoImages is returned by Predict for an empty input.
var ErrNoImages = errors.New("no images")

// Predict classifies the images x (N, C, H, W), pixels in [0, 1], with m,
// through t first when t is not nil, batch images at a time, and calls each
// with every image's Prediction in order. labels holds the true classes
// (nil: unknown). It checks the images' shape against m's input and the
// labels against m's classes before any work, reports one unit per image to
// rep, and returns ctx's error when cancelled or the first error of each.
// A pixel value outside [0, 1] (or NaN) is an error naming the image.
func Predict(ctx context.Context, m attack.Model, t defense.Transform, x *tensor.Tensor, labels []int, batch int, each func(Prediction) error, rep progress.Reporter) (PredictSummary, error) {
	var sum PredictSummary
	n, c, h, w, err := x.NCHW()
	if err != nil {
		return sum, err
	}
	if n == 0 {
		return sum, ErrNoImages
	}
	if batch < 1 {
		return sum, fmt.Errorf("predict: batch %d, want >= 1", batch)
	}
	if mc, mh, mw := m.InputShape(); mc != c || mh != h || mw != w {
		return sum, fmt.Errorf("the model takes %dx%dx%d images, the input holds %dx%dx%d", mc, mh, mw, c, h, w)
	}
	k := m.NumClasses()
	if labels != nil {
		if len(labels) != n {
			return sum, fmt.Errorf("%d labels for %d images", len(labels), n)
		}
		for i, l := range labels {
			if l < 0 || l >= k {
				return sum, fmt.Errorf("image %d has the label %d, and the model has %d classes", i, l, k)
			}
		}
	}
	if err := checkUnitRange(x); err != nil {
		return sum, err
	}
	rep = progress.Or(rep)
	stage := "predict"
	if t != nil {
		sum.Defense = t.Name()
		stage += " through " + t.Name()
	}
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		b := x.Batch(lo, hi)
		if t != nil {
			if b, err = t.Apply(ctx, b); err != nil {
				return sum, err
			}
		}
		z, err := m.Logits(ctx, b)
		if err != nil {
			return sum, err
		}
		for i := lo; i < hi; i++ {
			p := Prediction{Index: i, Logits: z.Data[(i-lo)*k : (i-lo+1)*k : (i-lo+1)*k]}
			p.Predicted = tensor.Argmax(p.Logits)
			if labels != nil {
				l, ok := labels[i], p.Predicted == labels[i]
				p.Label, p.Correct = &l, &ok
				if ok {
					sum.Correct++
				}
			}
			if err := each(p); err != nil {
				return sum, err
			}
		}
		sum.Images = hi
		rep.Report(stage, hi, n, "")
	}
	if labels != nil {
		acc := float64(sum.Correct) / float64(n)
		sum.Accuracy = &acc
	}
	return sum, nil
}

// PredictInput names the images `stl predict` classifies: the file or
// folder In (ReadImages: image folders, record files, .npy arrays,
// adversarial sets), or else the Split ("test", the default, or "train")
// of the data set Data ("" for dataset.DefaultSpec); only the first Limit
// of them when Limit > 0.
type PredictInput struct {
	In, Data, Split string
	Limit           int
}

// LoadPredictInput reads the images of in, at the classifier's input shape,
// reporting progress to rep; labeled is false for an .npy without labels.
// A file ReadImages cannot read gives an error wrapping ErrImageForm.
func LoadPredictInput(ctx context.Context, in PredictInput, shape dataset.Shape, rep progress.Reporter) (set *dataset.Set, labeled bool, err error) {
	set, labeled, err = loadPredictInput(ctx, in, shape, rep)
	if err == nil && in.Limit > 0 && in.Limit < set.Len() {
		set = set.Head(in.Limit)
	}
	return set, labeled, err
}

// OpenPredictInput opens the images of in as LoadPredictInput reads them,
// for a reader of ranges of them: a file or folder In through OpenImages,
// a data set's split through dataset.OpenSplit (only the range read where
// the form allows; other data sets are read whole). Len is at most
// in.Limit when it is positive; labeled is false for an .npy without
// labels.
func OpenPredictInput(ctx context.Context, in PredictInput, shape dataset.Shape, rep progress.Reporter) (src *ImageSource, labeled bool, err error) {
	if in.In == "" {
		src, err = openPredictData(ctx, in, shape, rep)
	} else {
		src, err = OpenImages(ctx, in.In, defense.Manifest{Channels: shape.C, Resolution: shape.H}, rep)
	}
	if err != nil {
		return nil, false, err
	}
	if in.Limit > 0 && in.Limit < src.n {
		src.n = in.Limit
	}
	return src, !src.bare, nil
}

// openPredictData opens the split of in's data set by images where the
// form allows, else reads it whole (loadPredictInput).
func openPredictData(ctx context.Context, in PredictInput, shape dataset.Shape, rep progress.Reporter) (*ImageSource, error) {
	split := "test"
	if in.Split == "train" {
		split = "train"
	}
	spec, lo := in.data(shape, rep)
	sp, err := dataset.OpenSplit(ctx, spec, split, lo)
	switch {
	case errors.Is(err, dataset.ErrWholeOnly):
		set, _, err := loadPredictInput(ctx, in, shape, rep)
		if err != nil {
			return nil, err
		}
		return wholeSource(set, false), nil
	case err != nil:
		return nil, err
	case sp.Len() == 0:
		return nil, fmt.Errorf("data set %s has no %s images", spec, in.Split)
	}
	return &ImageSource{n: sp.Len(), read: func(ctx context.Context, lo, hi int) (*dataset.Set, error) {
		return sp.Read(ctx, indexRange(lo, hi))
	}}, nil
}

// data returns the spec of in's data set and the options it is read
// with at the classifier's input shape.
func (in PredictInput) data(shape dataset.Shape, rep progress.Reporter) (string, dataset.LoadOptions) {
	spec := in.Data
	if spec == "" {
		spec = dataset.DefaultSpec
	}
	lo := dataset.DefaultLoadOptions()
	lo.Size, lo.Progress = shape.H, rep
	return spec, lo
}

func loadPredictInput(ctx context.Context, in PredictInput, shape dataset.Shape, rep progress.Reporter) (*dataset.Set, bool, error) {
	if in.In != "" {
		set, bare, err := ReadImages(ctx, in.In, defense.Manifest{Channels: shape.C, Resolution: shape.H}, rep)
		return set, !bare, err
	}
	spec, lo := in.data(shape, rep)
	train, test, err := dataset.LoadContext(ctx, spec, lo)
	if err != nil {
		return nil, false, err
	}
	set := test
	if in.Split == "train" {
		set = train
	}
	if set == nil || set.Len() == 0 {
		return nil, false, fmt.Errorf("data set %s has no %s images", spec, in.Split)
	}
	return set, true, nil
}
