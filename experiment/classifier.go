package experiment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment/cache"
)

func (r *runner) trainVanilla(ctx context.Context) error {
	if r.cfg.VanillaModel != "" {
		r.next("load the vanilla classifier")
		if err := r.loadVanilla(ctx); err != nil {
			return err
		}
		if d, ok := r.b.Classifier.(SpecDescriber); ok && !r.cfg.outsideVanilla() {
			r.describe("classifier training (retrained)", d.DescribeSpec(r.classifierSpec(r.cfg.retrainEpochs())))
		}
		return nil
	}
	r.next("train the vanilla classifier")
	m, key, err := r.trainClassifier(ctx, stageVanilla, r.classifierSpec(r.cfg.Epochs), r.train, r.dataKey)
	if err != nil {
		return err
	}
	r.vanilla, r.vanillaKey = m, key
	r.vanillaFrom = &VanillaSource{Kind: vanillaTrained, Path: filepath.Join(r.store.Path(stageVanilla), "model")}
	if d, ok := r.b.Classifier.(SpecDescriber); ok {
		r.describe("classifier training (vanilla)", d.DescribeSpec(r.classifierSpec(r.cfg.Epochs)))
		if r.cfg.retrainEpochs() != r.cfg.Epochs {
			r.describe("classifier training (retrained)", d.DescribeSpec(r.classifierSpec(r.cfg.retrainEpochs())))
		}
	}
	return nil
}

func (r *runner) classifierSpec(epochs int) ClassifierSpec {
	return ClassifierSpec{Arch: r.cfg.Arch, Epochs: epochs, BatchSize: r.cfg.BatchSize, LearningRate: r.cfg.LearningRate, Seed: r.cfg.Seed, Threads: runtime.NumCPU(),
		Cutout: r.cfg.Cutout, Dropout: r.cfg.Dropout}
}

// trainClassifier trains (or reuses) a classifier on set in the named
// stage.
func (r *runner) trainClassifier(ctx context.Context, stage string, spec ClassifierSpec, set *dataset.Set, deps ...cache.Key) (attack.Model, cache.Key, error) {
	key, err := cache.NewKey(stage, spec, deps...)
	if err != nil {
		return nil, "", err
	}
	// Per-epoch checkpoints live outside the stage's temporary directory,
	// so that an interrupted training resumes; they go once the stage is
	// published.
	ckpt := r.checkpointDir(stage, key)
	spec.CheckpointDir = ckpt
	dir, _, err := r.store.Do(ctx, stage, key, spec, deps, func(ctx context.Context, out string) error {
		m, err := r.b.Classifier.Train(ctx, spec, set, r.rep)
		if err != nil {
			return err
		}
		return r.b.Classifier.Save(filepath.Join(out, "model"), m)
	})
	if err != nil {
		return nil, "", err
	}
	r.dropCheckpoint(ckpt)
	m, err := r.b.Classifier.Load(filepath.Join(dir, "model"))
	if err != nil {
		return nil, "", fmt.Errorf("stage %s: %w", stage, err)
	}
	return m, key, nil
}

// checkpointDir is where a stage keeps checkpoints between interruptions,
// under its key so that a changed setting does not resume stale work.
func (r *runner) checkpointDir(stage string, key cache.Key) string {
	return filepath.Join(r.dir, CheckpointsDir, stage+"-"+key.Short())
}

// dropCheckpoint removes a published stage's checkpoints, and the
// checkpoints directory once empty.
func (r *runner) dropCheckpoint(dir string) {
	os.RemoveAll(dir)
	os.Remove(filepath.Dir(dir)) // fails, harmlessly, while not empty
}
