package experiment

import (
	"context"
	"errors"
	"fmt"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/progress"
)

// inputs are the images a job attacks and the training images baselines
// learn from.
type inputs struct {
	train, set *dataset.Set // set: the split's images attacked
	indices    []int        // of set in the split, nil when all
	labels     []int        // of the images attacked
	// rows, when set (openInputs), reads the split by images; set and
	// train are then nil.
	rows *dataset.Split
}

// loadOptions are the options the data set is read with for m: images
// resized to its input side.
func loadOptions(m attack.Model, rep progress.Reporter) dataset.LoadOptions {
	_, h, _ := m.InputShape()
	lo := dataset.DefaultLoadOptions()
	lo.Size, lo.Progress = h, rep
	return lo
}

// dataSpec is o.Data or the default sample.
func (o AttackOptions) dataSpec() string {
	if o.Data == "" {
		return dataset.DefaultSpec
	}
	return o.Data
}

// loadInputs loads the data set of o for the classifier m: the split's
// images (a class-balanced subset of o.N with o.SubsetSeed), checked
// against m's input shape and classes.
func loadInputs(ctx context.Context, m attack.Model, o AttackOptions, rep progress.Reporter) (*inputs, error) {
	train, test, err := dataset.LoadContext(ctx, o.dataSpec(), loadOptions(m, rep))
	if err != nil {
		return nil, err
	}
	set := test
	if o.Split == "train" {
		set = train
	}
	if set == nil || set.Len() == 0 {
		return nil, fmt.Errorf("data set %s has no %s images", o.dataSpec(), o.Split)
	}
	in := &inputs{train: train, set: set, labels: set.Labels}
	if in.indices, err = checkAttacked(m, o, set.Shape(), set.Classes, set.Labels); err != nil {
		return nil, err
	}
	if in.indices != nil {
		in.set = set.Subset(in.indices)
		in.labels = in.set.Labels
	}
	return in, nil
}

// openInputs opens the split of o's data set for reading by images
// (dataset.OpenSplit), with the checks and the subset of loadInputs, or
// loads it whole (loadInputs) when its form is read whole.
func openInputs(ctx context.Context, m attack.Model, o AttackOptions, rep progress.Reporter) (*inputs, error) {
	sp, err := dataset.OpenSplit(ctx, o.dataSpec(), o.Split, loadOptions(m, rep))
	if errors.Is(err, dataset.ErrWholeOnly) {
		return loadInputs(ctx, m, o, rep)
	}
	if err != nil {
		return nil, err
	}
	if sp.Len() == 0 {
		return nil, fmt.Errorf("data set %s has no %s images", o.dataSpec(), o.Split)
	}
	in := &inputs{rows: sp, labels: sp.Labels}
	if in.indices, err = checkAttacked(m, o, sp.Shape, sp.Classes, sp.Labels); err != nil {
		return nil, err
	}
	if in.indices != nil {
		in.labels = make([]int, len(in.indices))
		for k, i := range in.indices {
			in.labels[k] = sp.Labels[i]
		}
	}
	return in, nil
}

// checkAttacked checks a split of images of shape and classes against
// the classifier m and returns the indices of o's class-balanced subset
// of o.N images (nil for all).
func checkAttacked(m attack.Model, o AttackOptions, shape dataset.Shape, classes []string, labels []int) ([]int, error) {
	c, h, w := m.InputShape()
	if shape.C != c || shape.H != h || shape.W != w {
		return nil, fmt.Errorf("model %s takes %dx%dx%d images, data set %s holds %dx%dx%d", o.Model, c, h, w, o.dataSpec(), shape.C, shape.H, shape.W)
	}
	if len(classes) > m.NumClasses() {
		return nil, fmt.Errorf("model %s has %d classes, data set %s %d", o.Model, m.NumClasses(), o.dataSpec(), len(classes))
	}
	if o.N > 0 && o.N < len(labels) {
		return dataset.BalancedIndices(labels, len(classes), o.N, o.SubsetSeed)
	}
	return nil, nil
}

// Len returns the number of images the job attacks.
func (j *AttackJob) Len() int { return len(j.goal) }

// dataName names the attacked images' data set part.
func (j *AttackJob) dataName() string {
	if j.Set != nil {
		return j.Set.Name
	}
	return j.rows.Name
}

// images returns images lo..hi-1 of the job's, read from the data set
// for a job that reads by shards.
func (j *AttackJob) images(ctx context.Context, lo, hi int) (*dataset.Set, error) {
	if j.Set != nil {
		return j.Set.Subset(indexRange(lo, hi)), nil
	}
	idx := indexRange(lo, hi)
	if j.Indices != nil {
		idx = j.Indices[lo:hi]
	}
	return j.rows.Read(ctx, idx)
}

// readAll reads the job's images into Set when it reads by shards.
func (j *AttackJob) readAll(ctx context.Context) error {
	if j.Set != nil {
		return nil
	}
	set, err := j.images(ctx, 0, j.Len())
	if err != nil {
		return err
	}
	j.Set = set
	return nil
}

// trainImages returns the data set's training images, read whole when
// the job was opened by shards.
func (j *AttackJob) trainImages(ctx context.Context) (*dataset.Set, error) {
	if j.train != nil || j.rows == nil {
		return j.train, nil
	}
	train, _, err := dataset.LoadContext(ctx, j.opts.dataSpec(), loadOptions(j.clf, nil))
	if err != nil {
		return nil, err
	}
	j.train = train
	return train, nil
}

// Shard returns the job over shard sh of j's images, cut at batch
// boundaries as AttackOptions.Shard says, that writes its set to out,
// reading only the shard's images when j reads by shards (OpenAttackJob).
// The new job shares j's classifier, training images and deterministic
// defense, so that a worker that runs many shards loads them once (a
// randomized defense is drawn afresh for each shard, as in a process of
// its own); j stays usable. An attack set on j is not carried over. j
// must be a whole job (LoadAttackJob without a Shard, or OpenAttackJob),
// else Shard returns an error, as for a shard that holds no batch. Shard
// is not safe for concurrent use on one j.
func (j *AttackJob) Shard(ctx context.Context, sh dataset.Shard, out string) (*AttackJob, error) {
	if err := sh.Validate(); err != nil {
		return nil, err
	}
	if !j.opts.Shard.Whole() {
		return nil, fmt.Errorf("attack job: shard %s of a job that is already shard %s", sh, j.opts.Shard)
	}
	o := j.opts
	n := j.Len()
	lo, hi := sh.BatchRange(n, o.Batch)
	if hi <= lo {
		return nil, fmt.Errorf("shard %s of %d images in batches of %d holds no batch", sh, n, o.Batch)
	}
	set, err := j.images(ctx, lo, hi)
	if err != nil {
		return nil, err
	}
	s := &AttackJob{Set: set, Defense: j.Defense, Learned: j.Learned, clf: j.clf, goal: j.goal[lo:hi], train: j.train, rows: j.rows, newDefense: j.newDefense}
	if j.Defense != nil && j.Defense.Randomized() {
		// Each shard draws its own random stream, as a separate process would.
		if s.Defense, err = j.newDefense(0); err != nil {
			return nil, err
		}
	}
	if j.Indices != nil {
		s.Indices = j.Indices[lo:hi]
	} else {
		s.Indices = indexRange(lo, hi)
	}
	s.opts = o
	s.opts.Shard, s.opts.Out = sh, out
	return s, nil
}
