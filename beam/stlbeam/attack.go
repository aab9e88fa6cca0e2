package stlbeam

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/cli"
)

// AttackOptions configures Attack.
type AttackOptions struct {
	// Flags are the options of `stl attack`, read as that command reads
	// them (cli.AttackFlags); Flags.Opts.Out is the merged set's
	// directory. Not with a strength search (Flags.Search.Target: one
	// strength for all images, searched once with `stl attack`), nor with
	// a universal perturbation to fit (--attack uap needs Flags.UAP.From,
	// a perturbation fitted once with `stl attack --attack uap`), nor with
	// Flags.Opts.Shard.
	Flags cli.AttackFlags
	// Sharding: the parts the attacked images are cut into, at batch
	// boundaries (AttackOptions.Shard of package experiment), at most one
	// per batch; each part is a set directory.
	Sharding
}

// Validate checks the options as `stl attack` does (cli.AttackFlags.Check,
// for flags given explicitly) and what a pipeline cannot do.
func (o AttackOptions) Validate() error {
	f := o.Flags
	if err := f.Check(func(string) bool { return false }); err != nil {
		return fmt.Errorf("stlbeam: %w", err)
	}
	switch {
	case !f.Opts.Shard.Whole():
		return fmt.Errorf("stlbeam: Flags.Opts.Shard %s: the pipeline cuts the shards itself", f.Opts.Shard)
	case f.Search.Target != 0:
		return fmt.Errorf("stlbeam: a target dissimilarity searches one strength for all images: search it once with stl attack --target-dissimilarity, then give the pipeline the strength found")
	case f.Method == cli.MethodUAP && f.UAP.From == "":
		return fmt.Errorf("stlbeam: --attack uap: fit the perturbation once (stl attack --attack uap), then give the pipeline --uap DIR, so that the shards do not each fit it again")
	}
	return o.Sharding.validate()
}

func (o AttackOptions) withDefaults() AttackOptions {
	o.Sharding = o.Sharding.withDefaults(o.Flags.Opts.Out)
	return o
}

// Attack adds to s the attack `stl attack` runs under o.Flags, over the
// attacked images cut into o.Shards parts at batch boundaries, spread
// over the runner's workers by a reshuffle, each worker loading the
// classifier, the data's labels and the defense once
// (experiment.OpenAttackJob: the images of each shard are read with it
// where the data set's form allows) and
// attacking its shards (experiment.AttackJob.Shard and Run, resumable
// inside a shard); then the merge of the shards' sets, in order, into the
// directory o.Flags.Opts.Out (experiment.MergeAttackSets). For a
// deterministic attack and defense the merged set (adv.npy, labels.npy,
// meta.json) equals the one `stl attack` writes, byte for byte. It returns
// the PCollection holding the merged directory once it is written.
func Attack(s beam.Scope, o AttackOptions) (beam.PCollection, error) {
	o = o.withDefaults()
	return shardPipeline(s.Scope("stl.Attack"), o.Validate(), o.Sharding, &attackShardFn{Opts: o}, &mergeFn{Out: o.Flags.Opts.Out, Kind: mergeAttackSets})
}

// attackShardFn attacks one shard per element. Opts is the DoFn's
// serialized configuration.
type attackShardFn struct {
	Opts AttackOptions
}

// Setup creates the parts' directory.
func (f *attackShardFn) Setup() error { return os.MkdirAll(f.Opts.PartsDir, 0o755) }

// attackState is what a worker loads once: the job over all images and
// the classifier's normalization when the budget is measured in it.
type attackState struct {
	job  *experiment.AttackJob
	norm *attack.Normalization
}

// loadAttack loads what the attack of flags needs, as stl attack does:
// the classifier, the images and the defense (training or loading a
// learning baseline's cache); the images are opened to be read by shards
// where the data set's form allows (experiment.OpenAttackJob).
func loadAttack(ctx context.Context, flags cli.AttackFlags) (*attackState, error) {
	job, err := experiment.OpenAttackJob(ctx, flags.Opts, nil)
	if err != nil {
		return nil, err
	}
	st := &attackState{job: job}
	if flags.NeedsNormalization() {
		if st.norm, err = job.Normalization(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// ProcessElement attacks shard i into its set directory unless a
// finished one computed under the same key (experiment.AttackJob.Key: the
// classifier's files, the data, the images, the attack's options and the
// defense) is there, and emits the directory.
func (f *attackShardFn) ProcessElement(ctx context.Context, i int, emit func(string)) error {
	o := f.Opts
	out := partPath(o.PartsDir, i, o.Shards, "")
	load := func(ctx context.Context) (*attackState, error) { return loadAttack(ctx, o.Flags) }
	return withWorker(ctx, o.Workers, o, load, func(st *attackState) error {
		n, batch := st.job.Len(), o.Flags.Opts.Batch
		sh := dataset.Shard{Index: i, Count: o.Shards}
		if lo, hi := sh.BatchRange(n, batch); hi <= lo {
			return noBatch(i, o.Shards, n, batch)
		}
		job, err := st.job.Shard(ctx, sh, out)
		if err != nil {
			return err
		}
		if err := o.Flags.SetJobAttack(ctx, job, st.norm, io.Discard, nil); err != nil {
			return err
		}
		return runShard(ctx, out, job.Key(), func(ctx context.Context) error {
			_, err := job.Run(ctx, nil)
			return err
		}, emit)
	})
}

func init() {
	register.DoFn3x1[context.Context, int, func(string), error](&attackShardFn{})
}
