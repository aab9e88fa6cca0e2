package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// defendOptions are the flags of "stl defend".
type defendOptions struct {
	defense   string
	in, out   string
	universal bool
	batch     int
	shard     dataset.Shard
}

func init() {
	var o defendOptions
	cmd := &cobra.Command{
		Use:   "defend --defense DIR --in IMAGES --out IMAGES",
		Short: "Project images with a saved defense (STL (cluster), or STL with --universal)",
		Long: `defend applies a defense built by "stl defense train" to images: each image is routed
to its cluster by the auto-encoder and the kNN vote and projected onto that cluster's
dictionary ("STL (cluster)"), or onto the universal dictionary with --universal ("STL").

IMAGES may be a folder of PNG/JPEG images in class subfolders (IN/<class>/*.png), a
binary record file (.bin or .bin.gz: 1 label byte + C*H*W planar bytes per image, as
CIFAR-10), a float32 .npy array (N, C, H, W) (with X.labels.npy beside it, if any)
or an adversarial set written by "stl attack --out DIR" (DIR or DIR/adv.npy; its
labels are kept: the true classes, or the target classes of a targeted attack).
The output's form follows its name: .npy (with X.labels.npy and X.classes.txt when
the input has labels), .bin, or else a PNG folder. The images must have the
resolution and channel count the defense was built for.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDefend(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.defense, "defense", "", "defense directory written by 'stl defense train' (required)")
	f.StringVar(&o.in, "in", "", "images to project (required)")
	f.StringVar(&o.out, "out", "", "where to write the projected images (required)")
	f.BoolVar(&o.universal, "universal", false, "use the universal dictionary (STL) instead of the per-cluster ones (STL (cluster))")
	f.IntVar(&o.batch, "batch", 64, "images projected per batch (progress and cancellation granularity)")
	f.Var(shardFlag{&o.shard}, "shard", "project only part i of n of the images (0-based, e.g. 3/8; contiguous, sizes within one) for array jobs; the parts' outputs concatenated in order equal one run's")
	rootCmd.AddCommand(cmd)
}

func runDefend(ctx context.Context, stdout, stderr io.Writer, o defendOptions) error {
	switch {
	case o.defense == "" || o.in == "" || o.out == "":
		return usagef("--defense, --in and --out are required")
	case o.batch < 1:
		return usagef("--batch %d, want >= 1", o.batch)
	case filepath.Clean(o.in) == filepath.Clean(o.out):
		return usagef("--out must differ from --in")
	}
	if dir, ok := attackSetDir(o.in); ok {
		out := filepath.Clean(o.out)
		if out == dir || (filepath.Dir(out) == dir && isSetFile(filepath.Base(out))) {
			return usagef("--out %s would overwrite the adversarial set %s", o.out, dir)
		}
	}
	d, err := defense.Load(o.defense)
	if err != nil {
		return err
	}
	uni, strat, err := d.Transforms(defense.DefaultBackend().NewProjector)
	if err != nil {
		return err
	}
	var tr defense.Transform = strat
	if o.universal {
		tr = uni
	}
	sizes := make([]int, d.Manifest.Clusters) // images routed to each cluster
	bar := progress.NewBar(stderr)
	set, bare, err := readImages(ctx, o.in, d, bar)
	if err != nil {
		return err
	}
	if err := d.CheckImages(set.Images); err != nil {
		return fmt.Errorf("%s: %w", o.in, err)
	}
	if err := checkUnitRange(set.Images); err != nil {
		return fmt.Errorf("%s: %w", o.in, err)
	}
	set = set.Shard(o.shard)
	n := set.Len()
	if n == 0 {
		return fmt.Errorf("%s: no images", o.in)
	}
	// Finished batches are kept in OUT.partial as they complete, so an
	// interrupted command resumes where it stopped; opening it first also
	// checks that the output's directory is writable before any work.
	key, err := defendKey(o, set)
	if err != nil {
		return err
	}
	part, err := cache.OpenPartial(partialDir(o.out), key)
	if err != nil {
		return fmt.Errorf("--out %s: %w", o.out, err)
	}
	out := &dataset.Set{Images: tensor.New(set.Images.Shape...), Labels: set.Labels, Classes: set.Classes, Name: set.Name}
	start := time.Now()
	stage := "project " + tr.Name()
	bar.Report(stage, 0, n, "")
	resumed := 0
	for b, lo := 0, 0; lo < n; b, lo = b+1, lo+o.batch {
		hi := min(lo+o.batch, n)
		dst := out.Images.Batch(lo, hi).Data
		assign := make([]int32, hi-lo)
		reloaded, err := part.Fill(b, dst, assign, func() error {
			return projectBatch(ctx, o.universal, uni, strat, set.Images, lo, hi, dst, assign)
		})
		if err != nil {
			return err
		}
		if reloaded {
			resumed += hi - lo
		}
		if !o.universal {
			for _, k := range assign {
				sizes[k]++
			}
		}
		bar.Report(stage, hi, n, "")
	}
	el := time.Since(start)
	if err := writeImages(o.out, out, bare, bar); err != nil {
		return err
	}
	if err := part.Remove(); err != nil {
		return err
	}
	if resumed > 0 {
		fmt.Fprintf(stdout, "resumed: %d of %d images were projected by an earlier, interrupted run\n", resumed, n)
	}
	// The rate counts only the images this run projected.
	fmt.Fprintf(stdout, "%s: projected %d images with %s in %s (%.1f images/s) -> %s\n",
		o.in, n-resumed, tr.Name(), el.Round(time.Millisecond), float64(n-resumed)/el.Seconds(), o.out)
	if dir, ok := attackSetDir(o.in); ok {
		fmt.Fprintf(stdout, "adversarial set %s (%s): %d labels kept\n", dir, set.Name, n)
	}
	if !o.universal {
		fmt.Fprintf(stdout, "images per cluster: %v\n", sizes)
	}
	return nil
}

// shardFlag is a dataset.Shard as a flag value ("i/n").
type shardFlag struct{ s *dataset.Shard }

func (f shardFlag) String() string {
	if f.s == nil {
		return ""
	}
	return f.s.String()
}

func (f shardFlag) Set(v string) error {
	sh, err := dataset.ParseShard(v)
	if err != nil {
		return err
	}
	*f.s = sh
	return nil
}

func (shardFlag) Type() string { return "i/n" }

// projectBatch projects images lo..hi-1 of x into dst, with the universal
// dictionary or by cluster; assign receives each image's cluster.
func projectBatch(ctx context.Context, universal bool, uni *defense.STL, strat *defense.StratifiedSTL, x *tensor.Tensor, lo, hi int, dst []float32, assign []int32) error {
	b := x.Batch(lo, hi)
	var y *tensor.Tensor
	var err error
	if universal {
		y, err = uni.Apply(ctx, b)
	} else {
		var a []int
		if a, err = strat.Stratifier().Assign(ctx, b); err == nil {
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

// partialDir is where the finished batches of a projection into out are
// kept until the output is written.
func partialDir(out string) string { return filepath.Clean(out) + ".partial" }

// defendKey identifies a projection: the defense (its manifest, which holds
// the SHA-256 of every file), the images and labels, the dictionary choice and
// the batch size (the chunk boundaries).
func defendKey(o defendOptions, set *dataset.Set) (cache.Key, error) {
	man, err := os.ReadFile(filepath.Join(o.defense, defense.ManifestFile))
	if err != nil {
		return "", err
	}
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
	return cache.NewKey("defend", map[string]any{
		"defense":   fmt.Sprintf("%x", sha256.Sum256(man)),
		"images":    fmt.Sprintf("%x", h.Sum(nil)),
		"shape":     set.Images.Shape,
		"universal": o.universal,
		"batch":     o.batch,
	})
}

// byteClasses names the 256 possible labels of a binary record file.
func byteClasses() []string {
	c := make([]string, 256)
	for i := range c {
		c[i] = fmt.Sprint(i)
	}
	return c
}

// attackSetDir reports whether path is an adversarial set written by
// attack.Set.Save, or the adv.npy of one, and returns the set's directory.
// A set is recognized by its meta.json.
func attackSetDir(path string) (string, bool) {
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
	top := -1
	for i, l := range s.Labels {
		if l < 0 || l > 1<<16 {
			return nil, &attack.SetError{Dir: dir, Msg: fmt.Sprintf("%s: label %d of image %d out of range", attack.LabelsFile, l, i)}
		}
		top = max(top, l)
	}
	classes := make([]string, top+1)
	for i := range classes {
		classes[i] = fmt.Sprint(i)
	}
	name := s.Meta.Attack
	if name == "" {
		name = filepath.Base(dir)
	}
	return &dataset.Set{Images: s.Adv, Labels: s.Labels, Classes: classes, Name: name}, nil
}

// readImages reads an adversarial set, a PNG/JPEG folder, a binary record
// file or an .npy array. bare reports an .npy without labels.
func readImages(ctx context.Context, path string, d *defense.Defense, rep progress.Reporter) (set *dataset.Set, bare bool, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	m := d.Manifest
	dir, isSet := attackSetDir(path)
	switch lower := strings.ToLower(path); {
	case isSet:
		set, err = readAttackSet(dir)
	case st.IsDir():
		set, err = dataset.ReadImageFolder(ctx, path, dataset.FolderOptions{Size: 0, Progress: rep})
	case strings.HasSuffix(lower, ".npy"):
		labels := strings.TrimSuffix(path, filepath.Ext(path)) + ".labels.npy"
		if _, serr := os.Stat(labels); serr == nil {
			set, err = dataset.ReadNPY(path)
		} else {
			var t *tensor.Tensor
			if t, err = npy.ReadFile(path); err == nil {
				var n int
				if n, _, _, _, err = t.NCHW(); err == nil {
					set, bare = &dataset.Set{Images: t, Labels: make([]int, n), Classes: []string{"0"}, Name: filepath.Base(path)}, true
				}
			}
		}
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
		return nil, false, usagef("--in %s: want a folder, a .npy or a .bin/.bin.gz file", path)
	}
	if err != nil {
		return nil, false, err
	}
	return set, bare, nil
}

// writeImages writes set in the form named by path's extension.
func writeImages(path string, set *dataset.Set, bare bool, rep progress.Reporter) error {
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
