package defense

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

// Projector computes the Sparse Transformation Layer's projection of images
// onto the span of one convolutional dictionary (section 3.2, Problem (2)
// with the filters fixed: CBPDN on the highpass part plus the lowpass
// part), before the output mapping: its values may leave [0, 1]; the STL
// transforms map them (ApplyOptions.MapOutput). CSCProjector makes one
// from csc's Projection.
type Projector interface {
	// Project writes lowpass + D x of src into dst; both are (N, C, H, W)
	// batches of the same shape. src has been checked by the caller (the
	// STL transforms check their input once, at Apply): its values are
	// finite, so implementations need not scan them again.
	Project(ctx context.Context, dst, src *tensor.Tensor) error
}

// STL is the Sparse Transformation Layer with one universal dictionary
// learned on all training images: the row "STL" of the paper's tables. It
// is deterministic. Apply is safe for concurrent use when the projector
// is (csc's is).
type STL struct {
	proj Projector
	opt  ApplyOptions
	spec *Defense // when set, images must fit spec.CheckImages
}

// NewSTL returns the universal STL projecting with p, its output clipped
// to [0, 1] (the zero ApplyOptions).
func NewSTL(p Projector) (*STL, error) {
	return NewSTLWith(p, ApplyOptions{})
}

// NewSTLWith returns the universal STL projecting with p and mapping its
// output as opt says (opt.Assign does not concern it).
func NewSTLWith(p Projector, opt ApplyOptions) (*STL, error) {
	if p == nil {
		return nil, fmt.Errorf("defense: NewSTL: nil projector")
	}
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	return &STL{proj: p, opt: opt}, nil
}

// Name implements Transform.
func (*STL) Name() string { return "STL" }

// Randomized implements Transform: the projection draws no random numbers.
func (*STL) Randomized() bool { return false }

// Apply implements Transform: it returns the projection of every image of
// x in a new tensor. x is checked here, once: shape, the defense's image
// size when the STL comes from Defense.Transforms, finite values.
func (t *STL) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkInput("defense.STL.Apply", x, 0, t.spec); err != nil {
		return nil, err
	}
	dst := tensor.New(x.Shape...)
	if x.Shape[0] == 0 {
		return dst, nil
	}
	if err := t.proj.Project(ctx, dst, x); err != nil {
		return nil, err
	}
	t.opt.mapImages(dst.Data, dst.Len()/x.Shape[0])
	return dst, nil
}

// checkInput checks a batch at a transform's entry: checkImages (shape,
// channel count when channels > 0, finite values), after the defense's
// image size when spec is not nil.
func checkInput(op string, x *tensor.Tensor, channels int, spec *Defense) error {
	if spec != nil && x != nil {
		if err := spec.CheckImages(x); err != nil {
			return err
		}
	}
	_, _, _, _, err := checkImages(op, x, channels)
	return err
}

// StratifiedSTL is the stratified Sparse Transformation Layer, the paper's
// "STL (cluster)" (sections 3.4-3.5, Figure 2): each image is routed by the
// Stratifier to a cluster and projected with that cluster's dictionary. It
// is deterministic. Apply is safe for concurrent use when the Stratifier's
// encoder and the projectors are. With a transductive Stratifier an
// image's cluster depends on the images assigned with it: Apply assigns
// its batch as one set, ForSet a whole set.
type StratifiedSTL struct {
	strat *Stratifier
	projs []Projector
	opt   ApplyOptions
	spec  *Defense // when set, images must fit spec.CheckImages
}

// NewStratifiedSTL returns the stratified STL with one projector per
// cluster of s, in cluster order, its output clipped to [0, 1].
func NewStratifiedSTL(s *Stratifier, projs []Projector) (*StratifiedSTL, error) {
	return NewStratifiedSTLWith(s, projs, ApplyOptions{})
}

