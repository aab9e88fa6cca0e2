package stlbeam

import (
	"context"
	"fmt"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
)

// DefendOptions configures Defend.
type DefendOptions struct {
	// Defense, In and Universal are those of `stl defend` (see
	// experiment.ProjectOptions); Out is the merged output, an .npy.
	Defense, In, Out string
	Universal        bool
	// Batch is the projection batch inside a shard. Default 64.
	Batch int
	// Sharding: the parts In is cut into (dataset.Shard: contiguous,
	// sizes within one), written as .npy files.
	Sharding
}

// Validate checks the paths, Out's form and the counts.
func (o DefendOptions) Validate() error {
	switch {
	case o.Defense == "" || o.In == "" || o.Out == "":
		return fmt.Errorf("stlbeam: Defense, In and Out are required")
	case !strings.HasSuffix(strings.ToLower(o.Out), ".npy"):
		return fmt.Errorf("stlbeam: Out %s: the merged output is an .npy", o.Out)
	case o.Batch < 1:
		return fmt.Errorf("stlbeam: Batch %d must be at least 1", o.Batch)
	}
	return o.Sharding.validate()
}

func (o DefendOptions) withDefaults() DefendOptions {
	if o.Batch == 0 {
		o.Batch = 64
	}
	o.Sharding = o.Sharding.withDefaults(o.Out)
	return o
}

// Defend adds to s the projection of o.In through the defense o.Defense,
// as o.Shards elements spread over the runner's workers by a reshuffle,
// then the merge of their outputs, in shard order, into o.Out: the file
// `stl defend --defense o.Defense --in o.In --out o.Out` writes, byte for
// byte. It returns the PCollection holding o.Out once it is written.
func Defend(s beam.Scope, o DefendOptions) (beam.PCollection, error) {
	o = o.withDefaults()
	return shardPipeline(s.Scope("stl.Defend"), o.Validate(), o.Sharding, &projectShardFn{Opts: o}, &mergeFn{Out: o.Out, Kind: mergeImages})
}

// projectShardFn projects one shard per element, each worker loading the
// defense once (withWorker). A shard whose .done marker holds the job's
// key is not projected again. Opts is the DoFn's serialized
// configuration.
type projectShardFn struct {
	Opts DefendOptions

	key string
}

// Setup computes the key of the job's inputs: the defense's files and the
// input (names, sizes and modification times) and the options.
func (f *projectShardFn) Setup() error {
	var err error
	f.key, err = setupParts(f.Opts, f.Opts.PartsDir, f.Opts.Defense, f.Opts.In)
	return err
}

// ProcessElement projects shard i into its part (experiment.ProjectLoaded,
// itself resumable inside the shard) unless a finished one is there, and
// emits the part's path.
func (f *projectShardFn) ProcessElement(ctx context.Context, i int, emit func(string)) error {
	o := f.Opts
	out := PartPath(o.PartsDir, i, o.Shards)
	return runShard(ctx, out, f.key, func(ctx context.Context) error {
		load := func(context.Context) (*defense.Defense, error) { return defense.Load(o.Defense) }
		return withWorker(ctx, o.Workers, o, load, func(d *defense.Defense) error {
			po := experiment.ProjectOptions{Defense: o.Defense, In: o.In, Out: out, Universal: o.Universal, Batch: o.Batch,
				Shard: dataset.Shard{Index: i, Count: o.Shards}}
			_, err := experiment.ProjectLoaded(ctx, d, po, nil)
			return err
		})
	}, emit)
}

func init() {
	register.DoFn3x1[context.Context, int, func(string), error](&projectShardFn{})
}
