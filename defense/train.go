package defense

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/stl-defense/stl/cluster"
	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// TrainOptions configures Train. The JSON form is recorded in the saved
// defense's manifest.
type TrainOptions struct {
	// EncoderResolution is the side images are downsampled to (area
	// average) before the DAE. Default 32 (section 5.1).
	EncoderResolution int `json:"encoder_resolution"`
	// DAEEpochs is the number of DAE training epochs. Default 10.
	DAEEpochs int `json:"dae_epochs"`
	// PCAComponents is the code width after PCA. Default 128. Train fails
	// when it exceeds the latent width (512 for the DAE); with fewer
	// training images than components it keeps one per image, says so
	// through the progress reporter, and the manifest's PCAComponents
	// records the width kept.
	PCAComponents int `json:"pca_components"`
	// Clusters is the number of k-means clusters and cluster dictionaries.
	// Default 4 (section 5.1: CIFAR-10 and ImageNet-10; 10 for ImageNet).
	Clusters int `json:"clusters"`
	// KMeansRestarts is the number of k-means++ seedings. Default 10.
	KMeansRestarts int `json:"kmeans_restarts"`
	// KNN is the number of training codes that vote for an image's
	// cluster. Default 10 (see cluster.KNNOptions).
	KNN int `json:"knn"`
	// Filters, FilterSize and Lambda define each dictionary: 64 filters of
	// 8x8 learned with sparsity weight 0.2 by default (section 5.1).
	Filters    int     `json:"filters"`
	FilterSize int     `json:"filter_size"`
	Lambda     float64 `json:"lambda"`
	// DictImages is the number of images each dictionary is learned on:
	// a seeded random subset of the cluster's images (of all images for
	// the universal dictionary), because convolutional dictionary learning
	// is the costly step (time and memory grow linearly with it: about
	// 15 ms per 32x32 image and iteration and 2 MB per image with 64
	// filters 8x8, measured on this project's 2-core machine while it was
	// shared; both scale with the image area, so 4x at 64x64). 0 means
	// all. Default 256.
	DictImages int `json:"dict_images"`
	// DictIterations is the number of dictionary-learning iterations.
	// Default 100.
	DictIterations int `json:"dict_iterations"`
	// Seed is the master seed: DAE initialization and noise, k-means++,
	// and the dictionary subsets and initializations derive from it.
	// Default 1.
	Seed int64 `json:"seed"`
	// ApplyOptions are how the defense's transforms map their output and
	// assign clusters; they do not change what is trained and are recorded
	// in the manifest (Manifest.Apply). Default: the zero value (clip to
	// [0, 1], kNN vote).
	ApplyOptions
	// CheckpointDir, when not empty, keeps each finished piece (DAE, codes,
	// each dictionary) there with a key of the settings and data it was
	// computed from; a later Train with the same key reuses it, so an
	// interrupted training resumes. PCA and k-means are recomputed (they
	// take seconds and are deterministic). The DAE epochs and dictionary
	// iterations are checkpointed too, through the backend. Not part of
	// the recorded settings.
	CheckpointDir string `json:"-"`
	// Backend supplies the DAE and dictionary learning; the zero value
	// means DefaultBackend().
	Backend Backend `json:"-"`
}

// DefaultTrainOptions returns the paper's settings (section 5.1) with the
// documented training budgets.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{
		EncoderResolution: 32, DAEEpochs: 10, PCAComponents: 128, Clusters: 4,
		KMeansRestarts: 10, KNN: 10, Filters: 64, FilterSize: 8, Lambda: 0.2,
		DictImages: 256, DictIterations: 100, Seed: 1,
	}
}

// TrainOptionError reports an invalid TrainOptions field.
type TrainOptionError struct {
	Field  string
	Value  any
	Reason string
}

func (e *TrainOptionError) Error() string {
	return fmt.Sprintf("defense: invalid TrainOptions.%s = %v: %s", e.Field, e.Value, e.Reason)
}

