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
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/safefile"
)

// The machinery every pipeline of the package shares: the shard indices
// 0..n-1 are the elements, spread over the workers by a reshuffle; a
// worker's DoFn loads what the job needs once (Setup) and computes each
// shard's part unless a finished one is there (runShard: the part, then a
// .done marker holding the key of what it was computed from); a final
// step groups the parts and merges them in shard order (mergeFn).

// Sharding is how a pipeline cuts its images into parts and computes
// them; every pipeline of the package takes it.
type Sharding struct {
	// Shards is the number of parts the images are cut into, the
	// pipeline's elements. Default 8.
	Shards int
	// PartsDir holds the shards' outputs, part-IIIII-of-NNNNN with the
	// output's extension, each with a .done marker written last. Default
	// the merged output + ".parts".
	PartsDir string
	// Workers is the number of shards one worker process computes at
	// once, each worker with its own copy of what the job loads (the
	// classifier, the defense, the images), loaded by its first shard and
	// reused by the later ones. Default 1. The runner decides how many
	// processes run and how it spreads the shards over them; prism runs
	// one, in the launching process.
	Workers int
}

func (s Sharding) validate() error {
	if s.Shards < 1 || s.Workers < 1 {
		return fmt.Errorf("stlbeam: Shards %d and Workers %d must be at least 1", s.Shards, s.Workers)
	}
	return nil
}

func (s Sharding) withDefaults(out string) Sharding {
	if s.Shards == 0 {
		s.Shards = 8
	}
	if s.PartsDir == "" {
		s.PartsDir = out + ".parts"
	}
	if s.Workers == 0 {
		s.Workers = 1
	}
	return s
}

// Beam counters of the shard steps: how many shards a run computed and
// how many it found finished and skipped.
var (
	shardsComputed = beam.NewCounter("stl", "shards_computed")
	shardsSkipped  = beam.NewCounter("stl", "shards_skipped")
)

// The kinds of output mergeFn merges.
const (
	mergeImages      = "images"      // .npy parts (experiment.MergeImages)
	mergeAttackSets  = "attack"      // adversarial set directories (experiment.MergeAttackSets)
	mergePredictions = "predictions" // JSON-lines parts (mergePredictionParts)
	mergeNone        = "none"        // checked only: the caller reads the parts (Executor)
)

// shardPipeline returns invalid, the error of the options' validation,
// when it is not nil; else it adds to s the elements 0..sh.Shards-1,
// reshuffled, the ParDo of fn (a DoFn from shard index to part path) over
// them, and the merge of all parts by m, and returns the merge's output,
// the merged path.
func shardPipeline(s beam.Scope, invalid error, sh Sharding, fn any, m *mergeFn) (beam.PCollection, error) {
	if invalid != nil {
		return beam.PCollection{}, invalid
	}
	m.Shards = sh.Shards
	idx := make([]int, sh.Shards)
	for i := range idx {
		idx[i] = i
	}
	elems := beam.Reshuffle(s, beam.CreateList(s, idx))
	parts := beam.ParDo(s, fn, elems)
	all := beam.GroupByKey(s, beam.AddFixedKey(s, parts))
	return beam.ParDo(s, m, all), nil
}

// PartPath is where the .npy part of shard i of n is written in dir.
func PartPath(dir string, i, n int) string { return partPath(dir, i, n, ".npy") }

// partPath is the part of shard i of n in dir, named with ext (a
// directory when ext is empty).
func partPath(dir string, i, n int, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("part-%05d-of-%05d%s", i, n, ext))
}

// finished reports whether part holds a finished shard computed under key.
func finished(part, key string) bool {
	b, err := os.ReadFile(part + ".done")
	return err == nil && string(b) == key
}

// runShard emits part, computing it first with work unless its .done
// marker says it was finished under key; the marker is written (atomically)
// after work returns, so an interrupted shard is computed again. Each
// shard's outcome goes to the runner's log, the pipeline's progress.
func runShard(ctx context.Context, part, key string, work func(ctx context.Context) error, emit func(string)) error {
	if finished(part, key) {
		shardsSkipped.Inc(ctx, 1)
		log.Infof(ctx, "%s: finished by an earlier run, skipped", filepath.Base(part))
		emit(part)
		return nil
	}
	start := time.Now()
	if err := work(ctx); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(part), err)
	}
	if err := safefile.WriteBytes(part+".done", []byte(key)); err != nil {
		return err
	}
	shardsComputed.Inc(ctx, 1)
	log.Infof(ctx, "%s: computed in %.1f s", filepath.Base(part), time.Since(start).Seconds())
	emit(part)
	return nil
}