// NewStratifiedSTLWith is NewStratifiedSTL with its output mapped as opt
// says. The assignment is s's (see Stratifier.Transductive); opt.Assign
// must agree with it.
func NewStratifiedSTLWith(s *Stratifier, projs []Projector, opt ApplyOptions) (*StratifiedSTL, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if s != nil && s.IsTransductive() != opt.transductive() {
		return nil, fmt.Errorf("defense: NewStratifiedSTL: cluster assignment %q, but the stratifier is transductive = %v", opt.Assign, s.IsTransductive())
	}
	if s == nil {
		return nil, fmt.Errorf("defense: NewStratifiedSTL: nil stratifier")
	}
	if len(projs) != s.Clusters() {
		return nil, fmt.Errorf("defense: NewStratifiedSTL: %d projectors for %d clusters", len(projs), s.Clusters())
	}
	for i, p := range projs {
		if p == nil {
			return nil, fmt.Errorf("defense: NewStratifiedSTL: nil projector for cluster %d", i)
		}
	}
	return &StratifiedSTL{strat: s, projs: append([]Projector(nil), projs...), opt: opt}, nil
}

// Name implements Transform.
func (*StratifiedSTL) Name() string { return "STL (cluster)" }

// Randomized implements Transform: assignment and projection draw no
// random numbers.
func (*StratifiedSTL) Randomized() bool { return false }

// Stratifier returns the model that routes images to clusters.
func (t *StratifiedSTL) Stratifier() *Stratifier { return t.strat }

// Apply implements Transform: it assigns every image of x to a cluster
// (Stratifier.Assign) and returns the projections in a new tensor. x is
// checked here, once, as by STL.Apply.
func (t *StratifiedSTL) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkInput("defense.StratifiedSTL.Apply", x, t.strat.channels, t.spec); err != nil {
		return nil, err
	}
	clusters, err := t.strat.assign(ctx, x)
	if err != nil {
		return nil, err
	}
	return t.applyClusters(ctx, x, clusters)
}

// ApplyClusters projects image i of x with the dictionary of cluster
// clusters[i], for callers that already know the assignment (for example
// the training images with their k-means labels). It returns the
// projections in a new tensor.
func (t *StratifiedSTL) ApplyClusters(ctx context.Context, x *tensor.Tensor, clusters []int) (*tensor.Tensor, error) {
	if err := checkInput("defense.StratifiedSTL.Apply", x, 0, t.spec); err != nil {
		return nil, err
	}
	return t.applyClusters(ctx, x, clusters)
}

// applyClusters is ApplyClusters on a checked batch.
func (t *StratifiedSTL) applyClusters(ctx context.Context, x *tensor.Tensor, clusters []int) (*tensor.Tensor, error) {
	return t.project(ctx, x, clusters, nil, nil)
}

// project is applyClusters with the warm starts of ApplyFrom (none when
// from and to are nil).
func (t *StratifiedSTL) project(ctx context.Context, x *tensor.Tensor, clusters []int, from, to []*WarmState) (*tensor.Tensor, error) {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	if len(clusters) != n {
		return nil, fmt.Errorf("defense: StratifiedSTL: %d cluster assignments for %d images", len(clusters), n)
	}
	members := make([][]int, len(t.projs))
	for i, k := range clusters {
		if k < 0 || k >= len(t.projs) {
			return nil, fmt.Errorf("defense: StratifiedSTL: image %d assigned to cluster %d, want [0, %d)", i, k, len(t.projs))
		}
		members[k] = append(members[k], i)
	}
	per := c * h * w
	dst := tensor.New(x.Shape...)
	// The clusters' groups are projected concurrently: each projector
	// spreads its group over the cores, and a group's last images would
	// otherwise leave cores idle before the next group starts. Each
	// projector still sees one call at a time.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for k, idx := range members {
		if len(idx) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[k] = t.projectGroup(ctx, k, x, idx, dst, from, to); errs[k] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// Report the failing cluster's error rather than the cancellation it
	// caused in the others.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	t.opt.mapImages(dst.Data, per)
	return dst, nil
}

