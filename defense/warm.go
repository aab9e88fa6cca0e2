package defense

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

// WarmState is where the STL projection of one image ended (csc.State: its
// coefficient maps, scaled dual and penalty) and the dictionary it was
// computed with, for starting the projection of a nearby image there: an
// attack's next iterate from its previous one, an attacked image from its
// clean image. The zero value is an empty state (a cold start). A
// WarmState is written by WarmTransform.ApplyFrom and only read when
// passed as a start.
type WarmState struct {
	dict  int // the universal dictionary (0) or the cluster's
	state *csc.State
}

// WarmTransform is a Transform that can start each image's projection from
// the state of an earlier, nearby image (csc.Projection.ProjectFrom, Boyd
// et al. 2011, section 4.4): STL and STL (cluster). The problem is
// unchanged; a warm start only changes where ADMM stops, within csc's
// WarmRelStopTol of a cold start's objective (1e-4 relative per image on
// csc's reference problems).
type WarmTransform interface {
	Transform
	// ApplyFrom is Apply with warm starts: image i starts from from[i] (a
	// cold start where from is nil, from[i] is nil or empty, or from[i]
	// was computed with another dictionary than image i's), and when to is
	// not nil its final state is stored in to[i] (allocated when nil; to
	// may be from). from and to must have the batch's length when not nil.
	ApplyFrom(ctx context.Context, x *tensor.Tensor, from, to []*WarmState) (*tensor.Tensor, error)
}

// WarmProjector is a Projector that can start images from earlier states;
// CSCProjector's projectors are. A projector that is not one projects every
// image cold, and ApplyFrom then stores empty states.
type WarmProjector interface {
	Projector
	// ProjectFrom is Project with warm starts, as csc.Projection.ProjectFrom.
	ProjectFrom(ctx context.Context, dst, src *tensor.Tensor, from, to []*csc.State) error
}

// ProjectFrom implements WarmProjector.
func (c cscProjector) ProjectFrom(ctx context.Context, dst, src *tensor.Tensor, from, to []*csc.State) error {
	_, err := c.p.ProjectFrom(ctx, dst, src, from, to, nil)
	return err
}

// checkStates checks the lengths of ApplyFrom's from and to for n images.
func checkStates(op string, n int, from, to []*WarmState) error {
	if (from != nil && len(from) != n) || (to != nil && len(to) != n) {
		return fmt.Errorf("%s: %d starts and %d states for %d images", op, len(from), len(to), n)
	}
	return nil
}

// projectFrom projects src into dst with p, image i (of the batch) from
// from[i] when it was computed with dictionary dict, and stores the final
// states in to (when not nil), labelled dict.
func projectFrom(ctx context.Context, p Projector, dict int, dst, src *tensor.Tensor, from, to []*WarmState) error {
	wp, ok := p.(WarmProjector)
	if !ok || (from == nil && to == nil) {
		return p.Project(ctx, dst, src)
	}
	n := src.Shape[0]
	var cf, ct []*csc.State
	if from != nil {
		cf = make([]*csc.State, n)
		for i, s := range from {
			if s != nil && s.state != nil && s.dict == dict {
				cf[i] = s.state
			}
		}
	}
	if to != nil {
		ct = make([]*csc.State, n)
		for i, s := range to {
			if s != nil && s.dict == dict {
				ct[i] = s.state // reused in place (csc reads a start before overwriting it)
			}
		}
	}
	if err := wp.ProjectFrom(ctx, dst, src, cf, ct); err != nil {
		return err
	}
	for i := range ct {
		if to[i] == nil {
			to[i] = &WarmState{}
		}
		to[i].dict, to[i].state = dict, ct[i]
	}
	return nil
}

// ApplyFrom implements WarmTransform.
func (t *STL) ApplyFrom(ctx context.Context, x *tensor.Tensor, from, to []*WarmState) (*tensor.Tensor, error) {
	if err := checkInput("defense.STL.ApplyFrom", x, 0, t.spec); err != nil {
		return nil, err
	}
	if err := checkStates("defense.STL.ApplyFrom", x.Shape[0], from, to); err != nil {
		return nil, err
	}
	dst := tensor.New(x.Shape...)
	if x.Shape[0] == 0 {
		return dst, nil
	}
	if err := projectFrom(ctx, t.proj, 0, dst, x, from, to); err != nil {
		return nil, err
	}
	t.opt.mapImages(dst.Data, dst.Len()/x.Shape[0])
	return dst, nil
}

