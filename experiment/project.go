package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// ProjectOptions configures Project, the job of `stl defend`: images
// projected through a saved defense.
type ProjectOptions struct {
	// Defense is a directory written by `stl defense train`, or the name
	// of a baseline (package baseline's registry; see ProjectBaseline).
	Defense string
	// In and Out are the images to project and where to write them; see
	// ReadImages and WriteImages for the forms they may take.
	In, Out string
	// Universal projects onto the universal dictionary ("STL") instead of
	// each image's cluster's ("STL (cluster)").
	Universal bool
	// Batch is the number of images projected per batch, the granularity
	// of progress, cancellation and resumption. Default 64.
	Batch int
	// Shard, when not the whole set, projects only that part of In.
	Shard dataset.Shard
	// Data, BaselineDir and BaselineTrain serve a Defense naming a
	// baseline that learns from clean training images (baseline.Learns:
	// "quilt", "magnet", "d3", ...): Data is the data set (a dataset
	// spec) whose training images it learns from, BaselineDir and
	// BaselineTrain are as AttackOptions', so that stl attack, stl
	// evaluate and stl defend share what is learned. Unused otherwise.
	Data          string
	BaselineDir   string
	BaselineTrain int
	// Solver is the CBPDN algorithm of a saved STL defense's projection
	// (csc.Options.Method): csc.MethodADMM (the zero value, the paper's
	// reference solver) or csc.MethodActiveSet (an objective certified
	// within csc.ActiveGapTol of the optimum, faster at the paper's
	// lambda; docs/csc.md).
	// Baselines ignore it.
	Solver csc.Method
}

// ErrOverwrite is returned when Out would overwrite the adversarial set In.
var ErrOverwrite = fmt.Errorf("the output would overwrite the input")

// Validate checks the required fields, Batch >= 1, the shard, the Solver
// (none but ADMM for a baseline), and that Out
// overwrites neither In nor the adversarial set In is part of (wrapping
// ErrOverwrite).
func (o ProjectOptions) Validate() error {
	switch {
	case o.Defense == "" || o.In == "" || o.Out == "":
		return fmt.Errorf("project options: Defense, In and Out are required")
	case o.Batch < 1:
		return fmt.Errorf("project options: Batch %d, want >= 1", o.Batch)
	case filepath.Clean(o.In) == filepath.Clean(o.Out):
		return fmt.Errorf("%w: Out must differ from In", ErrOverwrite)
	case o.Solver != csc.MethodADMM && o.Solver != csc.MethodActiveSet:
		return fmt.Errorf("project options: Solver %v, want csc.MethodADMM or csc.MethodActiveSet", o.Solver)
	case o.Solver != csc.MethodADMM && isBaselineSpec(o.Defense):
		return fmt.Errorf("project options: Solver %v applies to a saved STL defense, not to the baseline %s", o.Solver, o.Defense)
	}
	if err := o.Shard.Validate(); err != nil {
		return err
	}
	if dir, ok := AttackSetDir(o.In); ok {
		out := filepath.Clean(o.Out)
		if out == dir || (filepath.Dir(out) == dir && isSetFile(filepath.Base(out))) {
			return fmt.Errorf("%w: %s is part of the adversarial set %s", ErrOverwrite, o.Out, dir)
		}
	}
	return nil
}

// ProjectOutcome reports what Project did.
type ProjectOutcome struct {
	// Transform names the transform applied, e.g. "STL (cluster)".
	Transform string
	// Images is the number of images written, Resumed how many of them
	// were projected by an earlier, interrupted call.
	Images, Resumed int
	// Elapsed is the time this call spent projecting.
	Elapsed time.Duration
	// ClusterSizes counts the images routed to each cluster (nil with
	// Universal).
	ClusterSizes []int
	// AttackSet is the adversarial set directory In was read from, if
	// any, and SetName its attack's name.
	AttackSet, SetName string
	// Apply is how the defense maps its output and assigns clusters (its
	// manifest's).
	Apply defense.ApplyOptions
	// Baseline names the baseline applied ("" for a saved defense, whose
	// Apply is then set).
	Baseline string
}