// Validate returns a *TrainOptionError for the first invalid field.
func (o TrainOptions) Validate() error {
	bad := func(f string, v any, r string) error { return &TrainOptionError{f, v, r} }
	switch {
	case o.EncoderResolution < 1:
		return bad("EncoderResolution", o.EncoderResolution, "must be >= 1")
	case o.DAEEpochs < 1:
		return bad("DAEEpochs", o.DAEEpochs, "must be >= 1")
	case o.PCAComponents < 1:
		return bad("PCAComponents", o.PCAComponents, "must be >= 1")
	case o.Clusters < 1:
		return bad("Clusters", o.Clusters, "must be >= 1")
	case o.KMeansRestarts < 1:
		return bad("KMeansRestarts", o.KMeansRestarts, "must be >= 1")
	case o.KNN < 1:
		return bad("KNN", o.KNN, "must be >= 1")
	case o.Filters < 1:
		return bad("Filters", o.Filters, "must be >= 1")
	case o.FilterSize < 1:
		return bad("FilterSize", o.FilterSize, "must be >= 1")
	case !(o.Lambda > 0) || math.IsInf(o.Lambda, 0):
		return bad("Lambda", o.Lambda, "must be finite and > 0")
	case o.DictImages < 0:
		return bad("DictImages", o.DictImages, "must be >= 0")
	case o.DictIterations < 1:
		return bad("DictIterations", o.DictIterations, "must be >= 1")
	}
	return o.ApplyOptions.Validate()
}

// Backend supplies the learned parts of the defense, so that package
// defense can be tested with fakes. DefaultBackend wires nn's DAE and csc's
// dictionary learning and projection.
type Backend struct {
	// TrainEncoder trains a DAE on x, an (N, C, R, R) batch at the encoder
	// resolution, and returns it.
	TrainEncoder func(ctx context.Context, x *tensor.Tensor, opt TrainOptions, rep progress.Reporter) (SavableEncoder, error)
	// LearnDictionary learns opt.Filters filters of opt.FilterSize² and
	// C channels on x, an (N, C, H, W) batch, seeded by seed.
	LearnDictionary func(ctx context.Context, x *tensor.Tensor, opt TrainOptions, seed uint64, rep progress.Reporter) (*csc.Dictionary, error)
	// NewProjector builds the STL projector of a dictionary.
	NewProjector ProjectorFactory
	// Version identifies the implementations and their fixed settings; it
	// is part of every checkpoint key, so that checkpoints of another
	// backend version are recomputed rather than reused.
	Version string
}

func (b Backend) complete() bool {
	return b.TrainEncoder != nil && b.LearnDictionary != nil && b.NewProjector != nil
}