// ApplyFrom implements WarmTransform: the images are assigned to clusters
// as by Apply, and a start computed with another cluster's dictionary than
// the image's is not used.
func (t *StratifiedSTL) ApplyFrom(ctx context.Context, x *tensor.Tensor, from, to []*WarmState) (*tensor.Tensor, error) {
	if err := checkInput("defense.StratifiedSTL.ApplyFrom", x, t.strat.channels, t.spec); err != nil {
		return nil, err
	}
	if err := checkStates("defense.StratifiedSTL.ApplyFrom", x.Shape[0], from, to); err != nil {
		return nil, err
	}
	clusters, err := t.strat.assign(ctx, x)
	if err != nil {
		return nil, err
	}
	return t.project(ctx, x, clusters, from, to)
}

// WarmOptions configure a WarmCache.
type WarmOptions struct {
	// Radius is how near an earlier input must be for an image to start
	// from its state: the largest pixel difference (L-infinity), pixels
	// in [0, 1]. Default 1/255 (0 takes it): PGD's step at L-infinity
	// 8/255 (0.8/255) is within it; APGD's first steps (2 eps) and
	// Square's patches (up to 2 eps) are not. Measured once on the
	// CIFAR-10 STL (cluster) dictionaries (docs/performance.md): chained
	// warm starts over random-sign steps of 0.8/255 kept the mean
	// objective within 1e-4 of a cold start's, and plain PGD's warm starts
	// took 42 ADMM iterations against 65 cold; chained over dense steps of
	// 2/255 or over Square-like patches of 16/255 they stopped up to 13%
	// above a cold start's objective and took twice the iterations.
	Radius float64
	// Chain is the number of successive warm starts an image may make
	// before it starts cold again (and the chain anew), bounding what
	// warm starts stopped early may accumulate. Default 10 (0 takes it).
	Chain int
	// States is the number of states kept, the least recently used
	// dropped first. Default 256 (0 takes it): about 0.5 MB each at 32x32
	// with 64 filters, 2 MB at 64x64.
	States int
}

// DefaultWarmOptions returns the defaults stated at WarmOptions.
func DefaultWarmOptions() WarmOptions { return WarmOptions{Radius: 1.0 / 255, Chain: 10, States: 256} }

// Validate checks that Radius is finite and >= 0 and Chain and States are
// >= 0.
func (o WarmOptions) Validate() error {
	if !(o.Radius >= 0) || math.IsInf(o.Radius, 0) || o.States < 0 || o.Chain < 0 {
		return fmt.Errorf("defense: warm options: radius %v, chain %d and states %d, want a finite radius >= 0, chain and states >= 0", o.Radius, o.Chain, o.States)
	}
	return nil
}

// WarmCache is a WarmTransform whose Apply starts each image's projection
// from the state the nearest earlier input (within Radius, at most Chain
// times in a row) ended in, and
// remembers each image's input and state for the next call: the
// projections of an attack's successive iterates of one image, which move
// by small steps, each start from the previous one's. An image with no
// earlier input within Radius starts cold and is remembered as a new
// image. Inputs are matched by content, so the attack may pass any subset
// of its images, in any order; an image matched twice in one call starts
// cold the second time. The outputs differ from a cold Apply's only
// within csc's warm-start tolerance. Apply is safe for concurrent use
// (calls are serialized); use one WarmCache per attack.
type WarmCache struct {
	t      WarmTransform
	radius float64
	chain  int
	max    int

	mu         sync.Mutex
	slots      []*warmSlot
	clock      int
	warm, cold int
}

// warmSlot is one remembered image: its last input and state.
type warmSlot struct {
	x     []float32
	s     *WarmState
	used  int // the clock of its last use
	chain int // successive warm starts that led to s
}

