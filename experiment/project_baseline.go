package experiment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/progress"
)

// isBaselineSpec reports whether a --defense argument names a baseline
// rather than a defense directory (a directory of that name wins).
func isBaselineSpec(spec string) bool {
	if st, err := os.Stat(spec); err == nil && st.IsDir() {
		return false
	}
	_, err := baseline.Lookup(spec)
	return err == nil
}

// ProjectBaseline is Project for a baseline named by o.Defense, with its
// published options: the images of o.In (an adversarial set, an image
// folder or an .npy; binary records do not say their size) go through it
// batch by batch, resumably, into o.Out. A baseline that learns from clean
// training images learns from those of o.Data at the input's resolution
// (a class-balanced subset of o.BaselineTrain of them, seeded 1, as stl
// attack's default), cached in o.BaselineDir ("baselines" beside o.Out) as
// stl attack and stl evaluate cache it. A randomized baseline draws from
// its default seeds.
func ProjectBaseline(ctx context.Context, o ProjectOptions, rep progress.Reporter) (*ProjectOutcome, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	e, err := baseline.Lookup(o.Defense)
	if err != nil {
		return nil, fmt.Errorf("defense %q is %w (%s)", o.Defense, ErrUnknownDefense, strings.Join(baseline.Names(), ", "))
	}
	if l := strings.ToLower(o.In); strings.HasSuffix(l, ".bin") || strings.HasSuffix(l, ".bin.gz") {
		return nil, fmt.Errorf("%s: %w: binary records do not say their image size, which baseline %s cannot take from a defense's manifest: give a .npy or an image folder", o.In, ErrImageForm, o.Defense)
	}
	set, bare, err := ReadImages(ctx, o.In, defense.Manifest{}, rep)
	if err != nil {
		return nil, err
	}
	if err := checkUnitRange(set.Images); err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	cfg := baseline.DefaultConfig()
	learned := ""
	if e.Learns() {
		var l *Learned
		if cfg, l, err = prepareDefendBaseline(ctx, o, set.Shape(), rep); err != nil {
			return nil, err
		}
		learned = filepath.Base(l.Dir)
	}
	tr, err := e.New(cfg)
	if err != nil {
		return nil, err
	}
	set = set.Shard(o.Shard)
	if set.Len() == 0 {
		return nil, fmt.Errorf("%s: no images", o.In)
	}
	key, err := cache.NewKey("defend-baseline", map[string]any{
		"baseline": e.Settings(baseline.DefaultConfig(), baseline.DefaultPrepareOptions()),
		"learned":  learned,
		"images":   setDigest(set),
		"shape":    set.Images.Shape,
		"batch":    o.Batch,
	})
	if err != nil {
		return nil, err
	}
	part, err := cache.OpenPartial(ProjectPartialDir(o.Out), key)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", o.Out, err)
	}
	res := &ProjectOutcome{Transform: tr.Name(), Images: set.Len(), Baseline: e.Name}
	if dir, ok := AttackSetDir(o.In); ok {
		res.AttackSet, res.SetName = dir, set.Name
	}
	err = projectChunks(part, set, o, bare, tr.Name(), res, rep, func(lo, hi int, dst []float32, _ []int32) error {
		y, err := tr.Apply(ctx, set.Images.Batch(lo, hi))
		if err != nil {
			return err
		}
		copy(dst, y.Data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// prepareDefendBaseline learns what the baseline o.Defense needs from the
// training images of o.Data, loaded at the input's shape, as stl attack
// does (same cache).
func prepareDefendBaseline(ctx context.Context, o ProjectOptions, shape dataset.Shape, rep progress.Reporter) (baseline.Config, *Learned, error) {
	if o.Data == "" {
		return baseline.Config{}, nil, fmt.Errorf("baseline %s learns from clean training images: name the data set they come from (Data, --data)", o.Defense)
	}
	train, _, err := dataset.LoadContext(ctx, o.Data, dataset.LoadOptions{Size: shape.H, Progress: rep})
	if err != nil {
		return baseline.Config{}, nil, err
	}
	if train.Shape() != shape {
		return baseline.Config{}, nil, fmt.Errorf("the training images of %s are %v, the images to project %v: baseline %s learns from images of the size it is applied to", o.Data, train.Shape(), shape, o.Defense)
	}
	ao := DefaultAttackOptions()
	ao.Defense, ao.BaselineDir, ao.BaselineTrain, ao.SubsetSeed, ao.Out = o.Defense, o.BaselineDir, o.BaselineTrain, 1, o.Out
	return prepareAttackBaseline(ctx, ao, train, rep)
}
