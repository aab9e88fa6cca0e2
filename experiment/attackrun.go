package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// AttackOptions configures an attack over the images of a data set whose
// result is saved as an adversarial set (attack.Set): gray-box on a
// classifier, optionally evaluated through a defense, or white-box through
// the defense with BPDA.
type AttackOptions struct {
	// Model is the directory of a classifier saved by package nn.
	Model string
	// Data names the data set (see dataset.LoadContext); "" stands for
	// dataset.DefaultSpec, the embedded sample.
	Data string
	// Split is the part attacked: "test" (default) or "train".
	Split string
	// N, when positive and below the split's size, attacks a
	// class-balanced subset of N images drawn with SubsetSeed.
	N          int
	SubsetSeed int64
	// Targeted attacks towards class (label+1) mod K instead of away from
	// the label; the attack must have been built targeted.
	Targeted bool
	// Protocol is the attack protocol the attack's budget was read under
	// (attack.Protocol.Apply; "" is attack.ProtocolText), recorded in the
	// set's metadata. Round8 rounds every adversarial image to 8 bits
	// inside its budget before the classifier or the defense sees it
	// (attack.Rounded), as
	// attack.ProtocolRelease always does. An interrupted run resumes only
	// under the same protocol and rounding (ProtocolMismatchError).
	Protocol attack.Protocol
	Round8   bool
	// Defense is a defense directory (its "STL (cluster)" transform, or
	// with Universal its "STL" one) or a baseline name (package
	// baseline); "" for none.
	Defense string
	// Universal takes a defense directory's universal dictionary ("STL")
	// instead of its per-cluster ones ("STL (cluster)"). Default false; set,
	// it enters the checkpoint and evaluation keys.
	Universal bool
	// BPDA attacks through Defense with BPDA (identity backward pass),
	// with EOT over EOT gradient draws for a randomized defense. Without
	// it the defense is evaluated gray-box on the adversarial set.
	BPDA bool
	// EOT is the number of gradient draws; default 10.
	EOT int
	// Batch is the number of images per attack batch; default 100.
	Batch int
	// Threads sets the classifier's threads (0: as saved).
	Threads int
	// Out is the directory the set is written to. Interrupted runs resume
	// from the batches checkpointed in Out/.partial.
	Out string
	// BaselineDir caches what the baselines learn from the clean training
	// images, one subfolder per training set ("" for "baselines" beside
	// Out).
	BaselineDir string
	// BaselineTrain, when positive, trains those baselines on a
	// class-balanced subset of that many training images, drawn with
	// SubsetSeed.
	BaselineTrain int
	// MagNetEpochs and QuiltPatches are the auto-encoder's training epochs
	// and the patches the quilting database keeps (0: all); defaults
	// baseline.DefaultPrepareOptions'.
	MagNetEpochs int
	QuiltPatches int
	// Shard, when not the whole set, attacks only that part of the images
	// (after the N subset), cut at batch boundaries: shard i of n takes
	// batches [floor(i*B/n), floor((i+1)*B/n)) of the B batches of Batch
	// images, so that, for a deterministic target, the shards' sets
	// concatenated in order equal one run's over all the images. A
	// randomized defense behind BPDA draws its own random stream in each
	// shard.
	Shard dataset.Shard
}

// DefaultAttackOptions returns the defaults stated at AttackOptions.
func DefaultAttackOptions() AttackOptions {
	po := baseline.DefaultPrepareOptions()
	return AttackOptions{Split: "test", EOT: 10, Batch: 100, MagNetEpochs: po.MagNet.Epochs, QuiltPatches: po.PatchDB.MaxPatches}
}

// Validate reports the first invalid field.
func (o AttackOptions) Validate() error {
	for _, c := range []struct {
		bad  bool
		what string
	}{
		{o.Model == "" || o.Out == "", "Model and Out are required"},
		{o.Split != "test" && o.Split != "train", fmt.Sprintf("Split %q: want test or train", o.Split)},
		{o.N < 0 || o.Batch < 1 || o.Threads < 0 || o.EOT < 1, "N, Batch, Threads and EOT must be >= 0, >= 1, >= 0 and >= 1"},
		{o.BaselineTrain < 0 || o.MagNetEpochs < 0 || o.QuiltPatches < 0, "BaselineTrain, MagNetEpochs and QuiltPatches must be >= 0"},
		{o.BPDA && o.Defense == "", "BPDA needs a Defense"},
		{o.Universal && o.Defense == "", "Universal needs a Defense directory"},
		{o.checkProtocol() != nil, fmt.Sprint(o.checkProtocol())},
		{o.Shard.Validate() != nil, fmt.Sprint(o.Shard.Validate())},
	} {
		if c.bad {
			return fmt.Errorf("attack options: %s", c.what)
		}
	}
	return nil
}

