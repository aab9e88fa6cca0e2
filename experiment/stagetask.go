package experiment

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// StageTask describes one of a run's heavy stages (Executor) so that a
// process holding only the run's files computes any part of it, the
// output for input images lo..hi-1 (StageTask.Open, StageWorker.Compute),
// equal to that part of the stage's output in the run: an attack column
// on the vanilla classifier, or a defense's transform of a set. It is
// plain data (JSON), what a distributed executor sends its workers, and
// holds paths into the run directory, which every worker must see.
type StageTask struct {
	// Stage is the stage's name in the run directory's stages, Key its
	// cache key (what finished parts are marked with).
	Stage string    `json:"stage"`
	Key   cache.Key `json:"key"`
	// Config is the run's configuration.
	Config Config `json:"config"`
	// Images is the .npy file holding the stage's input images, N of
	// them, written by the executor (the run hands it the images in
	// Stage.Input); a worker reads only its part of it.
	Images string `json:"images"`
	N      int    `json:"n"`
	// Batch is the batch the run computes the stage in: parts must start
	// at a multiple of it so that their images are those of the run.
	Batch int `json:"batch"`

	// An attack column: its name (one of AllAttacks), the true labels of
	// the N images and the vanilla classifier.
	Attack  string         `json:"attack,omitempty"`
	Labels  []int          `json:"labels,omitempty"`
	Vanilla *VanillaSource `json:"vanilla,omitempty"`

	// A transform: the defense's row name; for the STL rows the built
	// defense's directory, for a baseline the directory of what the
	// baselines learned from the training images (prepared by the run
	// before it hands the stage out); the transform's seed; WholeSet when
	// the transform assigns clusters from the whole input (STL (cluster)
	// with transductive assignment), so that a worker reads all of it.
	Row       string `json:"row,omitempty"`
	Defense   string `json:"defense,omitempty"`
	Baselines string `json:"baselines,omitempty"`
	Seed      uint64 `json:"seed,omitempty"`
	WholeSet  bool   `json:"whole_set,omitempty"`
}

// VanillaSource says how a process loads a run's vanilla classifier from
// the vanilla stage's directory, as the run loaded it.
type VanillaSource struct {
	// Kind is "trained" (a classifier the run trained: Trainer.Load of
	// Path), "pretrained" (a model directory, Config.VanillaModel:
	// PretrainedLoader.LoadPretrained of Path) or "outside" (an ONNX file
	// or PyTorch weights: LoadModel of Path, a model spec).
	Kind string `json:"kind"`
	Path string `json:"path"`
	// Threads are the classifier's threads (0: as saved); results depend
	// on them (summation order).
	Threads int `json:"threads,omitempty"`
}

// Kinds of VanillaSource.
const (
	vanillaTrained    = "trained"
	vanillaPretrained = "pretrained"
	vanillaOutside    = "outside"
)

// load loads the classifier with b's trainer (LoadModel for "outside").
func (v *VanillaSource) load(b Backend) (attack.Model, error) {
	if v == nil {
		return nil, fmt.Errorf("experiment: an attack stage without its vanilla classifier")
	}
	var (
		m   attack.Model
		err error
	)
	switch v.Kind {
	case vanillaTrained:
		m, err = b.Classifier.Load(v.Path)
	case vanillaPretrained:
		pl, ok := b.Classifier.(PretrainedLoader)
		if !ok {
			return nil, fmt.Errorf("experiment: the backend's classifier trainer (%T) cannot load a pretrained classifier", b.Classifier)
		}
		m, _, err = pl.LoadPretrained(v.Path)
	case vanillaOutside:
		var lm *LoadedModel
		if lm, err = LoadModel(v.Path, v.Threads); err == nil {
			m = lm.Model
		}
	default:
		return nil, fmt.Errorf("experiment: unknown vanilla classifier kind %q", v.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("vanilla classifier %s: %w", v.Path, err)
	}
	if t, ok := m.(interface{ SetThreads(int) }); ok && v.Threads > 0 && v.Kind == vanillaPretrained {
		t.SetThreads(v.Threads)
	}
	return m, nil
}

// StageWorker is a StageTask loaded by a worker: the classifier and the
// attack, or the transform. A worker loads it once and computes many
// parts with it; it is not safe for concurrent use.
type StageWorker struct {
	task  StageTask
	model attack.Model
	atk   Attacker
	newT  func(seed uint64) (defense.Transform, error)
	fixed defense.Transform // a deterministic transform, shared by the parts
}

// Open loads what t needs with the project's packages (DefaultBackend):
// the vanilla classifier and the attack, or the defense's transform.
func (t *StageTask) Open(ctx context.Context) (*StageWorker, error) {
	b := DefaultBackend()
	w := &StageWorker{task: *t}
	if t.N < 1 || t.Batch < 1 || t.Images == "" {
		return nil, fmt.Errorf("experiment: stage %s: no images (N %d, batch %d, file %q)", t.Stage, t.N, t.Batch, t.Images)
	}
	switch {
	case t.Attack != "" && t.Row == "":
		if len(t.Labels) != t.N {
			return nil, fmt.Errorf("experiment: stage %s: %d labels for %d images", t.Stage, len(t.Labels), t.N)
		}
		m, err := t.Vanilla.load(b)
		if err != nil {
			return nil, err
		}
		atk, _, _, err := b.Attack(t.Attack, t.Config, m)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", t.Stage, err)
		}
		w.model, w.atk = m, atk
	case t.Row != "" && t.Attack == "":
		newT, err := t.transform(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", t.Stage, err)
		}
		tr, err := newT(t.Seed)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", t.Stage, err)
		}
		w.newT = newT
		if !tr.Randomized() {
			w.fixed = tr
		}
	default:
		return nil, fmt.Errorf("experiment: stage %s: a task is an attack (%q) or a transform (%q), one of them", t.Stage, t.Attack, t.Row)
	}
	return w, nil
}