// Project reads o.In, projects its images (or o.Shard's part of them)
// through the defense in o.Defense and writes them to o.Out. Finished
// batches are kept in ProjectPartialDir(o.Out) as they complete, so that an
// interrupted call resumes where it stopped; opening it first also checks,
// before any work, that the output's directory is writable. Pixels outside
// [0,1] and images of another size than the defense's are refused, naming
// the image. It reports progress to rep.
func Project(ctx context.Context, o ProjectOptions, rep progress.Reporter) (*ProjectOutcome, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if isBaselineSpec(o.Defense) {
		return ProjectBaseline(ctx, o, rep)
	}
	d, err := defense.Load(o.Defense)
	if err != nil {
		return nil, err
	}
	return ProjectLoaded(ctx, d, o, rep)
}

// shardImages is the images a projection reads: its shard of the input
// (shard), or the whole input.
type shardImages struct {
	*dataset.Set
	shard bool
}

// readShard reads o.In's images: only o.Shard's where the form allows
// (OpenImages) unless whole, else all of them (ReadImages).
func readShard(ctx context.Context, o ProjectOptions, m defense.Manifest, whole bool, rep progress.Reporter) (shardImages, bool, error) {
	if whole || o.Shard.Whole() {
		set, bare, err := ReadImages(ctx, o.In, m, rep)
		return shardImages{Set: set}, bare, err
	}
	src, err := OpenImages(ctx, o.In, m, rep)
	if err != nil {
		return shardImages{}, false, err
	}
	lo, hi := o.Shard.Range(src.Len())
	if hi <= lo {
		return shardImages{}, false, fmt.Errorf("%s: shard %s of %d images holds none", o.In, o.Shard, src.Len())
	}
	set, err := src.Read(ctx, lo, hi)
	return shardImages{Set: set, shard: true}, src.Bare(), err
}

