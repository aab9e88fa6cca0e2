package stlbeam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/safefile"
)

// DefendOptions configures Defend.
type DefendOptions struct {
	// Defense, In and Universal are those of `stl defend` (see
	// experiment.ProjectOptions); Out is the merged output, an .npy.
	Defense, In, Out string
	Universal        bool
	// Shards is the number of parts In is cut into (dataset.Shard), the
	// pipeline's elements. Default 8.
	Shards int
	// Batch is the projection batch inside a shard. Default 64.
	Batch int
	// PartsDir holds the shards' outputs, part-IIIII-of-NNNNN.npy, each
	// with a .done marker written last. Default Out + ".parts".
	PartsDir string
}

// Validate checks the paths, Out's form and the counts.
func (o DefendOptions) Validate() error {
	switch {
	case o.Defense == "" || o.In == "" || o.Out == "":
		return fmt.Errorf("stlbeam: Defense, In and Out are required")
	case !strings.HasSuffix(strings.ToLower(o.Out), ".npy"):
		return fmt.Errorf("stlbeam: Out %s: the merged output is an .npy", o.Out)
	case o.Shards < 1 || o.Batch < 1:
		return fmt.Errorf("stlbeam: Shards %d and Batch %d must be at least 1", o.Shards, o.Batch)
	}
	return nil
}

func (o DefendOptions) withDefaults() DefendOptions {
	if o.Shards == 0 {
		o.Shards = 8
	}
	if o.Batch == 0 {
		o.Batch = 64
	}
	if o.PartsDir == "" {
		o.PartsDir = o.Out + ".parts"
	}
	return o
}

// Defend adds to s the projection of o.In through the defense o.Defense,
// as o.Shards elements spread over the runner's workers by a reshuffle,
// then the merge of their outputs, in shard order, into o.Out: the file
// `stl defend --defense o.Defense --in o.In --out o.Out` writes, byte for
// byte. It returns the PCollection holding o.Out once it is written.
func Defend(s beam.Scope, o DefendOptions) (beam.PCollection, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return beam.PCollection{}, err
	}
	s = s.Scope("stl.Defend")
	idx := make([]int, o.Shards)
	for i := range idx {
		idx[i] = i
	}
	shards := beam.Reshuffle(s, beam.CreateList(s, idx))
	parts := beam.ParDo(s, &projectShardFn{Defense: o.Defense, In: o.In, PartsDir: o.PartsDir, Shards: o.Shards, Batch: o.Batch, Universal: o.Universal}, shards)
	all := beam.GroupByKey(s, beam.AddFixedKey(s, parts))
	return beam.ParDo(s, &mergeFn{Out: o.Out, Shards: o.Shards}, all), nil
}

// PartPath is where shard i of n is written in dir.
func PartPath(dir string, i, n int) string {
	return filepath.Join(dir, fmt.Sprintf("part-%05d-of-%05d.npy", i, n))
}

// projectShardFn projects one shard per element, loading the defense once
// per worker (Setup). A shard whose .done marker holds the shard's key is
// not projected again. Its fields are the DoFn's serialized configuration.
type projectShardFn struct {
	Defense, In, PartsDir string
	Shards, Batch         int
	Universal             bool

	d   *defense.Defense
	key string
}

// Setup loads the defense and computes the key of the job's inputs: the
// defense's manifest (which holds the SHA-256 of each of its files), the
// input's size and modification time, and the options.
func (f *projectShardFn) Setup() error {
	d, err := defense.Load(f.Defense)
	if err != nil {
		return err
	}
	f.d = d
	man, err := os.ReadFile(filepath.Join(f.Defense, defense.ManifestFile))
	if err != nil {
		return err
	}
	st, err := os.Stat(f.In)
	if err != nil {
		return err
	}
	h := sha256.New()
	h.Write(man)
	cfg, _ := json.Marshal(struct {
		In            string
		Size, MTime   int64
		Shards, Batch int
		Universal     bool
	}{f.In, st.Size(), st.ModTime().UnixNano(), f.Shards, f.Batch, f.Universal})
	h.Write(cfg)
	f.key = hex.EncodeToString(h.Sum(nil))
	return os.MkdirAll(f.PartsDir, 0o755)
}

// ProcessElement projects shard i into its part (experiment.ProjectLoaded,
// itself resumable inside the shard) unless a finished one is there, and
// emits the part's path.
func (f *projectShardFn) ProcessElement(ctx context.Context, i int, emit func(string)) error {
	out := PartPath(f.PartsDir, i, f.Shards)
	done := out + ".done"
	if b, err := os.ReadFile(done); err == nil && string(b) == f.key {
		emit(out)
		return nil
	}
	o := experiment.ProjectOptions{Defense: f.Defense, In: f.In, Out: out, Universal: f.Universal, Batch: f.Batch,
		Shard: dataset.Shard{Index: i, Count: f.Shards}}
	if _, err := experiment.ProjectLoaded(ctx, f.d, o, nil); err != nil {
		return fmt.Errorf("shard %d/%d: %w", i, f.Shards, err)
	}
	if err := safefile.WriteBytes(done, []byte(f.key)); err != nil {
		return err
	}
	emit(out)
	return nil
}

// mergeFn merges the parts, in shard order, into Out.
type mergeFn struct {
	Out    string
	Shards int
}

// ProcessElement collects the parts of every shard, checks that none is
// missing and writes their concatenation to Out.
func (f *mergeFn) ProcessElement(_ int, parts func(*string) bool, emit func(string)) error {
	var all []string
	var p string
	for parts(&p) {
		all = append(all, p)
	}
	slices.Sort(all) // zero-padded names: shard order
	all = slices.Compact(all)
	if len(all) != f.Shards {
		return fmt.Errorf("stlbeam: %d of %d shards finished", len(all), f.Shards)
	}
	if _, err := experiment.MergeImages(f.Out, all); err != nil {
		return err
	}
	emit(f.Out)
	return nil
}

func init() {
	register.DoFn3x1[context.Context, int, func(string), error](&projectShardFn{})
	register.DoFn3x1[int, func(*string) bool, func(string), error](&mergeFn{})
	register.Emitter1[string]()
	register.Iter1[string]()
}
