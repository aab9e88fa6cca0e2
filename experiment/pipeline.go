package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Stage names. Per-defense and per-attack stages append a slug of the name.
const (
	stageVanilla   = "classifier-vanilla"
	stageDefense   = "defense"
	stageAttack    = "attack-"    // + attack slug
	stageTransform = "transform-" // + defense slug + "-" + set slug
	stageRetrain   = "classifier-"
	stageReport    = "report"
)

// StagesDir is the subdirectory of a run directory holding the cached
// stages; CheckpointsDir holds the checkpoints of unfinished ones.
const (
	StagesDir      = "stages"
	CheckpointsDir = "checkpoints"
	// BaselinesDir holds what baselines learn from the training images
	// (patch database, MagNet's auto-encoder), per training-set key.
	BaselinesDir = "baselines"
)

// NoDefense is the row name of the undefended classifier.
const NoDefense = "No Defense"

// Names of the STL rows.
const (
	RowSTL        = "STL"
	RowSTLCluster = "STL (cluster)"
)

// Batch sizes for inference and transforms; they do not change results.
const (
	predictBatch   = 100
	transformBatch = 25
)

// row is one defense of the tables while the run computes it.
type row struct {
	name string
	key  cache.Key // identifies the transform (its parameters and training)
	// newT returns a fresh transform; nil when the defense is missing.
	newT     func(seed uint64) (defense.Transform, error)
	missing  string // why newT is nil, or why the row failed
	retrain  bool   // whether Table 1 retrains a classifier on it
	baseline bool   // whether it is a baseline (not No Defense nor STL)
	backward string // Baseline.Backward

	test         *tensor.Tensor            // T(test)
	adv          map[string]*tensor.Tensor // T(adv) by attack
	model        attack.Model              // classifier retrained on T(train)
	modelKey     cache.Key
	modelMissing string

	// White-box evaluation: T(x_adv) for the PGD-through-BPDA examples on
	// the cross-entropy (the Table 4 attack the sanity checks build on),
	// and whether they were computed against the vanilla classifier.
	wbAdv     *tensor.Tensor
	wbVanilla bool
	wbMissing string
	wbKey     cache.Key  // the white-box stage's key
	sanity    *sanitySet // the white-box sanity checks (sanity.go)
	// The same for the other losses of Config.WhiteBoxLosses, by loss.
	wbLossAdv     map[string]*tensor.Tensor
	wbLossMissing map[string]string
}

// whiteBoxAdv returns the row's white-box examples under loss, or nil and
// why they are missing.
func (rw *row) whiteBoxAdv(loss string) (*tensor.Tensor, string) {
	if loss == LossCE {
		return rw.wbAdv, rw.wbMissing
	}
	return rw.wbLossAdv[loss], rw.wbLossMissing[loss]
}

// setWhiteBox records the row's white-box examples under loss (adv and the
// stage's key), or why they are missing.
func (rw *row) setWhiteBox(loss string, adv *tensor.Tensor, key cache.Key, missing string) {
	if loss == LossCE {
		rw.wbAdv, rw.wbKey, rw.wbMissing = adv, key, missing
		return
	}
	if rw.wbLossAdv == nil {
		rw.wbLossAdv, rw.wbLossMissing = map[string]*tensor.Tensor{}, map[string]string{}
	}
	rw.wbLossAdv[loss], rw.wbLossMissing[loss] = adv, missing
}

// advSet is one adversarial test set.
type advSet struct {
	name    string
	budget  string
	key     cache.Key
	x       *tensor.Tensor
	info    attackInfo
	missing string
}

type attackInfo struct {
	Seconds float64 `json:"seconds"`
	MeanL2  float64 `json:"mean_l2"`
	N       int     `json:"n"`
}

// runner holds the state of one run.
type runner struct {
	cfg   Config
	b     Backend
	store *cache.Store
	dir   string // the run directory
	rep   progress.Reporter
	start time.Time

	train, test *dataset.Set
	dataKey     cache.Key
	subset      []int          // indices of the attacked test images
	x0          *tensor.Tensor // test images at subset
	y0          []int
	subsetKey   cache.Key // identifies subset

	// The white-box evaluation's images (Config.WhiteBoxSubset): indices
	// into subset, the images and labels there, and the key that
	// identifies them, which is subsetKey when they are all the attacked
	// images.
	wbIdx       []int
	wbX         *tensor.Tensor
	wbY         []int
	wbSubsetKey cache.Key

	vanilla    attack.Model
	vanillaKey cache.Key
	vanillaSrc *report.VanillaModel // set when loaded (Config.VanillaModel)
	advs       []*advSet
	rows       []*row
	missing    []Missing

	mu          sync.Mutex // guards the fields below, read by reports from other goroutines
	step, steps int
	weights     []float64 // planned cost of each stage (planWeights)
	stepStart   time.Time
	doneSec     float64 // time taken by the computed stages so far
	doneWeight  float64 // their planned cost

	// extra holds the complete hyperparameters of the pieces (training
	// recipe, defense manifest, attack and baseline options) for the
	// report, as JSON.
	extra []report.Setting

	sweeps []sweepSet // the lambda sweep's projections

	sanityNotes []string // whether the white-box sanity checks held
}