// NewWarmCache returns a WarmCache over t with the options o (zero fields
// take the defaults of WarmOptions).
func NewWarmCache(t WarmTransform, o WarmOptions) (*WarmCache, error) {
	if t == nil {
		return nil, fmt.Errorf("defense: NewWarmCache: nil transform")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	d := DefaultWarmOptions()
	if o.Radius == 0 {
		o.Radius = d.Radius
	}
	if o.States == 0 {
		o.States = d.States
	}
	if o.Chain == 0 {
		o.Chain = d.Chain
	}
	return &WarmCache{t: t, radius: o.Radius, chain: o.Chain, max: o.States}, nil
}

// Name implements Transform: the wrapped transform's name.
func (c *WarmCache) Name() string { return c.t.Name() }

// Randomized implements Transform.
func (c *WarmCache) Randomized() bool { return c.t.Randomized() }

// Starts returns the number of images Apply started warm and cold so far.
func (c *WarmCache) Starts() (warm, cold int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.warm, c.cold
}

// ApplyFrom implements WarmTransform: the wrapped transform's, the cache
// left alone.
func (c *WarmCache) ApplyFrom(ctx context.Context, x *tensor.Tensor, from, to []*WarmState) (*tensor.Tensor, error) {
	return c.t.ApplyFrom(ctx, x, from, to)
}

// Apply implements Transform, starting each image from the state of the
// nearest remembered input within the radius.
func (c *WarmCache) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if x == nil {
		return nil, ErrNilInput
	}
	if len(x.Shape) == 0 || x.Shape[0] == 0 {
		return c.t.Apply(ctx, x)
	}
	n := x.Shape[0]
	d := len(x.Data) / n
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	from, to := make([]*WarmState, n), make([]*WarmState, n)
	slots := make([]*warmSlot, n)
	taken := map[*warmSlot]bool{}
	for i := range slots {
		xi := x.Data[i*d : (i+1)*d]
		s := c.nearest(xi, taken)
		switch {
		case s == nil:
			c.cold++
		case s.chain >= c.chain: // start cold, and the chain anew, in the same slot
			taken[s] = true
			slots[i] = s
			c.cold++
		default:
			taken[s] = true
			slots[i], from[i], to[i] = s, s.s, s.s
			c.warm++
		}
	}
	y, err := c.t.ApplyFrom(ctx, x, from, to)
	if err != nil {
		return nil, err
	}
	for i, s := range slots {
		if s == nil {
			s = c.newSlot()
		}
		s.chain++
		if from[i] == nil {
			s.chain = 0
		}
		s.x = append(s.x[:0], x.Data[i*d:(i+1)*d]...)
		s.s, s.used = to[i], c.clock
	}
	return y, nil
}

// nearest returns the remembered slot nearest xi within the radius, among
// those not taken; nil when there is none.
func (c *WarmCache) nearest(xi []float32, taken map[*warmSlot]bool) *warmSlot {
	best, bound := (*warmSlot)(nil), c.radius
	for _, s := range c.slots {
		if taken[s] || len(s.x) != len(xi) {
			continue
		}
		if d, ok := linfWithin(s.x, xi, bound); ok {
			best, bound = s, d
		}
	}
	return best
}

// linfWithin returns the largest difference of a and b and true when it is
// at most bound, stopping early (false) once it exceeds it.
func linfWithin(a, b []float32, bound float64) (float64, bool) {
	m := 0.0
	for j, v := range a {
		if e := math.Abs(float64(v) - float64(b[j])); e > m {
			if m = e; m > bound {
				return m, false
			}
		}
	}
	return m, true
}

// newSlot returns a new slot, or the least recently used one (emptied)
// when the cache is full.
func (c *WarmCache) newSlot() *warmSlot {
	if len(c.slots) < c.max {
		s := &warmSlot{}
		c.slots = append(c.slots, s)
		return s
	}
	lru := c.slots[0]
	for _, s := range c.slots[1:] {
		if s.used < lru.used {
			lru = s
		}
	}
	return lru
}

var (
	_ WarmTransform = (*STL)(nil)
	_ WarmTransform = (*StratifiedSTL)(nil)
	_ WarmTransform = (*WarmCache)(nil)
)
