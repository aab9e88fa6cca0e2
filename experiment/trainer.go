package experiment

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
)

// nnTrainer trains package nn's classifiers.
type nnTrainer struct{}

func defaultTrainer() Trainer { return nnTrainer{} }

// Train builds spec.Arch for the set's image shape and classes, with the
// input normalized by the training set's per-channel mean and standard
// deviation, and trains it with nn.Train (SGD, one-cycle schedule, crop and
// flip augmentation). With spec.CheckpointDir set, every epoch is
// checkpointed there and an interrupted training resumes from it.
func (nnTrainer) Train(ctx context.Context, spec ClassifierSpec, train *dataset.Set, rep progress.Reporter) (attack.Model, error) {
	m, err := newClassifier(spec, train)
	if err != nil {
		return nil, err
	}
	return m, fit(ctx, m, spec, train, nil, rep)
}

// TrainAdversarial implements AdversarialTrainer: Train with the batch
// hook of package advtrain, starting from a copy of init (an
// *nn.Classifier, its weights and normalization) when not nil.
func (nnTrainer) TrainAdversarial(ctx context.Context, spec ClassifierSpec, adv advtrain.Options, t defense.Transform, init attack.Model, train *dataset.Set, rep progress.Reporter) (attack.Model, error) {
	var m *nn.Classifier
	var err error
	if init == nil {
		m, err = newClassifier(spec, train)
	} else {
		m, err = copyClassifier(init, spec.Threads)
	}
	if err != nil {
		return nil, err
	}
	hook, err := advtrain.Hook(adv, t)
	if err != nil {
		return nil, err
	}
	m.Meta.Notes = "adversarial training: " + adv.String()
	return m, fit(ctx, m, spec, train, hook, rep)
}

// newClassifier builds an untrained spec.Arch for the set's images.
func newClassifier(spec ClassifierSpec, train *dataset.Set) (*nn.Classifier, error) {
	s := train.Shape()
	c := nn.DefaultClassifierConfig()
	c.Arch, c.Channels, c.Height, c.Width, c.Classes = spec.Arch, s.C, s.H, s.W, len(train.Classes)
	c.Seed = uint64(spec.Seed)
	c.Threads = spec.Threads
	c.Dropout = spec.Dropout
	c.Mean, c.Std = channelStats(train)
	return nn.NewClassifier(c)
}

// copyClassifier returns a new classifier with init's configuration
// (threads set to threads) and weights.
func copyClassifier(init attack.Model, threads int) (*nn.Classifier, error) {
	src, ok := init.(*nn.Classifier)
	if !ok {
		return nil, fmt.Errorf("experiment: cannot fine-tune a %T with package nn", init)
	}
	c := src.Config()
	c.Threads = threads
	m, err := nn.NewClassifier(c)
	if err != nil {
		return nil, err
	}
	for i, p := range m.Params() {
		copy(p.W, src.Params()[i].W)
	}
	return m, nil
}

// fit trains m on train with nn.Train and spec's recipe, through hook when
// not nil, checkpointing in spec.CheckpointDir when set.
func fit(ctx context.Context, m *nn.Classifier, spec ClassifierSpec, train *dataset.Set, hook func(context.Context, *nn.TrainBatch) error, rep progress.Reporter) error {
	o := trainOptions(spec)
	o.Dataset = train.Name
	o.BatchHook = hook
	if spec.CheckpointDir != "" {
		// nn resumes from the checkpoint's train_state.json when there is
		// one and starts afresh when there is none.
		o.CheckpointDir, o.Resume = spec.CheckpointDir, true
	}
	_, err := nn.Train(ctx, m, nn.Labeled{Images: train.Images, Labels: train.Labels}, nn.Labeled{}, o, rep)
	return err
}

// trainOptions returns nn's training options for spec.
func trainOptions(spec ClassifierSpec) nn.TrainOptions {
	o := nn.DefaultTrainOptions()
	o.Epochs, o.BatchSize, o.LR, o.Seed = spec.Epochs, spec.BatchSize, spec.LearningRate, uint64(spec.Seed)
	o.Cutout = spec.Cutout
	return o
}

// DescribeSpec implements SpecDescriber: the architecture and nn's full
// training recipe (optimizer, schedule, augmentation).
func (nnTrainer) DescribeSpec(spec ClassifierSpec) any {
	o := trainOptions(spec)
	return map[string]any{
		"arch": spec.Arch, "threads": spec.Threads, "normalization": "per-channel mean and std of the training set",
		"epochs": o.Epochs, "batch_size": o.BatchSize, "lr": o.LR, "schedule": o.Schedule,
		"momentum": o.SGD.Momentum, "nesterov": o.SGD.Nesterov, "weight_decay": o.SGD.WeightDecay,
		"label_smoothing": o.LabelSmoothing, "crop_pad": o.CropPad, "flip": o.Flip, "seed": o.Seed,
		"cutout": o.Cutout, "dropout": spec.Dropout,
	}
}

// channelStats returns the per-channel mean and standard deviation of the
// set's pixels (a floor of 1e-3 keeps a constant channel usable).
func channelStats(s *dataset.Set) (mean, std []float32) {
	sh := s.Shape()
	plane := sh.H * sh.W
	mean, std = make([]float32, sh.C), make([]float32, sh.C)
	for ch := 0; ch < sh.C; ch++ {
		var sum, sq float64
		for i := 0; i < s.Len(); i++ {
			for _, v := range s.Image(i)[ch*plane : (ch+1)*plane] {
				sum += float64(v)
				sq += float64(v) * float64(v)
			}
		}
		n := float64(s.Len() * plane)
		mu := sum / n
		mean[ch] = float32(mu)
		std[ch] = float32(math.Max(1e-3, math.Sqrt(math.Max(0, sq/n-mu*mu))))
	}
	return mean, std
}

// Save writes an nn classifier into the directory path.
func (nnTrainer) Save(path string, m attack.Model) error {
	c, ok := m.(*nn.Classifier)
	if !ok {
		return fmt.Errorf("experiment: cannot save a %T with package nn", m)
	}
	return nn.Save(path, c)
}

// Load reads an nn classifier from the directory path.
func (nnTrainer) Load(path string) (attack.Model, error) { return nn.Load(path) }

// LoadPretrained implements PretrainedLoader for model directories written
// by nn.Save (`stl train classifier`): model.safetensors (the weights) and
// model.json (architecture, input size, normalization, metadata).
func (nnTrainer) LoadPretrained(dir string) (attack.Model, PretrainedInfo, error) {
	for _, f := range []string{nn.WeightsFile, nn.MetadataFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, PretrainedInfo{}, fmt.Errorf("%s is not a model directory of stl train classifier: %w", dir, err)
		}
	}
	m, err := nn.Load(dir)
	if err != nil {
		return nil, PretrainedInfo{}, err
	}
	c := m.Config()
	return m, PretrainedInfo{
		Files: []string{nn.WeightsFile, nn.MetadataFile}, Arch: c.Arch, Dropout: c.Dropout,
		Dataset: m.Meta.Dataset, TrainImages: m.Meta.TrainImages, Epochs: m.Meta.Epochs,
		TestAccuracy: m.Meta.TestAccuracy, Notes: m.Meta.Notes,
	}, nil
}