// Train builds a stratified STL defense from training images, the steps of
// sections 3.3-3.4 and Figure 2:
//
//  1. downsample the images to EncoderResolution (area average) and train
//     the DAE on them;
//  2. encode every image and reduce the codes by PCA;
//  3. cluster the codes by k-means++ (KMeansRestarts seeded restarts);
//  4. learn one dictionary per cluster on (a seeded subset of) its images
//     and the universal dictionary on (a seeded subset of) all images.
//
// train is an (N, C, S, S) batch of square images in [0,1]; the defense is
// built for that resolution and channel count. With CheckpointDir set,
// finished pieces are saved atomically and reused by a later call with the
// same settings and data. Progress goes to rep (may be nil); ctx is checked
// between and inside the steps. The result is a deterministic function of
// the images and options (given a deterministic backend).
func Train(ctx context.Context, train *tensor.Tensor, opt TrainOptions, rep progress.Reporter) (*Defense, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	b := opt.Backend
	if !b.complete() {
		b = DefaultBackend()
	}
	if !b.complete() {
		return nil, errors.New("defense: Train: no DAE / dictionary learning backend available")
	}
	rep = progress.Or(rep)
	n, c, h, w, err := checkImages("defense.Train", train, 0)
	if err != nil {
		return nil, err
	}
	if h != w {
		return nil, fmt.Errorf("defense: Train: images are %dx%d; the defense needs square images", h, w)
	}
	if n < opt.Clusters || n < opt.KNN || n < 2 {
		return nil, fmt.Errorf("defense: Train: %d images are too few for %d clusters and a %d-neighbour vote", n, opt.Clusters, opt.KNN)
	}
	if opt.FilterSize > h {
		return nil, fmt.Errorf("defense: Train: %dx%d filters do not fit %dx%d images", opt.FilterSize, opt.FilterSize, h, w)
	}
	ck := checkpoints{dir: opt.CheckpointDir}
	dataKey := hashTensor(train)
	seed := uint64(opt.Seed)

	// 1. DAE on downsampled images.
	daeKey := keyOf("dae", b.Version, dataKey, c, opt.EncoderResolution, opt.DAEEpochs, opt.Seed)
	var enc SavableEncoder
	reused := false
	if e, ok := ck.loadEncoder("dae", daeKey); ok {
		enc, reused = e, true
		rep.Report("DAE (reused)", 1, 1, "")
	} else {
		small := train
		if h != opt.EncoderResolution {
			if small, err = areaResize(train, opt.EncoderResolution, opt.EncoderResolution); err != nil {
				return nil, err
			}
		}
		bopt := opt
		if ck.dir != "" {
			// The backend's own (per-epoch) checkpoints, keyed like the DAE.
			bopt.CheckpointDir = filepath.Join(ck.dir, "dae-epochs-"+daeKey[:16])
		}
		if enc, err = b.TrainEncoder(ctx, small, bopt, rep); err != nil {
			return nil, fmt.Errorf("defense: train DAE: %w", err)
		}
		small = nil
		if err := ck.storeEncoder("dae", daeKey, enc); err != nil {
			return nil, err
		}
	}

	// 2. Latent codes and PCA.
	codesKey := keyOf("codes", daeKey)
	var raw *tensor.Tensor
	ok := false
	if reused { // codes of a retrained DAE are never taken from disk
		raw, ok = ck.loadTensor("codes", codesKey)
	}
	if !ok {
		if raw, err = encodeCodes(ctx, enc, nil, opt.EncoderResolution, train, rep); err != nil {
			return nil, err
		}
		if err := ck.storeTensor("codes", codesKey, raw); err != nil {
			return nil, err
		}
	}
	if n, d := raw.Shape[0], raw.Shape[1]; opt.PCAComponents > d {
		return nil, fmt.Errorf("defense: %d PCA components asked, but the auto-encoder's codes have %d values: ask for at most %d (--pca)",
			opt.PCAComponents, d, d)
	} else if opt.PCAComponents > n {
		rep.Report("pca", 0, 0, fmt.Sprintf("%d components kept, not %d: the codes of %d training images span no more", n, opt.PCAComponents, n))
	}
	pca, err := cluster.FitPCA(ctx, raw, cluster.PCAOptions{Components: opt.PCAComponents})
	if err != nil {
		return nil, fmt.Errorf("defense: PCA: %w", err)
	}
	codes, err := pca.Transform(nil, raw)
	if err != nil {
		return nil, err
	}
	raw = nil

	// 3. k-means++.
	kopt := kmeansOptions(opt.Clusters, opt.KMeansRestarts, seed)
	km, err := cluster.FitKMeans(ctx, codes, kopt, rep)
	if err != nil {
		return nil, fmt.Errorf("defense: k-means: %w", err)
	}
	for k, s := range km.Sizes {
		if s == 0 {
			return nil, fmt.Errorf("defense: k-means left cluster %d empty (too few distinct images for %d clusters)", k, opt.Clusters)
		}
	}

	// 4. Dictionaries: one per cluster, then the universal one.
	learn := func(name string, members []int, stream uint64) (*csc.Dictionary, error) {
		idx := subset(members, opt.DictImages, seed, stream)
		key := keyOf("dict", b.Version, dataKey, idx, c, opt.Filters, opt.FilterSize, opt.Lambda, opt.DictIterations, opt.Seed, stream)
		if d, ok := ck.loadDictionary(name, key); ok {
			rep.Report("dictionary "+name+" (reused)", 1, 1, "")
			return d, nil
		}
		x := gather(train, idx)
		bopt := opt
		if ck.dir != "" {
			// The backend's own (per-iteration) checkpoints, keyed like the dictionary.
			bopt.CheckpointDir = filepath.Join(ck.dir, name+"-iterations-"+key[:16])
		}
		d, err := b.LearnDictionary(ctx, x, bopt, seed^(0x9e3779b97f4a7c15*(stream+1)), withStage(rep, "dictionary "+name))
		if err != nil {
			return nil, fmt.Errorf("defense: learn dictionary %s: %w", name, err)
		}
		if err := checkDictionary(d, opt.Filters, c, opt.FilterSize); err != nil {
			return nil, fmt.Errorf("defense: learned dictionary %s: %w", name, err)
		}
		return d, ck.storeDictionary(name, key, d)
	}
	members := make([][]int, opt.Clusters)
	for i, l := range km.Labels {
		members[l] = append(members[l], i)
	}
	d := &Defense{Encoder: enc, PCA: pca, Centers: km.Centers, Codes: codes, Labels: km.Labels}
	for k := range members {
		dict, err := learn(fmt.Sprintf("cluster-%02d", k), members[k], uint64(k))
		if err != nil {
			return nil, err
		}
		d.Dictionaries = append(d.Dictionaries, dict)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	if d.Universal, err = learn("universal", all, 1<<32); err != nil {
		return nil, err
	}

	settings, _ := json.Marshal(opt)
	d.Manifest = Manifest{
		Resolution: h, Channels: c, EncoderResolution: opt.EncoderResolution,
		EncoderFormat: enc.EncoderFormat(), LatentDim: pca.In(), PCAComponents: pca.Out(),
		Clusters: opt.Clusters, ClusterSizes: km.Sizes, KNN: opt.KNN,
		Filters: opt.Filters, FilterSize: opt.FilterSize, Lambda: opt.Lambda,
		TrainImages: n, Seed: seed, Training: settings, Apply: opt.ApplyOptions,
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// kmeansOptions are the k-means settings of the training clustering and of
// the transductive assignment: k clusters, restarts k-means++ seedings
// from seed, 300 Lloyd iterations at most, tolerance 1e-4.
func kmeansOptions(k, restarts int, seed uint64) cluster.KMeansOptions {
	return cluster.KMeansOptions{K: k, Restarts: restarts, MaxIter: 300, Tol: 1e-4, Seed: seed}
}

// subset returns min(limit, len(members)) members (all when limit is 0),
// drawn without replacement from the PCG stream (seed, 1000+stream) and
// returned in increasing order.
func subset(members []int, limit int, seed, stream uint64) []int {
	if limit == 0 || limit >= len(members) {
		return slices.Clone(members)
	}
	rng := rand.New(rand.NewPCG(seed, 1000+stream))
	perm := rng.Perm(len(members))[:limit]
	out := make([]int, limit)
	for i, p := range perm {
		out[i] = members[p]
	}
	slices.Sort(out)
	return out
}

// gather copies images idx of x into a new batch.
func gather(x *tensor.Tensor, idx []int) *tensor.Tensor {
	per := x.Len() / x.Shape[0]
	shape := append([]int{len(idx)}, x.Shape[1:]...)
	out := tensor.New(shape...)
	for j, i := range idx {
		copy(out.Data[j*per:(j+1)*per], x.Data[i*per:(i+1)*per])
	}
	return out
}

// stageReporter renames the stage of every report.
type stageReporter struct {
	r     progress.Reporter
	stage string
}

func (s stageReporter) Report(_ string, done, total int, msg string) {
	s.r.Report(s.stage, done, total, msg)
}

func withStage(r progress.Reporter, stage string) progress.Reporter {
	return stageReporter{r, stage}
}

// hashTensor returns the hex SHA-256 of a tensor's shape and values.
func hashTensor(t *tensor.Tensor) string {
	h := sha256.New()
	for _, d := range t.Shape {
		binary.Write(h, binary.LittleEndian, int64(d))
	}
	buf := make([]byte, 0, 1<<16)
	for i, v := range t.Data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) || i == len(t.Data)-1 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// keyOf returns a hex SHA-256 of the JSON of parts.
func keyOf(parts ...any) string {
	js, err := json.Marshal(parts)
	if err != nil {
		panic(err) // parts are plain values; internal invariant
	}
	h := sha256.Sum256(js)
	return hex.EncodeToString(h[:])
}

// checkpoints stores pieces of a training as dir/NAME.npy (or .bin) next
// to dir/NAME.key, the key of the settings and data they came from. The
// piece is written before its key, both atomically, so a key file always
// describes a complete piece.
type checkpoints struct{ dir string }

func (c checkpoints) keyMatches(name, key string) bool {
	if c.dir == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(c.dir, name+".key"))
	return err == nil && string(b) == key+"\n"
}

func (c checkpoints) storeKey(name, key string) error {
	return safefile.WriteBytes(filepath.Join(c.dir, name+".key"), []byte(key+"\n"))
}

func (c checkpoints) loadTensor(name, key string) (*tensor.Tensor, bool) {
	if !c.keyMatches(name, key) {
		return nil, false
	}
	t, err := npy.ReadFile(filepath.Join(c.dir, name+".npy"))
	if err != nil || t.Validate() != nil {
		return nil, false
	}
	return t, true
}

func (c checkpoints) storeTensor(name, key string, t *tensor.Tensor) error {
	return c.store(name, key, func(path string) error { return npy.WriteFile(path+".npy", t) })
}

// store removes the key of piece name, writes the piece by write(dir/name)
// and then its key; nothing without a checkpoint directory.
func (c checkpoints) store(name, key string, write func(path string) error) error {
	if c.dir == "" {
		return nil
	}
	os.Remove(filepath.Join(c.dir, name+".key"))
	if err := write(filepath.Join(c.dir, name)); err != nil {
		return fmt.Errorf("defense: checkpoint %s: %w", name, err)
	}
	return c.storeKey(name, key)
}

func (c checkpoints) loadDictionary(name, key string) (*csc.Dictionary, bool) {
	if !c.keyMatches(name, key) {
		return nil, false
	}
	d, err := csc.ReadDictionary(filepath.Join(c.dir, name+".npy"))
	return d, err == nil
}

func (c checkpoints) storeDictionary(name, key string, d *csc.Dictionary) error {
	return c.store(name, key, func(path string) error { return csc.WriteDictionary(path+".npy", d) })
}

func (c checkpoints) loadEncoder(name, key string) (SavableEncoder, bool) {
	if c.dir == "" {
		return nil, false
	}
	b, err := os.ReadFile(filepath.Join(c.dir, name+".format"))
	if err != nil || !c.keyMatches(name, key) {
		return nil, false
	}
	formatsMu.RLock()
	dec, ok := formats[string(b)]
	formatsMu.RUnlock()
	if !ok {
		return nil, false
	}
	e, err := dec(filepath.Join(c.dir, name))
	if err != nil {
		return nil, false
	}
	se, ok := e.(SavableEncoder)
	return se, ok
}

func (c checkpoints) storeEncoder(name, key string, e SavableEncoder) error {
	return c.store(name, key, func(path string) error {
		if err := e.SaveDir(path); err != nil {
			return err
		}
		return safefile.WriteBytes(path+".format", []byte(e.EncoderFormat()))
	})
}