// transform returns the row's transform for a seed: the STL rows' from
// the built defense, a baseline's from the registry with what it learned
// from the training images, which the run prepared in t.Baselines.
func (t *StageTask) transform(ctx context.Context, b Backend) (func(uint64) (defense.Transform, error), error) {
	switch t.Row {
	case RowSTL, RowSTLCluster:
		if t.Defense == "" || b.Defense == nil {
			return nil, fmt.Errorf("no STL defense for row %s", t.Row)
		}
		s := &sharedDefense{b: b.Defense, dir: t.Defense}
		i := 0
		if t.Row == RowSTLCluster {
			i = 1
		}
		return s.transform(i), nil
	}
	h, err := npy.ReadHeaderFile(t.Images)
	if err != nil {
		return nil, err
	}
	if len(h.Shape) != 4 {
		return nil, fmt.Errorf("%s: images of shape %v, want (N, C, H, W)", t.Images, h.Shape)
	}
	// No training images: the baselines load what they learned from them
	// from t.Baselines; the empty set gives its shape.
	none := &dataset.Set{Images: tensor.New(0, h.Shape[1], h.Shape[2], h.Shape[3])}
	bases, _, err := b.Baselines(ctx, t.Config, none, t.Baselines, progress.Nop)
	if err != nil {
		return nil, err
	}
	for _, bl := range bases {
		if bl.Name == t.Row {
			return bl.New, nil
		}
	}
	return nil, fmt.Errorf("no defense row %q in the run's configuration", t.Row)
}

// Compute returns the stage's output for input images lo..hi-1, reading
// only those from t.Images (all of them for a WholeSet transform). lo
// must be a multiple of t.Batch, so that the images are those of the
// run's stage. With ckpt not empty, each finished batch is saved there
// (a directory private to the part) and reloaded by a call interrupted
// before.
func (w *StageWorker) Compute(ctx context.Context, lo, hi int, ckpt string) (*tensor.Tensor, error) {
	t := &w.task
	if lo < 0 || hi <= lo || hi > t.N || lo%t.Batch != 0 {
		return nil, fmt.Errorf("experiment: stage %s: part %d..%d of %d images in batches of %d", t.Stage, lo, hi, t.N, t.Batch)
	}
	var part *cache.Partial
	if ckpt != "" {
		key, err := cache.NewKey("part", map[string]int{"lo": lo, "hi": hi}, t.Key)
		if err != nil {
			return nil, err
		}
		if part, err = cache.OpenPartial(ckpt, key); err != nil {
			return nil, err
		}
	}
	from, to := 0, hi-lo
	var x *tensor.Tensor
	var err error
	if t.WholeSet {
		x, err = npy.ReadFile(t.Images)
		from, to = lo, hi
	} else {
		x, err = npy.ReadRowsFile(t.Images, lo, hi)
	}
	if err != nil {
		return nil, err
	}
	if x.Shape[0] != to-from && !t.WholeSet || t.WholeSet && x.Shape[0] != t.N {
		return nil, fmt.Errorf("experiment: stage %s: %s holds %d images, want %d", t.Stage, t.Images, x.Shape[0], t.N)
	}
	if w.atk != nil {
		return attackInChunks(ctx, w.atk, w.model, x, t.Labels[lo:hi], t.Attack, progress.Nop, part)
	}
	tr := w.fixed
	if tr == nil {
		// A randomized transform drawn afresh from the stage's seed and
		// moved past the numbers of the images before lo.
		if tr, err = w.newT(t.Seed); err != nil {
			return nil, err
		}
		if sk, ok := tr.(defense.Skipper); !ok || !sk.Skip(lo) {
			return nil, fmt.Errorf("experiment: stage %s: %s is randomized and cannot skip to image %d", t.Stage, tr.Name(), lo)
		}
	}
	return applyRange(ctx, tr, x, from, to, t.Row, progress.Nop, part)
}