// describe records v as JSON under key for the report's settings.
func (r *runner) describe(key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf("%q", fmt.Sprint(v)))
	}
	r.extra = append(r.extra, report.Setting{Key: key, Value: string(b)})
}

// Run runs the experiment described by cfg with the project's packages
// (DefaultBackend) in the run directory dir, writes the report there and
// returns the results. See RunWith.
func Run(ctx context.Context, cfg Config, dir string, rep progress.Reporter) (*report.Results, error) {
	return RunWith(ctx, cfg, DefaultBackend(), dir, rep)
}

// RunWith runs the experiment with the pieces of b. Every stage is cached
// in dir (package cache): running again with the same configuration reuses
// every finished stage, and a changed setting recomputes only the stages
// that depend on it. On cancellation it returns ctx's error; the finished
// stages stay saved. Missing pieces (a defense, an attack, a baseline that
// fails) do not stop the run: the report lists them with the reason.
func RunWith(ctx context.Context, cfg Config, b Backend, dir string, rep progress.Reporter) (*report.Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b.Data == nil || b.Classifier == nil {
		return nil, errors.New("experiment: backend without data loader or classifier trainer")
	}
	store, err := cache.Open(filepath.Join(dir, StagesDir))
	if err != nil {
		return nil, err
	}
	defer store.Close()
	r := &runner{cfg: cfg, b: b, store: store, dir: dir, start: time.Now()}
	r.rep = &runReporter{inner: progress.Or(rep), r: r}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	res, grid, err := r.results(ctx)
	if err != nil {
		return nil, err
	}
	if err := report.Write(dir, res, grid); err != nil {
		return nil, err
	}
	return res, nil
}