// projectGroup projects the images idx of x, all of cluster k, into the
// same rows of dst, with the warm starts from and to of the batch (see
// ApplyFrom; none when both are nil).
func (t *StratifiedSTL) projectGroup(ctx context.Context, k int, x *tensor.Tensor, idx []int, dst *tensor.Tensor, from, to []*WarmState) error {
	_, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	per := c * h * w
	src := tensor.New(len(idx), c, h, w)
	for j, i := range idx {
		copy(src.Data[j*per:(j+1)*per], x.Data[i*per:(i+1)*per])
	}
	gf, gt := groupStates(from, idx), groupStates(to, idx)
	out := tensor.New(len(idx), c, h, w)
	if err := projectFrom(ctx, t.projs[k], k, out, src, gf, gt); err != nil {
		return fmt.Errorf("defense: STL (cluster) %d: %w", k, err)
	}
	for j, i := range idx {
		copy(dst.Data[i*per:(i+1)*per], out.Data[j*per:(j+1)*per])
		if gt != nil {
			to[i] = gt[j]
		}
	}
	return nil
}

// groupStates returns the states idx of s, nil when s is.
func groupStates(s []*WarmState, idx []int) []*WarmState {
	if s == nil {
		return nil
	}
	out := make([]*WarmState, len(idx))
	for j, i := range idx {
		out[j] = s[i]
	}
	return out
}

// SetTransform is a Transform whose output for an image may depend on the
// other images of its set: STL (cluster) with AssignTransductive. A caller
// that applies one to a set in batches calls ForSet once with the whole
// set and then the returned function per batch, so that the result does
// not depend on the batching.
type SetTransform interface {
	Transform
	// ForSet returns a function that transforms images lo..hi-1 of x as
	// part of the set x. The work that needs the whole set is done at the
	// function's first call; the function is safe for concurrent use.
	ForSet(ctx context.Context, x *tensor.Tensor) (func(ctx context.Context, lo, hi int) (*tensor.Tensor, error), error)
}

// ForSet implements SetTransform: the clusters come from
// Stratifier.SetClusters (each batch assigned on its own by the kNN vote,
// or the whole of x at once transductively); x must not change until the
// function's last call.
func (t *StratifiedSTL) ForSet(ctx context.Context, x *tensor.Tensor) (func(ctx context.Context, lo, hi int) (*tensor.Tensor, error), error) {
	if err := checkInput("defense.StratifiedSTL.ForSet", x, t.strat.channels, t.spec); err != nil {
		return nil, err
	}
	clusters := t.strat.setClusters(x)
	return func(ctx context.Context, lo, hi int) (*tensor.Tensor, error) {
		c, err := clusters(ctx, lo, hi)
		if err != nil {
			return nil, err
		}
		return t.applyClusters(ctx, x.Batch(lo, hi), c)
	}, nil
}

// ProjectorFactory builds the STL projector of one dictionary with
// sparsity weight lambda.
type ProjectorFactory func(dict *csc.Dictionary, lambda float64) (Projector, error)

// Transforms returns the defense's two transforms, "STL" with the universal
// dictionary and "STL (cluster)" with the per-cluster ones, projecting with
// projectors made by newProj at the defense's lambda. Both refuse images of
// another resolution or channel count with an *ImageSpecError.
func (d *Defense) Transforms(newProj ProjectorFactory) (*STL, *StratifiedSTL, error) {
	if newProj == nil {
		return nil, nil, fmt.Errorf("defense: Transforms: nil projector factory")
	}
	up, err := newProj(d.Universal, d.Manifest.Lambda)
	if err != nil {
		return nil, nil, fmt.Errorf("defense: universal dictionary: %w", err)
	}
	uni, err := NewSTLWith(up, d.Manifest.Apply)
	if err != nil {
		return nil, nil, err
	}
	uni.spec = d
	projs := make([]Projector, len(d.Dictionaries))
	for k, dict := range d.Dictionaries {
		if projs[k], err = newProj(dict, d.Manifest.Lambda); err != nil {
			return nil, nil, fmt.Errorf("defense: dictionary of cluster %d: %w", k, err)
		}
	}
	s, err := d.Stratifier()
	if err != nil {
		return nil, nil, err
	}
	strat, err := NewStratifiedSTLWith(s, projs, d.Manifest.Apply)
	if err != nil {
		return nil, nil, err
	}
	strat.spec = d
	return uni, strat, nil
}

var (
	_ Transform    = (*STL)(nil)
	_ SetTransform = (*StratifiedSTL)(nil)
)