// ErrUnknownDefense is returned for an AttackOptions.Defense that is
// neither a directory nor a baseline name.
var ErrUnknownDefense = errors.New("neither a directory nor a baseline")

// Learned says what a baseline learned from clean training images.
type Learned struct {
	Baseline string // its name
	Images   int    // training images it learned from
	Data     string // their data set
	Dir      string // where it is cached
}

// AttackJob is an attack ready to run: the classifier, the images and the
// defense are loaded. Run it once.
type AttackJob struct {
	// Name is what runs, e.g. "PGD-linf0.031 via BPDA(TVM) EOT x10".
	Name string
	// Set holds the images attacked and Indices their indices in the
	// split (nil when all are). Set is nil for a job of OpenAttackJob
	// that reads its images by shards (Len counts them).
	Set     *dataset.Set
	Indices []int
	// Defense is the loaded defense, nil without one.
	Defense attack.Transform
	// Learned is set when the defense is a baseline that learned from the
	// clean training images.
	Learned *Learned

	opts  AttackOptions
	atk   attack.Attack
	clf   *LoadedModel
	goal  []int
	train *dataset.Set // the split's training images, for a UAP's fit
	// rows reads the images of a job opened by OpenAttackJob by shards;
	// Set is nil until read.
	rows *dataset.Split
	// newDefense draws the defense afresh (loadAttackDefense), for the
	// shards of a randomized one.
	newDefense func(seed uint64) (attack.Transform, error)
}

// NewAttackJob loads what the attack a needs under o (LoadAttackJob) and
// sets a as the job's attack. An unknown defense gives an error wrapping
// ErrUnknownDefense.
func NewAttackJob(ctx context.Context, a attack.Attack, o AttackOptions, rep progress.Reporter) (*AttackJob, error) {
	j, err := LoadAttackJob(ctx, o, rep)
	if err != nil {
		return nil, err
	}
	j.SetAttack(a)
	return j, nil
}

// LoadAttackJob loads what an attack under o needs: the classifier, the
// data set (the images checked against the classifier's input shape and
// classes) and the defense, training and caching what a baseline learns
// from the clean training images. It reports loading progress to rep. The
// job runs once given its attack: SetAttack, SearchStrength or
// FitUniversal. With o.Shard, only the shard's images are read where the
// data set's form allows (OpenAttackJob). An unknown defense gives an
// error wrapping ErrUnknownDefense; batches of an interrupted run in Out
// under another protocol or rounding a *ProtocolMismatchError.
func LoadAttackJob(ctx context.Context, o AttackOptions, rep progress.Reporter) (*AttackJob, error) {
	j, err := openAttackJob(ctx, o, rep, !o.Shard.Whole())
	if err != nil || o.Shard.Whole() {
		return j, err
	}
	return j.Shard(ctx, o.Shard, o.Out)
}

// OpenAttackJob loads what LoadAttackJob loads for a job whose images are
// attacked by shards (Shard), but reads the attacked images only for each
// shard where the data set's form allows (dataset.OpenSplit: .npy rows,
// uncompressed records, image folders; the labels, small, are read whole
// to draw the class-balanced subset): the job's Set is then nil and Len
// counts its images. Other forms, and a defense that learns from the clean
// training images, are read whole, as LoadAttackJob reads them. The
// training images a universal perturbation's fit needs are read when it
// runs. Run and SearchStrength on the job itself read all its images.
// o.Shard must be the whole set.
func OpenAttackJob(ctx context.Context, o AttackOptions, rep progress.Reporter) (*AttackJob, error) {
	if !o.Shard.Whole() {
		return nil, fmt.Errorf("attack job: open the whole set, then take shard %s of it (Shard)", o.Shard)
	}
	return openAttackJob(ctx, o, rep, true)
}