// inputKey hashes cfg's JSON encoding with the name, size and
// modification time of each of paths that exists (of every file in it, for
// a directory): what identifies a job's inputs without reading them.
func inputKey(cfg any, paths ...string) (string, error) {
	h := sha256.New()
	js, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	h.Write(js)
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		files := []string{p}
		if st.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return "", err
			}
			files = files[:0]
			for _, e := range entries {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				fmt.Fprintf(h, "\n%s %d %d", f, st.Size(), st.ModTime().UnixNano())
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// setupParts creates the parts directory dir and returns the key of a
// job's inputs (inputKey of cfg and paths): what a DoFn's Setup does.
func setupParts(cfg any, dir string, paths ...string) (string, error) {
	key, err := inputKey(cfg, paths...)
	if err != nil {
		return "", err
	}
	return key, os.MkdirAll(dir, 0o755)
}

// noBatch is the error of a shard that holds none of the job's batches.
func noBatch(i, shards, n, batch int) error {
	return fmt.Errorf("shard %d/%d holds no batch of the %d images in batches of %d: use at most %d shards", i, shards, n, batch, (n+batch-1)/batch)
}

// The process's worker slots (one semaphore per Workers value) and the
// loaded states free for reuse (per DoFn configuration).
var (
	workersMu sync.Mutex
	slots     = map[int]chan struct{}{}
	free      = map[string][]any{}
)

// withWorker runs f on one of the process's workers: it waits for one of
// the workers slots, takes a state loaded for the configuration cfg that
// no other worker holds (calling load when there is none, so that a
// process loads at most workers of them), and returns both when f
// returns. It returns ctx's error when cancelled while waiting.
func withWorker[T any](ctx context.Context, workers int, cfg any, load func(context.Context) (T, error), f func(T) error) error {
	pool, err := poolName(cfg)
	if err != nil {
		return err
	}
	workersMu.Lock()
	sem := slots[workers]
	if sem == nil {
		sem = make(chan struct{}, workers)
		slots[workers] = sem
	}
	workersMu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-sem }()

	st, ok := takeFree[T](pool)
	if !ok {
		if st, err = load(ctx); err != nil {
			return err
		}
	}
	defer func() {
		workersMu.Lock()
		free[pool] = append(free[pool], st)
		workersMu.Unlock()
	}()
	return f(st)
}

// dropPool forgets the free states loaded for the configuration cfg (a
// finished job's), so that their memory can be reclaimed.
func dropPool(cfg any) {
	if pool, err := poolName(cfg); err == nil {
		workersMu.Lock()
		delete(free, pool)
		workersMu.Unlock()
	}
}

// poolName names the free states loaded for the configuration cfg.
func poolName(cfg any) (string, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%T %s", cfg, js), nil
}

// takeFree takes a free state from pool.
func takeFree[T any](pool string) (T, bool) {
	workersMu.Lock()
	defer workersMu.Unlock()
	var st T
	n := len(free[pool])
	if n == 0 {
		return st, false
	}
	st, free[pool] = free[pool][n-1].(T), free[pool][:n-1]
	return st, true
}

// mergeFn merges the parts, in shard order, into Out.
type mergeFn struct {
	Out    string
	Shards int
	Kind   string // mergeImages, mergeAttackSets or mergePredictions
}

// ProcessElement collects the parts of every shard, checks that none is
// missing and merges them into Out.
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
	var err error
	switch f.Kind {
	case mergeImages:
		_, err = experiment.MergeImages(f.Out, all)
	case mergeAttackSets:
		_, err = experiment.MergeAttackSets(f.Out, all)
	case mergePredictions:
		_, err = mergePredictionParts(f.Out, all)
	case mergeNone:
	default:
		err = fmt.Errorf("stlbeam: unknown merge %q", f.Kind)
	}
	if err != nil {
		return err
	}
	emit(f.Out)
	return nil
}

func init() {
	register.DoFn3x1[int, func(*string) bool, func(string), error](&mergeFn{})
	register.Emitter1[string]()
	register.Iter1[string]()
}

// ShardCounts returns the shards a pipeline's run computed and those it
// found finished and skipped, from its Beam counters (zero when the runner
// reports no metrics).
func ShardCounts(res beam.PipelineResult) (computed, skipped int64) {
	if res == nil {
		return 0, 0
	}
	for _, c := range res.Metrics().AllMetrics().Counters() {
		switch c.Key.Name {
		case "shards_computed":
			computed += c.Result()
		case "shards_skipped":
			skipped += c.Result()
		}
	}
	return computed, skipped
}