// ProjectLoaded is Project with the defense already loaded from o.Defense
// (which still names it in the resumption key), so that a worker projecting
// many shards loads it once. d is only read: concurrent calls may share it.
func ProjectLoaded(ctx context.Context, d *defense.Defense, o ProjectOptions, rep progress.Reporter) (*ProjectOutcome, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	newProj := defense.DefaultBackend().NewProjector
	if o.Solver != csc.MethodADMM {
		newProj = defense.CSCProjectorMethod(o.Solver)
	}
	uni, strat, err := d.Transforms(newProj)
	if err != nil {
		return nil, err
	}
	var tr defense.Transform = strat
	if o.Universal {
		tr = uni
	}
	// A shard of a transductive assignment needs the whole set (below);
	// else only the shard's images are read where the form allows.
	set, bare, err := readShard(ctx, o, d.Manifest, !o.Universal && strat.Stratifier().IsTransductive(), rep)
	if err != nil {
		return nil, err
	}
	if err := d.CheckImages(set.Images); err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	if err := checkUnitRange(set.Images); err != nil {
		return nil, fmt.Errorf("%s: %w", o.In, err)
	}
	// The clusters of a batch: by the kNN vote, or from one transductive
	// assignment of the whole input set, every shard's part of it (as the
	// defense's manifest says), so that the shards' outputs concatenated
	// equal one call's.
	whole, err := strat.Stratifier().SetClusters(set.Images)
	if err != nil {
		return nil, err
	}
	first := 0
	if !set.shard {
		first, _ = o.Shard.Range(set.Len())
		set.Set = set.Shard(o.Shard)
	}
	clusters := func(ctx context.Context, lo, hi int) ([]int, error) { return whole(ctx, first+lo, first+hi) }
	n := set.Len()
	if n == 0 {
		return nil, fmt.Errorf("%s: no images", o.In)
	}
	key, err := projectKey(o, set.Set)
	if err != nil {
		return nil, err
	}
	part, err := cache.OpenPartial(ProjectPartialDir(o.Out), key)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", o.Out, err)
	}
	res := &ProjectOutcome{Transform: tr.Name(), Images: n, Apply: d.Manifest.Apply}
	if !o.Universal {
		res.ClusterSizes = make([]int, d.Manifest.Clusters)
	}
	if dir, ok := AttackSetDir(o.In); ok {
		res.AttackSet, res.SetName = dir, set.Name
	}
	err = projectChunks(part, set.Set, o, bare, tr.Name(), res, rep, func(lo, hi int, dst []float32, assign []int32) error {
		return projectBatch(ctx, o.Universal, uni, strat, clusters, set.Images, lo, hi, dst, assign)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// projectChunks fills the projection of set batch by batch (o.Batch
// images) through part, calling project for the batches an earlier call
// did not finish, counts the resumed images and each batch's clusters in
// res (ClusterSizes when not nil), reports progress as "project <name>",
// then writes the images to o.Out and removes part.
func projectChunks(part *cache.Partial, set *dataset.Set, o ProjectOptions, bare bool, name string, res *ProjectOutcome, rep progress.Reporter, project func(lo, hi int, dst []float32, assign []int32) error) error {
	n := set.Len()
	out := &dataset.Set{Images: tensor.New(set.Images.Shape...), Labels: set.Labels, Classes: set.Classes, Name: set.Name}
	start := time.Now()
	stage := "project " + name
	rep.Report(stage, 0, n, "")
	for b, lo := 0, 0; lo < n; b, lo = b+1, lo+o.Batch {
		hi := min(lo+o.Batch, n)
		dst := out.Images.Batch(lo, hi).Data
		assign := make([]int32, hi-lo)
		reloaded, err := part.Fill(b, dst, assign, func() error { return project(lo, hi, dst, assign) })
		if err != nil {
			return err
		}
		if reloaded {
			res.Resumed += hi - lo
		}
		for _, k := range assign {
			if res.ClusterSizes != nil {
				res.ClusterSizes[k]++
			}
		}
		rep.Report(stage, hi, n, "")
	}
	res.Elapsed = time.Since(start)
	if err := WriteImages(o.Out, out, bare, rep); err != nil {
		return err
	}
	return part.Remove()
}

// projectBatch projects images lo..hi-1 of x into dst, with the universal
// dictionary or by cluster, the clusters given by clusters; assign
// receives each image's cluster.
func projectBatch(ctx context.Context, universal bool, uni *defense.STL, strat *defense.StratifiedSTL, clusters func(context.Context, int, int) ([]int, error), x *tensor.Tensor, lo, hi int, dst []float32, assign []int32) error {
	b := x.Batch(lo, hi)
	var y *tensor.Tensor
	var err error
	if universal {
		y, err = uni.Apply(ctx, b)
	} else {
		var a []int
		if a, err = clusters(ctx, lo, hi); err == nil {
			for i, k := range a {
				assign[i] = int32(k)
			}
			y, err = strat.ApplyClusters(ctx, b, a)
		}
	}
	if err != nil {
		return err
	}
	copy(dst, y.Data)
	return nil
}

// checkUnitRange refuses pixel values outside [0, 1], the range every
// defense and classifier of the project works in.
func checkUnitRange(x *tensor.Tensor) error {
	per := x.Len() / max(x.Shape[0], 1)
	for i, v := range x.Data {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("image %d holds the pixel value %g, outside [0, 1]: scale images to [0, 1] (8-bit values divided by 255) before projecting them", i/per, v)
		}
	}
	return nil
}

// ProjectPartialDir is where Project keeps the finished batches of a
// projection into out until the output is written.
func ProjectPartialDir(out string) string { return filepath.Clean(out) + ".partial" }

// projectKey identifies a projection: the defense (its manifest, which holds
// the SHA-256 of every file), the images and labels, the dictionary choice and
// the batch size (the chunk boundaries).
func projectKey(o ProjectOptions, set *dataset.Set) (cache.Key, error) {
	man, err := os.ReadFile(filepath.Join(o.Defense, defense.ManifestFile))
	if err != nil {
		return "", err
	}
	fields := map[string]any{
		"defense":   fmt.Sprintf("%x", sha256.Sum256(man)),
		"images":    setDigest(set),
		"shape":     set.Images.Shape,
		"universal": o.Universal,
		"batch":     o.Batch,
	}
	if o.Solver != csc.MethodADMM { // the default's key is unchanged
		fields["solver"] = o.Solver.String()
	}
	return cache.NewKey("defend", fields)
}

// setDigest is the SHA-256, in hex, of a set's pixels and labels.
func setDigest(set *dataset.Set) string {
	h := sha256.New()
	buf := make([]byte, 0, 1<<16)
	for _, v := range set.Images.Data {
		if buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v)); len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	for _, l := range set.Labels {
		if buf = binary.LittleEndian.AppendUint32(buf, uint32(l)); len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// byteClasses names the 256 possible labels of a binary record file.
func byteClasses() []string {
	c := make([]string, 256)
	for i := range c {
		c[i] = fmt.Sprint(i)
	}
	return c
}

// AttackSetDir reports whether path is an adversarial set written by
// attack.Set.Save, or the adv.npy of one, and returns the set's directory.
// A set is recognized by its meta.json.
func AttackSetDir(path string) (string, bool) {
	dir := filepath.Clean(path)
	if st, err := os.Stat(dir); err != nil {
		return "", false
	} else if !st.IsDir() {
		if filepath.Base(dir) != attack.AdvFile {
			return "", false
		}
		dir = filepath.Dir(dir)
	}
	if st, err := os.Stat(filepath.Join(dir, attack.MetaFile)); err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	return dir, true
}

// isSetFile reports whether name is one of the files of an adversarial set.
func isSetFile(name string) bool {
	return name == attack.AdvFile || name == attack.LabelsFile || name == attack.MetaFile
}

// readAttackSet reads the adversarial set in dir as a labelled set, its
// classes named "0", "1", ... up to the largest label.
func readAttackSet(dir string) (*dataset.Set, error) {
	s, err := attack.LoadSet(dir)
	if err != nil {
		return nil, err
	}
	classes, name, err := attackSetNames(dir, s.Labels, s.Meta)
	if err != nil {
		return nil, err
	}
	return &dataset.Set{Images: s.Adv, Labels: s.Labels, Classes: classes, Name: name}, nil
}

// attackSetNames returns the classes of an adversarial set with labels
// (named "0", "1", ... up to the largest label) and its name (the
// attack's, else its directory's).
func attackSetNames(dir string, labels []int, meta attack.SetMeta) (classes []string, name string, err error) {
	top := -1
	for i, l := range labels {
		if l < 0 || l > 1<<16 {
			return nil, "", &attack.SetError{Dir: dir, Msg: fmt.Sprintf("%s: label %d of image %d out of range", attack.LabelsFile, l, i)}
		}
		top = max(top, l)
	}
	classes = make([]string, top+1)
	for i := range classes {
		classes[i] = fmt.Sprint(i)
	}
	name = meta.Attack
	if name == "" {
		name = filepath.Base(dir)
	}
	return classes, name, nil
}

// ErrImageForm is returned by ReadImages for a path of no form it reads.
var ErrImageForm = fmt.Errorf("not a form of images this command reads")

// ReadImages reads an adversarial set (written by attack.Set.Save: its
// directory or its adv.npy; its labels kept), a PNG/JPEG folder in class
// subfolders, a binary record file (.bin or .bin.gz, 1 label byte + the
// pixels of an image of m's channels and resolution) or a float32 .npy
// (N, C, H, W) (with X.labels.npy beside it, if any). bare reports an .npy
// without labels.
func ReadImages(ctx context.Context, path string, m defense.Manifest, rep progress.Reporter) (set *dataset.Set, bare bool, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	dir, isSet := AttackSetDir(path)
	switch lower := strings.ToLower(path); {
	case isSet:
		set, err = readAttackSet(dir)
	case st.IsDir():
		set, err = dataset.ReadImageFolder(ctx, path, dataset.FolderOptions{Size: 0, Progress: rep})
	case strings.HasSuffix(lower, ".npy"):
		set, bare, err = readImageNPY(path)
	case strings.HasSuffix(lower, ".bin") || strings.HasSuffix(lower, ".bin.gz"):
		shape := dataset.Shape{C: m.Channels, H: m.Resolution, W: m.Resolution}
		if set, err = dataset.ReadBinaryFile(path, shape, byteClasses()); err != nil {
			err = fmt.Errorf("reading binary records of %v images, the size the defense was built for: %w", shape, err)
		} else {
			top := 0
			for _, l := range set.Labels {
				top = max(top, l)
			}
			set.Classes = set.Classes[:top+1]
		}
	default:
		return nil, false, fmt.Errorf("%s: %w: want a folder, a .npy or a .bin/.bin.gz file", path, ErrImageForm)
	}
	if err != nil {
		return nil, false, err
	}
	return set, bare, nil
}

// WriteImages writes set in the form named by path's extension: .npy
// (with X.labels.npy and X.classes.txt unless bare), .bin (records), or
// else a PNG folder in class subfolders.
func WriteImages(path string, set *dataset.Set, bare bool, rep progress.Reporter) error {
	switch lower := strings.ToLower(path); {
	case strings.HasSuffix(lower, ".npy"):
		if bare {
			return npy.WriteFile(path, set.Images)
		}
		return dataset.WriteNPY(path, set)
	case strings.HasSuffix(lower, ".bin"):
		return dataset.WriteBinaryFile(path, set)
	default:
		return dataset.WritePNGFolder(path, set, rep)
	}
}

// readImageNPY reads a float32 .npy (N, C, H, W) of images, with its labels and
// classes when X.labels.npy is beside it; bare reports one without, whose
// images then get label 0 of the one class "0".
func readImageNPY(path string) (set *dataset.Set, bare bool, err error) {
	if hasNPYLabels(path) {
		set, err := dataset.ReadNPY(path)
		return set, false, err
	}
	t, err := npy.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	n, _, _, _, err := t.NCHW()
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	return &dataset.Set{Images: t, Labels: make([]int, n), Classes: []string{"0"}, Name: filepath.Base(path)}, true, nil
}

// hasNPYLabels reports whether the images at path (X.npy) have
// X.labels.npy beside them.
func hasNPYLabels(path string) bool {
	_, err := os.Stat(strings.TrimSuffix(path, filepath.Ext(path)) + ".labels.npy")
	return err == nil
}

// MergedImages describes what MergeImages wrote.
type MergedImages struct {
	N     int           // images
	Shape dataset.Shape // of one image
}

// MergeImages concatenates, in order, the .npy image files parts (each with
// X.labels.npy and X.classes.txt beside it, or none of them with labels)
// into out, an .npy written as Project writes one: the parts of a sharded
// projection become what one unsharded projection writes, byte for byte.
// The images are copied by blocks of rows (npy.ConcatFiles), never held
// whole; only the labels are. Parts must agree on the image shape, on
// having labels and on the class names.
func MergeImages(out string, parts []string) (MergedImages, error) {
	if !strings.HasSuffix(strings.ToLower(out), ".npy") {
		return MergedImages{}, fmt.Errorf("%s: merged images are written as .npy", out)
	}
	if len(parts) == 0 {
		return MergedImages{}, fmt.Errorf("no parts to merge")
	}
	var labels []int
	var classes []string
	bare := false
	for i, p := range parts {
		if !strings.HasSuffix(strings.ToLower(p), ".npy") {
			return MergedImages{}, fmt.Errorf("%s: want an .npy file", p)
		}
		if filepath.Clean(p) == filepath.Clean(out) {
			return MergedImages{}, fmt.Errorf("%w: %s is one of the parts", ErrOverwrite, out)
		}
		noLabels := !hasNPYLabels(p)
		var partLabels []int
		var partClasses []string
		if !noLabels {
			// The labels and classes, checked against the images' header.
			var err error
			if partLabels, partClasses, err = dataset.ReadNPYLabels(p); err != nil {
				return MergedImages{}, err
			}
		}
		if i > 0 && bare != noLabels {
			return MergedImages{}, fmt.Errorf("%s and %s disagree on having labels", parts[0], p)
		}
		if i > 0 && !noLabels && !slices.Equal(classes, partClasses) {
			return MergedImages{}, fmt.Errorf("%s and %s name different classes (%d and %d)", parts[0], p, len(classes), len(partClasses))
		}
		bare, classes = noLabels, partClasses
		labels = append(labels, partLabels...)
	}
	if h, err := npy.ReadHeaderFile(parts[0]); err != nil {
		return MergedImages{}, err
	} else if len(h.Shape) != 4 {
		return MergedImages{}, fmt.Errorf("%s: images must be (N, C, H, W), got %v", parts[0], h.Shape)
	}
	shape, err := npy.ConcatFiles(out, parts) // the other parts' shapes checked against the first's
	if err != nil {
		return MergedImages{}, err
	}
	if !bare {
		if err := dataset.WriteNPYLabels(out, labels, classes); err != nil {
			return MergedImages{}, err
		}
	}
	return MergedImages{N: shape[0], Shape: dataset.Shape{C: shape[1], H: shape[2], W: shape[3]}}, nil
}

// MergeAttackSets concatenates, in order, the adversarial sets in the
// directories parts (attack.MergeSets: their per-image figures kept, the
// summary figures recomputed) and saves the result in the directory out:
// the sets of a sharded attack become what one unsharded attack writes.
// The images are copied by blocks of rows (attack.SaveMerged), never held
// whole. It refuses an out that is one of the parts and returns the
// merged set, opened.
func MergeAttackSets(out string, parts []string) (*attack.OpenedSet, error) {
	sets := make([]*attack.OpenedSet, len(parts))
	for i, p := range parts {
		dir, ok := AttackSetDir(p)
		if !ok {
			return nil, fmt.Errorf("%s is not an adversarial set (no %s)", p, attack.MetaFile)
		}
		if filepath.Clean(dir) == filepath.Clean(out) {
			return nil, fmt.Errorf("%w: %s is one of the parts", ErrOverwrite, out)
		}
		s, err := attack.OpenSet(dir)
		if err != nil {
			return nil, err
		}
		sets[i] = s
	}
	return attack.SaveMerged(out, sets)
}