// openAttackJob loads the whole job under o (its Shard not taken), the
// attacked images read by shards when byRows and the form allows.
func openAttackJob(ctx context.Context, o AttackOptions, rep progress.Reporter, byRows bool) (*AttackJob, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := o.checkPartial(); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	clf, err := LoadModel(o.Model, o.Threads)
	if err != nil {
		return nil, err
	}
	var in *inputs
	if byRows && !baseline.Learns(o.Defense) {
		in, err = openInputs(ctx, clf, o, rep)
	} else {
		in, err = loadInputs(ctx, clf, o, rep)
	}
	if err != nil {
		return nil, err
	}
	whole := o
	whole.Shard = dataset.Shard{}
	j := &AttackJob{Set: in.set, Indices: in.indices, opts: whole, clf: clf, goal: in.labels, train: in.train, rows: in.rows}
	if o.Targeted {
		j.goal = make([]int, len(in.labels))
		for i, y := range in.labels {
			j.goal[i] = (y + 1) % clf.NumClasses()
		}
	}
	if o.Defense != "" {
		if j.newDefense, j.Learned, err = loadAttackDefense(ctx, o, in.train, rep); err != nil {
			return nil, err
		}
		if j.Defense, err = j.newDefense(0); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// Key identifies what Run computes: the classifier's files, the data,
// the images attacked, the attack's options and the defense; the
// checkpoints of an interrupted Run are reused only under the same key.
// It is empty before the job has an attack.
func (j *AttackJob) Key() string {
	if j.atk == nil {
		return ""
	}
	return j.runKey(j.atk)
}

// SetAttack makes a the job's attack, rounded to 8 bits (attack.Rounded)
// when the options round, and names the job after it.
func (j *AttackJob) SetAttack(a attack.Attack) {
	a = j.rounded(a)
	j.atk, j.Name = a, a.Name()
	if j.opts.BPDA {
		j.Name += " via BPDA(" + j.Defense.Name() + ")"
		if j.Defense.Randomized() {
			j.Name += fmt.Sprintf(" EOT x%d", j.opts.EOT)
		}
	}
}

// Normalization returns the classifier's per-channel input normalization,
// in which budgets on normalized tensors (attack.L2Z) and the search's
// dissimilarity are measured, or an error for a classifier that states
// none (an ONNX file).
func (j *AttackJob) Normalization() (*attack.Normalization, error) {
	if j.clf.Norm == nil {
		return nil, fmt.Errorf("model %s states no input normalization (mean and std per channel), which budgets on normalized tensors are measured in", j.opts.Model)
	}
	n := *j.clf.Norm
	return &n, nil
}

// loadAttackDefense resolves o.Defense: a saved defense directory (its
// "STL (cluster)" transform, deterministic) or a baseline name, completed
// by prepareAttackBaseline. It returns a function that draws the defense
// with its random numbers seeded by seed (baseline.Config.Seeded); seed 0
// keeps the baselines' default seeds, those stl attack uses.
func loadAttackDefense(ctx context.Context, o AttackOptions, train *dataset.Set, rep progress.Reporter) (func(seed uint64) (attack.Transform, error), *Learned, error) {
	if st, err := os.Stat(o.Defense); err == nil && st.IsDir() {
		d, err := stlBuilder{defense.DefaultBackend()}.Load(o.Defense)
		if err != nil {
			return nil, nil, err
		}
		uni, strat, err := d.Transforms(0)
		if err != nil {
			return nil, nil, err
		}
		if o.Universal {
			strat = uni
		}
		return func(uint64) (attack.Transform, error) { return strat, nil }, nil, nil
	}
	if o.Universal {
		return nil, nil, fmt.Errorf("defense %q: the universal dictionary is a defense directory's (STL); %q is not a directory", o.Defense, o.Defense)
	}
	if _, err := baseline.Lookup(o.Defense); err != nil {
		return nil, nil, fmt.Errorf("defense %q is %w (%s)", o.Defense, ErrUnknownDefense, strings.Join(baseline.Names(), ", "))
	}
	cfg, learned, err := prepareAttackBaseline(ctx, o, train, rep)
	if err != nil {
		return nil, nil, err
	}
	return func(seed uint64) (attack.Transform, error) {
		c := cfg
		if seed != 0 {
			c = cfg.Seeded(seed)
		}
		return baseline.New(o.Defense, c)
	}, learned, nil
}

// prepareAttackBaseline returns the options of the baseline o.Defense,
// completed, when it needs them, with a patch database and a MagNet
// auto-encoder learned from the clean training images train (a
// class-balanced subset of o.BaselineTrain of them). Both are cached in
// o.BaselineDir, in a subfolder named after a hash of the training
// images, so that later attacks on the same data load them instead of
// training again.
func prepareAttackBaseline(ctx context.Context, o AttackOptions, train *dataset.Set, rep progress.Reporter) (baseline.Config, *Learned, error) {
	cfg := baseline.DefaultConfig()
	if !baseline.Learns(o.Defense) {
		return cfg, nil, nil
	}
	if train == nil || train.Len() == 0 {
		return cfg, nil, fmt.Errorf("defense %s learns from clean training images, and the data set has none", o.Defense)
	}
	if o.BaselineTrain > 0 && o.BaselineTrain < train.Len() {
		var err error
		if train, err = train.BalancedSubset(o.BaselineTrain, o.SubsetSeed); err != nil {
			return cfg, nil, err
		}
	}
	po := baseline.DefaultPrepareOptions()
	po.MagNet.Epochs, po.PatchDB.MaxPatches = o.MagNetEpochs, o.QuiltPatches
	root := o.BaselineDir
	if root == "" {
		root = filepath.Join(filepath.Dir(filepath.Clean(o.Out)), "baselines")
	}
	po.Dir = filepath.Join(root, imagesKey(train.Images))
	if err := os.MkdirAll(po.Dir, 0o755); err != nil {
		return cfg, nil, err
	}
	cfg, err := baseline.Prepare(ctx, cfg, []string{o.Defense}, train.Images, po, rep)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, &Learned{Baseline: o.Defense, Images: train.Len(), Data: train.Name, Dir: po.Dir}, nil
}

// imagesKey names a set of images by its shape and pixels: the first 16
// hex digits of their SHA-256.
func imagesKey(x *tensor.Tensor) string {
	h := sha256.New()
	fmt.Fprintf(h, "%v\n", x.Shape)
	buf := make([]byte, 0, 1<<16)
	for _, v := range x.Data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// AttackOutcome is what an AttackJob computed.
type AttackOutcome struct {
	*attack.Result
	// Labels are the true labels of the images attacked.
	Labels []int
	// CorrectBefore counts the images the (defended, with BPDA)
	// classifier classified correctly before the attack, Flipped those of
	// them the attack succeeded on.
	CorrectBefore, Flipped int
	// GrayBox is set when a defense was evaluated on the adversarial set
	// without BPDA: the accuracies of the classifier through it on the
	// clean and the adversarial images.
	GrayBox                    bool
	DefendedClean, DefendedAdv float64
	// DissimZ is, when the classifier states its input normalization, the
	// normalized L2 dissimilarity of each image on the normalized tensors
	// (attack.DissimilarityZ, Guo et al.'s measure).
	DissimZ []float64
}

// Run attacks the job's images in batches, checkpointed in Out/.partial,
// saves the adversarial set into Out and, for a defense without BPDA,
// measures the classifier's accuracy through it. It reports progress to
// rep and returns ctx's error when cancelled (the finished batches stay
// for a later run with the same options).
func (j *AttackJob) Run(ctx context.Context, rep progress.Reporter) (*AttackOutcome, error) {
	if j.atk == nil {
		return nil, fmt.Errorf("attack job: no attack set")
	}
	if err := j.readAll(ctx); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	o := j.opts
	partial := j.partialDir()
	if err := o.claimPartial(); err != nil {
		return nil, err
	}
	bo := attack.BatchOptions{Size: o.Batch, Progress: rep, CheckpointDir: partial, Key: j.runKey(j.atk)}
	var target attack.Model = j.clf
	if o.BPDA {
		t := j.Defense
		if t.Randomized() {
			// Reloaded batches skip the defense's random numbers they drew,
			// so that the rest draw what an uninterrupted run draws.
			if defense.CanResume(t) {
				ct := countingTransform(t)
				t = ct
				bo.Draws = func() int64 { return int64(ct.images()) }
				bo.Skip = func(n int64) error {
					if !ct.skip(int(n)) {
						return fmt.Errorf("defense %s cannot skip its random numbers", ct.Name())
					}
					return nil
				}
			} else {
				bo.CheckpointDir = "" // a resumed run would draw other numbers
			}
		}
		var err error
		if target, err = attack.Adaptive(t, j.clf, nil, o.EOT); err != nil {
			return nil, err
		}
	}
	res, err := attack.RunBatches(ctx, j.atk, target, j.Set.Images, j.goal, bo)
	if err != nil {
		return nil, err
	}
	s, err := attack.NewSet(j.atk, j.goal, res)
	if err != nil {
		return nil, err
	}
	s.Meta.Attack, s.Meta.Model, s.Meta.Data, s.Meta.Indices = j.Name, o.Model, j.Set.Name, j.Indices
	s.Meta.Protocol, s.Meta.Round8 = attack.Protocol(o.Protocol.String()), o.round8()
	if err := s.Save(o.Out); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(partial); err != nil {
		return nil, err
	}
	out := &AttackOutcome{Result: res, Labels: j.Set.Labels}
	if j.clf.Norm != nil {
		if out.DissimZ, err = attack.DissimilarityZ(res.Adv, j.Set.Images, *j.clf.Norm); err != nil {
			return nil, err
		}
	}
	for i, p := range res.CleanPred {
		if p == out.Labels[i] {
			out.CorrectBefore++
			if res.Success[i] {
				out.Flipped++
			}
		}
	}
	if j.Defense != nil && !o.BPDA {
		out.GrayBox = true
		if out.DefendedClean, err = defendedAccuracy(ctx, j.Defense, j.clf, j.Set.Images, out.Labels, o.Batch, rep); err != nil {
			return nil, err
		}
		if out.DefendedAdv, err = defendedAccuracy(ctx, j.Defense, j.clf, res.Adv, out.Labels, o.Batch, rep); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// partialDir is where an interrupted run keeps its checkpoints.
func (j *AttackJob) partialDir() string { return j.opts.partialDir() }

// runKey identifies what a checkpointed batch of attack a was computed
// from: the model files, the data, the subset, a's options, the defense
// and, for a rounded attack, the rounding (round8Scheme: batches rounded
// before the rounding kept to the budget are not resumed). An interrupted
// run resumes only from batches with the same key.
func (j *AttackJob) runKey(a attack.Attack) string {
	o := j.opts
	h := sha256.New()
	for _, f := range j.clf.Files {
		statFiles(h, filepath.Dir(f), filepath.Base(f))
	}
	opts, _ := json.Marshal(a)
	fmt.Fprintf(h, "%s\n%s\n%s\n%v\n%s\n%s\n%v %d %d %v\n", o.Model, j.dataName(), o.Split, j.Indices, a.Name(), opts,
		o.Targeted, o.Batch, o.EOT, o.BPDA)
	fmt.Fprintf(h, "%s\n", o.Defense)
	if o.Universal {
		fmt.Fprintln(h, "universal")
	}
	if baseline.Learns(o.Defense) {
		fmt.Fprintf(h, "%d %d %d %d\n", o.BaselineTrain, o.SubsetSeed, o.MagNetEpochs, o.QuiltPatches)
	}
	if attack.IsRounded(a) {
		fmt.Fprintf(h, "round8 %s\n", round8Scheme)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// statFiles writes the name, size and modification time of each named
// file of dir that exists (of every file of dir when none is named) to w:
// what identifies saved weights without reading them.
func statFiles(w io.Writer, dir string, names ...string) {
	if len(names) == 0 {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	for _, name := range names {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			fmt.Fprintf(w, "%s %d %d\n", name, st.Size(), st.ModTime().UnixNano())
		}
	}
}

// defendedAccuracy is the accuracy of m on T(x), in batches.
func defendedAccuracy(ctx context.Context, t attack.Transform, m attack.Model, x *tensor.Tensor, labels []int, batch int, rep progress.Reporter) (float64, error) {
	n := len(labels)
	right := 0
	stage := "defend " + t.Name()
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		y, err := t.Apply(ctx, x.Batch(lo, hi))
		if err != nil {
			return 0, err
		}
		z, err := m.Logits(ctx, y)
		if err != nil {
			return 0, err
		}
		k := m.NumClasses()
		for i := 0; i < hi-lo; i++ {
			if tensor.Argmax(z.Data[i*k:(i+1)*k]) == labels[lo+i] {
				right++
			}
		}
		rep.Report(stage, hi, n, "")
	}
	return float64(right) / float64(n), nil
}