func (r *runner) run(ctx context.Context) error {
	if err := r.loadData(ctx); err != nil {
		return err
	}
	r.planRows(ctx)
	r.planWeights()
	if err := r.trainVanilla(ctx); err != nil {
		return err
	}
	if err := r.attacks(ctx); err != nil {
		return err
	}
	if err := r.buildDefense(ctx); err != nil {
		return err
	}
	for _, rw := range r.rows[1:] {
		if err := r.defend(ctx, rw); err != nil {
			return err
		}
	}
	if err := r.whiteBox(ctx); err != nil {
		return err
	}
	if err := r.sanity(ctx); err != nil {
		return err
	}
	if err := r.sweep(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	step := r.step
	r.mu.Unlock()
	r.rep.Report("stl run", step, r.steps, "evaluate and report")
	return nil
}

// sweepSet is the lambda sweep's projections at one lambda.
type sweepSet struct {
	lambda     float64
	clean, adv *tensor.Tensor
}

// sweepAttack returns the adversarial set of the lambda sweep: FGSM-0.08 as
// in the paper's Figure 5, else the first available one.
func (r *runner) sweepAttack() *advSet {
	var a *advSet
	for _, s := range r.advs {
		if s.x != nil && (a == nil || s.name == AttackFGSM008) {
			a = s
		}
	}
	return a
}

// sweep projects the attacked test images and their adversarial versions
// with STL (cluster) at each lambda of cfg.LambdaSweep (Figure 5).
func (r *runner) sweep(ctx context.Context) error {
	if len(r.cfg.LambdaSweep) == 0 {
		return nil
	}
	a := r.sweepAttack()
	ll, ok := r.b.Defense.(LambdaLoader)
	why := ""
	switch {
	case r.b.Defense == nil || r.rows[2].newT == nil:
		why = "STL (cluster) is not available"
	case !ok:
		why = "the defense cannot project with another lambda"
	case a == nil:
		why = "no adversarial set"
	}
	if why != "" {
		r.advance(len(r.cfg.LambdaSweep))
		r.missing = append(r.missing, Missing{"lambda sweep", why})
		return nil
	}
	defKey, dir := r.rows[2].key, r.store.Path(stageDefense)
	subsetKey := r.subsetKey
	for _, lambda := range r.cfg.LambdaSweep {
		r.next(fmt.Sprintf("lambda sweep %g", lambda))
		stage := "sweep-" + slug(fmt.Sprintf("lambda %g", lambda))
		cfg := map[string]any{"lambda": lambda, "defense": RowSTLCluster, "attack": a.name}
		key, err := cache.NewKey(stage, cfg, defKey, subsetKey, a.key)
		if err != nil {
			return err
		}
		out, _, err := r.store.Do(ctx, stage, key, cfg, []cache.Key{defKey, subsetKey, a.key}, func(ctx context.Context, out string) error {
			ts, err := ll.LoadLambda(dir, lambda)
			if err != nil {
				return err
			}
			if len(ts) != 2 {
				return fmt.Errorf("defense loader returned %d transforms, want 2", len(ts))
			}
			for _, set := range []struct {
				name string
				x    *tensor.Tensor
			}{{"clean", r.x0}, {"adv", a.x}} {
				y, err := applyBatched(ctx, ts[1], set.x, fmt.Sprintf("%s (lambda %g) on %s", RowSTLCluster, lambda, set.name), r.rep)
				if err != nil {
					return err
				}
				if err := npy.WriteFile(filepath.Join(out, set.name+".npy"), y); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.missing = append(r.missing, Missing{fmt.Sprintf("lambda sweep at %g", lambda), err.Error()})
			continue
		}
		s := sweepSet{lambda: lambda}
		if s.clean, err = readImages(filepath.Join(out, "clean.npy"), r.x0.Shape); err == nil {
			s.adv, err = readImages(filepath.Join(out, "adv.npy"), r.x0.Shape)
		}
		if err != nil {
			return fmt.Errorf("stage %s: %w", stage, err)
		}
		r.sweeps = append(r.sweeps, s)
	}
	return nil
}

// planWeights lists the stages in the order the run meets them, each with
// a rough cost in seconds (per-image rates measured on the CIFAR-10 sample
// on 2 busy cores), for the overall time-left estimate. Only the ratios
// matter: the estimate rescales them by the time the computed stages took.
func (r *runner) planWeights() {
	c := r.cfg
	ntrain, ntest, nsub := float64(r.train.Len()), float64(r.test.Len()), float64(len(r.subset))
	px := float64(r.train.Shape().Pixels()) / 3072 // relative to 32x32 RGB
	train := func(epochs int) float64 { return float64(epochs) * ntrain * 5e-3 * px }
	w := []float64{train(c.Epochs)}
	if c.VanillaModel != "" {
		w[0] = 1 // loaded, not trained
	}
	for _, a := range orderedAttacks(c.Attacks) {
		per := map[string]float64{AttackFGSM008: 6e-3, AttackFGSM004: 6e-3, AttackBIM: 3e-2, AttackDeepFool: 5e-2,
			AttackCW: 6e-4 * float64(c.CWIterations*c.CWBinarySteps)}[a]
		w = append(w, nsub*per*px)
	}
	dictImages := float64(c.DictImages)
	if dictImages == 0 {
		dictImages = ntrain / float64(c.Clusters)
	}
	w = append(w, float64(c.DAEEpochs)*ntrain*7e-3+float64(c.Clusters+1)*dictImages*float64(c.DictIterations)*8e-3*px)
	for _, rw := range r.rows[1:] {
		per := 1e-2 * px
		if rw.name == RowSTL || rw.name == RowSTLCluster {
			per = 4e-2 * px
		}
		w = append(w, ntest*per)
		for range c.Attacks {
			w = append(w, nsub*per)
		}
		if rw.retrain {
			w = append(w, ntrain*per, train(c.retrainEpochs()))
		}
	}
	if c.WhiteBox {
		nsub := float64(len(r.wbIdx))
		for range orderedLosses(c.WhiteBoxLosses) { // each loss costs as much
			w = append(w, nsub*float64(c.WhiteBoxSteps)*6e-3*px) // No Defense
			for _, rw := range r.rows[1:] {
				per := 1e-2 * px
				if rw.name == RowSTL || rw.name == RowSTLCluster {
					per = 4e-2 * px
				}
				w = append(w, nsub*float64(c.WhiteBoxSteps)*(per+6e-3*px))
			}
		}
		for _, rw := range r.rows {
			if !r.sanityRow(rw) {
				continue
			}
			per := 0.0
			switch {
			case rw.name == RowSTL || rw.name == RowSTLCluster:
				per = 4e-2 * px
			case rw.name != NoDefense:
				per = 1e-2 * px
			}
			w = append(w, c.sanityWeight(nsub, per, px))
		}
	}
	for range c.LambdaSweep {
		w = append(w, 2*nsub*4e-2*px)
	}
	r.weights, r.steps = w, len(w)
}

// next reports overall progress at the start of a stage.
func (r *runner) next(what string) {
	r.mu.Lock()
	step := r.step
	r.mu.Unlock()
	r.rep.Report("stl run", step, r.steps, what)
	r.advance(1)
}

// advance moves the overall position by n stages. The previous stage's
// time counts towards the estimate's rate unless it was too short to have
// been computed (reused from the cache, or skipped).
func (r *runner) advance(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.step > 0 && r.step <= len(r.weights) && !r.stepStart.IsZero() {
		if d := now.Sub(r.stepStart); d > 2*time.Second {
			r.doneSec += d.Seconds()
			r.doneWeight += r.weights[r.step-1]
		}
	}
	r.stepStart = now
	r.step += n
}

// runReporter forwards the libraries' reports with the run's overall
// position and estimated time left appended, so that one terminal line
// shows both the current stage and the whole run.
type runReporter struct {
	inner progress.Reporter
	r     *runner
}

func (p *runReporter) Report(stage string, done, total int, msg string) {
	if stage == "stl run" {
		p.inner.Report(stage, done, total, msg+" "+p.r.overall())
		return
	}
	if msg != "" {
		msg += " "
	}
	p.inner.Report(stage, done, total, msg+"| "+p.r.overall())
}

// overall formats "run 5/29, 3m elapsed, ~7m left". Time left is the
// planned cost of the remaining stages (planWeights) scaled by the ratio of
// time taken to planned cost of the stages computed so far: a rough
// estimate, which improves as the run goes.
func (r *runner) overall() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf("run %d/%d, %s elapsed", r.step, r.steps, time.Since(r.start).Round(time.Second))
	if r.doneWeight > 0 && r.step <= len(r.weights) {
		var rest float64
		start := max(r.step-1, 0)
		for _, w := range r.weights[start:] {
			rest += w
		}
		left := rest*r.doneSec/r.doneWeight - time.Since(r.stepStart).Seconds()
		s += fmt.Sprintf(", ~%s left", (time.Duration(math.Max(0, left)) * time.Second).Round(time.Second))
	}
	return s
}

// loadData loads, limits and fingerprints the data.
func (r *runner) loadData(ctx context.Context) error {
	r.rep.Report("load data", 0, 1, r.cfg.Data)
	train, test, err := r.b.Data(ctx, r.cfg)
	if err != nil {
		return fmt.Errorf("load data %s: %w", r.cfg.Data, err)
	}
	if err := train.Validate(); err != nil {
		return fmt.Errorf("training set: %w", err)
	}
	if err := test.Validate(); err != nil {
		return fmt.Errorf("test set: %w", err)
	}
	if train.Shape() != test.Shape() {
		return fmt.Errorf("training images are %v, test images %v", train.Shape(), test.Shape())
	}
	if r.cfg.Limit > 0 && r.cfg.Limit < train.Len() {
		if train, err = train.BalancedSubset(r.cfg.Limit, r.cfg.Seed); err != nil {
			return err
		}
	}
	if r.cfg.TestLimit > 0 && r.cfg.TestLimit < test.Len() {
		if test, err = test.BalancedSubset(r.cfg.TestLimit, r.cfg.Seed); err != nil {
			return err
		}
	}
	r.train, r.test = train, test
	// The data key is derived from the pixels and labels themselves, so a
	// changed file is never served from the cache.
	r.dataKey, err = cache.NewKey("data", map[string]string{
		"train": fingerprint(train), "test": fingerprint(test),
	})
	if err != nil {
		return err
	}
	n := r.cfg.AttackSubset
	if n == 0 {
		n = test.Len()
	}
	r.subset, err = metrics.BalancedSubset(test.Labels, len(test.Classes), n, uint64(r.cfg.Seed))
	if err != nil {
		return err
	}
	sub := test.Subset(r.subset)
	r.x0, r.y0 = sub.Images, sub.Labels
	if r.subsetKey, err = cache.NewKey("subset", map[string]any{"n": len(r.subset), "seed": r.cfg.Seed}, r.dataKey); err != nil {
		return err
	}
	if err := r.whiteBoxSubset(len(test.Classes)); err != nil {
		return err
	}
	r.rep.Report("load data", 1, 1, fmt.Sprintf("%d train, %d test, %d attacked", train.Len(), test.Len(), len(r.subset)))
	return nil
}

// fingerprint is the hex SHA-256 of a set's shape, pixels and labels.
func fingerprint(s *dataset.Set) string {
	h := sha256.New()
	var buf [8]byte
	for _, d := range s.Images.Shape {
		binary.LittleEndian.PutUint64(buf[:], uint64(d))
		h.Write(buf[:])
	}
	b := make([]byte, 0, 1<<16)
	for _, v := range s.Images.Data {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		if len(b) == cap(b) {
			h.Write(b)
			b = b[:0]
		}
	}
	h.Write(b)
	for _, l := range s.Labels {
		binary.LittleEndian.PutUint64(buf[:], uint64(l))
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slug turns a row or attack name into a stage-name fragment:
// "STL (cluster)" -> "stl-cluster", "FGSM-0.08" -> "fgsm-0-08".
func slug(name string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
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

func (r *runner) trainVanilla(ctx context.Context) error {
	if r.cfg.VanillaModel != "" {
		r.next("load the vanilla classifier")
		if err := r.loadVanilla(ctx); err != nil {
			return err
		}
		if d, ok := r.b.Classifier.(SpecDescriber); ok {
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
	if d, ok := r.b.Classifier.(SpecDescriber); ok {
		r.describe("classifier training (vanilla)", d.DescribeSpec(r.classifierSpec(r.cfg.Epochs)))
		if r.cfg.retrainEpochs() != r.cfg.Epochs {
			r.describe("classifier training (retrained)", d.DescribeSpec(r.classifierSpec(r.cfg.retrainEpochs())))
		}
	}
	return nil
}

// attacks computes the adversarial test sets on the vanilla classifier.
// An attack that is unavailable or fails leaves its column missing.
func (r *runner) attacks(ctx context.Context) error {
	subsetKey := r.subsetKey
	for _, name := range orderedAttacks(r.cfg.Attacks) {
		r.next("attack " + name)
		a := &advSet{name: name}
		r.advs = append(r.advs, a)
		if r.b.Attack == nil {
			a.missing = "no attack implementation in this build"
			continue
		}
		atk, settings, budget, err := r.b.Attack(name, r.cfg)
		if err != nil {
			a.missing = err.Error()
			continue
		}
		a.budget = budget
		r.describe("attack "+name, settings)
		stage := stageAttack + slug(name)
		cfg := map[string]any{"attack": name, "settings": settings}
		a.key, err = cache.NewKey(stage, cfg, r.vanillaKey, subsetKey)
		if err != nil {
			return err
		}
		dir, _, err := r.store.Do(ctx, stage, a.key, cfg, []cache.Key{r.vanillaKey, subsetKey}, func(ctx context.Context, out string) error {
			t0 := time.Now()
			adv, err := atk(ctx, r.vanilla, r.x0, r.y0, r.rep)
			if err != nil {
				return err
			}
			per := len(adv.Data) / max(1, adv.Shape[0])
			l2, err := metrics.MeanNormalizedL2(adv.Data, r.x0.Data, per)
			if err != nil {
				return err
			}
			info := attackInfo{Seconds: time.Since(t0).Seconds(), MeanL2: l2, N: adv.Shape[0]}
			if err := npy.WriteFile(filepath.Join(out, "adv.npy"), adv); err != nil {
				return err
			}
			return writeJSON(filepath.Join(out, "attack.json"), info)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			a.missing = "the attack failed: " + err.Error()
			continue
		}
		if a.x, err = readImages(filepath.Join(dir, "adv.npy"), r.x0.Shape); err == nil {
			err = readJSON(filepath.Join(dir, "attack.json"), &a.info)
		}
		if err != nil {
			return fmt.Errorf("stage %s: %w", stage, err)
		}
	}
	return nil
}

// orderedAttacks returns names in the paper's column order.
func orderedAttacks(names []string) []string { return inOrder(AllAttacks, names) }

// orderedLosses returns the white-box losses of names in the order of
// AllWhiteBoxLosses (the cross-entropy first).
func orderedLosses(names []string) []string { return inOrder(AllWhiteBoxLosses, names) }

// inOrder returns the elements of all that names lists, in all's order.
func inOrder(all, names []string) []string {
	var out []string
	for _, a := range all {
		if contains(names, a) {
			out = append(out, a)
		}
	}
	return out
}

// planRows lists the table rows: No Defense, STL, STL (cluster), then the
// baselines.
func (r *runner) planRows(ctx context.Context) {
	r.rows = []*row{{name: NoDefense}}
	stl := &row{name: RowSTL, retrain: true}
	stlc := &row{name: RowSTLCluster, retrain: true}
	r.rows = append(r.rows, stl, stlc)
	if r.b.Defense == nil {
		why := r.b.DefenseMissing
		if why == "" {
			why = "the STL defense is not available in this build"
		}
		stl.missing, stlc.missing = why, why
	}
	if r.b.Baselines == nil {
		if len(r.cfg.Baselines) > 0 {
			r.missing = append(r.missing, Missing{"baselines", "no baseline defenses are available in this build"})
		}
		return
	}
	bases, miss, err := r.b.Baselines(ctx, r.cfg, r.train, filepath.Join(r.dir, BaselinesDir, r.dataKey.Short()), r.rep)
	if err != nil {
		r.missing = append(r.missing, Missing{"baselines", err.Error()})
		return
	}
	r.missing = append(r.missing, miss...)
	for _, bl := range bases {
		bl := bl
		// The data key is a dependency: quilting learns from the training
		// images.
		key, err := cache.NewKey("baseline", map[string]any{"name": bl.Name, "settings": bl.Settings}, r.dataKey)
		rw := &row{name: bl.Name, key: key, retrain: r.cfg.RetrainBaselines, newT: bl.New, baseline: true, backward: bl.Backward}
		r.describe("baseline "+bl.Name, bl.Settings)
		if err != nil {
			rw.newT, rw.missing = nil, err.Error()
		}
		r.rows = append(r.rows, rw)
	}
}

func (r *runner) defenseSpec() DefenseSpec {
	c := r.cfg
	return DefenseSpec{Lambda: c.Lambda, Filters: c.Filters, FilterSize: c.FilterSize, Clusters: c.Clusters,
		DictImages: c.DictImages, DictIterations: c.DictIterations, DAEEpochs: c.DAEEpochs, Seed: c.Seed}
}

// buildDefense builds (or reuses) the STL defense and sets up the STL rows.
func (r *runner) buildDefense(ctx context.Context) error {
	r.next("build the STL defense")
	stl, stlc := r.rows[1], r.rows[2]
	if r.b.Defense == nil {
		return nil
	}
	spec := r.defenseSpec()
	key, err := cache.NewKey(stageDefense, spec, r.dataKey)
	if err != nil {
		return err
	}
	spec.CheckpointDir = r.checkpointDir(stageDefense, key)
	dir, _, err := r.store.Do(ctx, stageDefense, key, spec, []cache.Key{r.dataKey}, func(ctx context.Context, out string) error {
		return r.b.Defense.Build(ctx, spec, r.train, out, r.rep)
	})
	if err == nil {
		r.dropCheckpoint(spec.CheckpointDir)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		stl.missing = "building the defense failed: " + err.Error()
		stlc.missing = stl.missing
		return nil
	}
	if d, ok := r.b.Defense.(DirDescriber); ok {
		if v, err := d.DescribeDir(dir); err == nil {
			r.describe("defense", v)
		}
	}
	load := func(i int) func(uint64) (defense.Transform, error) {
		return func(uint64) (defense.Transform, error) {
			ts, err := r.b.Defense.Load(dir)
			if err != nil {
				return nil, err
			}
			if len(ts) != 2 {
				return nil, fmt.Errorf("defense loader returned %d transforms, want 2 (STL, STL (cluster))", len(ts))
			}
			return ts[i], nil
		}
	}
	stl.newT, stl.key = load(0), key
	stlc.newT, stlc.key = load(1), key
	return nil
}

// defend computes one defense's transformed test, adversarial and training
// sets and its retrained classifier. Failures make cells missing.
func (r *runner) defend(ctx context.Context, rw *row) error {
	rw.adv = map[string]*tensor.Tensor{}
	// skip moves the overall position past this row's stages, done of
	// which have been met.
	skip := func(done int) {
		n := 1 + len(r.advs) - done
		if rw.retrain {
			n += 2
		}
		r.advance(n)
	}
	if rw.newT == nil {
		skip(0)
		return nil
	}
	// Each stage seeds its own transform from the run seed and the stage
	// name, so a randomized baseline gives the same images whether or not
	// the run was interrupted.
	transform := func(what string, x *tensor.Tensor, setKey cache.Key) (*tensor.Tensor, error) {
		stage := stageTransform + slug(rw.name) + "-" + slug(what)
		key, err := cache.NewKey(stage, map[string]any{"seed": r.cfg.Seed}, rw.key, setKey)
		if err != nil {
			return nil, err
		}
		dir, _, err := r.store.Do(ctx, stage, key, nil, []cache.Key{rw.key, setKey}, func(ctx context.Context, out string) error {
			t, err := rw.newT(stageSeed(r.cfg.Seed, stage))
			if err != nil {
				return err
			}
			y, err := applyBatched(ctx, t, x, rw.name+" on "+what, r.rep)
			if err != nil {
				return err
			}
			return npy.WriteFile(filepath.Join(out, "images.npy"), y)
		})
		if err != nil {
			return nil, err
		}
		return readImages(filepath.Join(dir, "images.npy"), x.Shape)
	}
	testKey, _ := cache.NewKey("set", "test", r.dataKey)
	r.next(rw.name + " on the test set")
	var err error
	if rw.test, err = transform("test", r.test.Images, testKey); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.missing = "the transform failed: " + err.Error()
		skip(1)
		return nil
	}
	for _, a := range r.advs {
		r.next(rw.name + " on " + a.name)
		if a.x == nil {
			continue
		}
		y, err := transform(a.name, a.x, a.key)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.missing = append(r.missing, Missing{rw.name + " on " + a.name, err.Error()})
			continue
		}
		rw.adv[a.name] = y
	}
	if !rw.retrain {
		rw.modelMissing = "not retrained (retrain_baselines is false, to keep the run short)"
		return nil
	}
	r.next(rw.name + " on the training set")
	trainKey, _ := cache.NewKey("set", "train", r.dataKey)
	ytrain, err := transform("train", r.train.Images, trainKey)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.modelMissing = "transforming the training set failed: " + err.Error()
		r.advance(1)
		return nil
	}
	r.next("retrain on " + rw.name)
	set := &dataset.Set{Images: ytrain, Labels: r.train.Labels, Classes: r.train.Classes, Name: r.train.Name + " through " + rw.name}
	tKey, _ := cache.NewKey("transformed-train", nil, rw.key, trainKey)
	m, mKey, err := r.trainClassifier(ctx, stageRetrain+slug(rw.name), r.classifierSpec(r.cfg.retrainEpochs()), set, tKey)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rw.modelMissing = "retraining failed: " + err.Error()
		return nil
	}
	rw.model, rw.modelKey = m, mKey
	return nil
}

// whiteBox runs the paper's Table 4 evaluation: PGD through BPDA (EOT for
// randomized defenses) against each defense in front of its retrained
// classifier, or the vanilla one when it has none, and against the
// undefended vanilla classifier, once per loss of Config.WhiteBoxLosses
// (the cross-entropy first, then the CW margin loss), each (row, loss) a
// cached stage.
func (r *runner) whiteBox(ctx context.Context) error {
	if !r.cfg.WhiteBox {
		return nil
	}
	losses := orderedLosses(r.cfg.WhiteBoxLosses)
	if r.b.WhiteBox == nil || r.b.Adaptive == nil {
		r.advance(len(r.rows) * len(losses))
		for _, rw := range r.rows {
			for _, loss := range losses {
				rw.setWhiteBox(loss, nil, "", "no white-box attack in this build")
			}
		}
		return nil
	}
	for _, loss := range losses {
		if err := r.whiteBoxLoss(ctx, loss); err != nil {
			return err
		}
	}
	return nil
}

// whiteBoxStage returns the name of the white-box stage of a row under
// loss: "whitebox-<row>" for the cross-entropy, as before losses existed,
// "whitebox-<loss>-<row>" for the others.
func whiteBoxStage(rowName, loss string) string {
	if loss == LossCE {
		return "whitebox-" + slug(rowName)
	}
	return "whitebox-" + loss + "-" + slug(rowName)
}

// whiteBoxKey returns the configuration, dependencies and key of a row's
// white-box stage under loss, with the attack's settings and the model's
// key. For the cross-entropy they are those of runs made before losses
// existed (key_test.go pins them); other losses add "loss".
func (r *runner) whiteBoxKey(rw *row, loss string, settings any, mKey cache.Key) (map[string]any, []cache.Key, cache.Key, error) {
	cfg := map[string]any{"attack": settings, "eot_draws": r.cfg.EOTDraws, "seed": r.cfg.Seed}
	if loss != LossCE {
		cfg["loss"] = loss
	}
	if rw.backward != "" {
		cfg["backward"] = rw.backward
	}
	deps := []cache.Key{mKey, r.wbSubsetKey}
	if rw.name != NoDefense {
		deps = append(deps, rw.key)
	}
	key, err := cache.NewKey(whiteBoxStage(rw.name, loss), cfg, deps...)
	return cfg, deps, key, err
}

// whiteBoxLoss runs the white-box attack with one loss on every row.
func (r *runner) whiteBoxLoss(ctx context.Context, loss string) error {
	pgd, settings, err := r.b.WhiteBox(r.cfg, loss)
	if err != nil {
		r.advance(len(r.rows))
		for _, rw := range r.rows {
			rw.setWhiteBox(loss, nil, "", err.Error())
		}
		return nil
	}
	what := "white-box attack" // "on its white-box examples" as before losses existed
	if loss == LossCE {
		r.describe("white-box attack (PGD through BPDA)", map[string]any{"pgd": settings, "eot_draws": r.cfg.EOTDraws})
	} else {
		what = "white-box (" + loss + " loss) attack"
		r.describe("white-box attack (PGD with the "+loss+" loss through BPDA)", map[string]any{"pgd": settings, "eot_draws": r.cfg.EOTDraws})
	}
	for _, rw := range r.rows {
		r.next(what + " on " + rw.name)
		if rw.name != NoDefense && (rw.newT == nil || rw.test == nil) {
			why := rw.missing
			if why == "" {
				why = "the defense is not available"
			}
			rw.setWhiteBox(loss, nil, "", why)
			continue
		}
		m, mKey := rw.model, rw.modelKey
		if m == nil {
			m, mKey, rw.wbVanilla = r.vanilla, r.vanillaKey, true
		}
		stage := whiteBoxStage(rw.name, loss)
		cfg, deps, key, err := r.whiteBoxKey(rw, loss, settings, mKey)
		if err != nil {
			return err
		}
		dir, _, err := r.store.Do(ctx, stage, key, cfg, deps, func(ctx context.Context, out string) error {
			if rw.name == NoDefense {
				adv, err := pgd(ctx, m, r.wbX, r.wbY, r.rep)
				if err != nil {
					return err
				}
				return npy.WriteFile(filepath.Join(out, "images.npy"), adv)
			}
			t, err := rw.newT(stageSeed(r.cfg.Seed, stage))
			if err != nil {
				return err
			}
			am, err := r.b.Adaptive(t, m, r.cfg.EOTDraws)
			if err != nil {
				return err
			}
			adv, err := pgd(ctx, am, r.wbX, r.wbY, r.rep)
			if err != nil {
				return err
			}
			y, err := applyBatched(ctx, t, adv, rw.name+" on its "+strings.TrimSuffix(what, " attack")+" examples", r.rep)
			if err != nil {
				return err
			}
			return npy.WriteFile(filepath.Join(out, "images.npy"), y)
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rw.setWhiteBox(loss, nil, "", "the white-box attack failed: "+err.Error())
			continue
		}
		adv, err := readImages(filepath.Join(dir, "images.npy"), r.wbX.Shape)
		if err != nil {
			return fmt.Errorf("stage %s: %w", stage, err)
		}
		rw.setWhiteBox(loss, adv, key, "")
	}
	return nil
}

// stageSeed derives a transform's seed from the run seed and the stage.
func stageSeed(seed int64, stage string) uint64 {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%s", seed, stage)))
	return binary.LittleEndian.Uint64(h[:8])
}

// applyBatched applies t to x in batches, reporting progress in images.
func applyBatched(ctx context.Context, t defense.Transform, x *tensor.Tensor, what string, rep progress.Reporter) (*tensor.Tensor, error) {
	n := x.Shape[0]
	out := tensor.New(x.Shape...)
	rep.Report(what, 0, n, "")
	for lo := 0; lo < n; lo += transformBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+transformBatch, n)
		xb := x.Batch(lo, hi)
		yb, err := t.Apply(ctx, xb)
		if err != nil {
			return nil, err
		}
		if !tensor.SameShape(xb, yb) {
			return nil, &tensor.ShapeError{Op: "transform " + t.Name(), Want: xb.Shape, Got: yb.Shape}
		}
		copy(out.Batch(lo, hi).Data, yb.Data)
		rep.Report(what, hi, n, "")
	}
	return out, nil
}

// predict returns the classes m predicts for x, in batches.
func predict(ctx context.Context, m attack.Model, x *tensor.Tensor) ([]int, error) {
	n := x.Shape[0]
	pred := make([]int, 0, n)
	for lo := 0; lo < n; lo += predictBatch {
		hi := min(lo+predictBatch, n)
		xb := x.Batch(lo, hi)
		logits, err := m.Logits(ctx, xb)
		if err != nil {
			return nil, err
		}
		pred = append(pred, logits.ArgmaxRows(nil)...)
	}
	return pred, nil
}

func jsonRaw(v any) (json.RawMessage, error) { return json.Marshal(v) }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return safefile.WriteBytes(path, append(b, '\n'))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// readImages reads a stage's .npy images and checks their shape, so that a
// tampered or truncated stage is an error rather than wrong numbers.
func readImages(path string, shape []int) (*tensor.Tensor, error) {
	t, err := npy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	want := &tensor.Tensor{Shape: shape}
	if !tensor.SameShape(t, want) {
		return nil, &tensor.ShapeError{Op: "read " + path, Want: shape, Got: t.Shape}
	}
	return t, nil
}
