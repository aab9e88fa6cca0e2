package baseline

// This file holds what the baseline defenses share: their error types, the
// input check, per-image seeding of randomized transforms, the parallel loop
// over the images of a batch, and the generic Chain and Ensemble transforms.

import (
	"context"
	"fmt"
	"github.com/stl-defense/stl/defense"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"github.com/stl-defense/stl/tensor"
)

// ParamError reports an option outside its valid range. Constructors of the
// baselines return it (through Validate) before any work is done.
type ParamError struct {
	Defense string // e.g. "jpeg"
	Field   string // the option's field name, e.g. "Quality"
	Value   any    // the rejected value
	Reason  string // what a valid value looks like
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("defense %s: bad option %s=%v: %s", e.Defense, e.Field, e.Value, e.Reason)
}

// PixelRangeError reports an input pixel outside [0,1]; the baselines are
// defined on images in [0,1] only (a tolerance of 1e-6 is allowed and clipped).
type PixelRangeError struct {
	Defense string
	Index   int // flat index into the input's Data
	Value   float32
}

func (e *PixelRangeError) Error() string {
	return fmt.Sprintf("defense %s: pixel %d is %v, outside [0,1]", e.Defense, e.Index, e.Value)
}

// ChannelsError reports a batch whose channel count a transform cannot
// handle (JPEG and pixel deflection need 1 or 3 channels, quilting needs the
// channel count of its patch database).
type ChannelsError struct {
	Defense string
	Want    []int
	Got     int
}

func (e *ChannelsError) Error() string {
	return fmt.Sprintf("defense %s: need %v channels, got %d", e.Defense, e.Want, e.Got)
}

// pixelTol is how far outside [0,1] an input pixel may lie (rounding in an
// attack's projection) before Apply rejects it.
const pixelTol = 1e-6

// baselineInput checks x as the input of the named baseline and returns a
// clipped copy together with its dimensions. The copy is the caller's to
// modify, so that x itself is never written.
func baselineInput(name string, x *tensor.Tensor) (out *tensor.Tensor, n, c, h, w int, err error) {
	if x == nil {
		return nil, 0, 0, 0, 0, defense.ErrNilInput
	}
	if err := x.Validate(); err != nil {
		return nil, 0, 0, 0, 0, fmt.Errorf("defense %s: %w", name, err)
	}
	n, c, h, w, err = x.NCHW()
	if err != nil {
		return nil, 0, 0, 0, 0, fmt.Errorf("defense %s: %w", name, err)
	}
	if c < 1 || h < 1 || w < 1 {
		return nil, 0, 0, 0, 0, fmt.Errorf("defense %s: %w", name,
			&tensor.ShapeError{Op: "defense." + name, Want: []int{-1, -1, -1, -1}, Got: x.Shape})
	}
	for i, v := range x.Data {
		if v < -pixelTol || v > 1+pixelTol {
			return nil, 0, 0, 0, 0, &PixelRangeError{Defense: name, Index: i, Value: v}
		}
	}
	out = x.Clone()
	tensor.Clip(out.Data, 0, 1)
	return out, n, c, h, w, nil
}

// seedSource is the seeded random source of a randomized transform. Each
// Apply draws one seed per image from it, in image order, under a lock, so
// a sequence of Apply calls is deterministic whatever the number of workers
// and concurrent calls are serialized only for that short draw.
type seedSource struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newSeedSource(seed uint64) *seedSource {
	return &seedSource{rng: rand.New(rand.NewPCG(seed, 0x5eed_ba5e_11e5))}
}

// draw returns n seeds for the next n images.
func (s *seedSource) draw(n int) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = s.rng.Uint64()
	}
	return seeds
}

// skip discards the seeds of the next n images.
func (s *seedSource) skip(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.rng.Uint64()
	}
}

// imageRand returns the generator of one image from its drawn seed.
func imageRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x1a6e_0f_5eed))
}

// forEachImage calls fn(i) for i in [0, n) on up to GOMAXPROCS goroutines,
// checking ctx before each image. It returns the first error (fn's or
// ctx's). fn must only write the i-th image of its output.
func forEachImage(ctx context.Context, n int, fn func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		mu   sync.Mutex
		next int
		ferr error
		wg   sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ferr != nil || next >= n {
			return 0, false
		}
		if err := ctx.Err(); err != nil {
			ferr = err
			return 0, false
		}
		i := next
		next++
		return i, true
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, ok := take()
				if !ok {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if ferr == nil {
						ferr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return ferr
}

// Chain applies transforms one after the other: Chain{a, b}.Apply(x) is
// b(a(x)). It is randomized when any member is. A Chain is safe for
// concurrent use when its members are.
type Chain struct {
	name  string
	steps []defense.Transform
}

// NewChain returns the composition of steps, applied in the given order.
// name is used in reports; when empty it is the members' names joined by
// "+". It returns an error when steps is empty or holds a nil transform.
func NewChain(name string, steps ...defense.Transform) (*Chain, error) {
	if len(steps) == 0 {
		return nil, &ParamError{Defense: "chain", Field: "steps", Value: 0, Reason: "need at least one transform"}
	}
	names := make([]string, len(steps))
	for i, s := range steps {
		if s == nil {
			return nil, &ParamError{Defense: "chain", Field: "steps", Value: i, Reason: "nil transform"}
		}
		names[i] = s.Name()
	}
	if name == "" {
		name = strings.Join(names, "+")
	}
	return &Chain{name: name, steps: append([]defense.Transform(nil), steps...)}, nil
}

// Name implements defense.Transform.
func (c *Chain) Name() string { return c.name }

// Randomized implements defense.Transform: true when any step is randomized.
func (c *Chain) Randomized() bool {
	for _, s := range c.steps {
		if s.Randomized() {
			return true
		}
	}
	return false
}

// Skip implements defense.Skipper: every randomized step skips n images. It
// skips nothing and returns false when a randomized step cannot skip.
func (c *Chain) Skip(n int) bool {
	for _, s := range c.steps {
		if s.Randomized() && !defense.CanResume(s) {
			return false
		}
	}
	for _, s := range c.steps {
		if sk, ok := s.(defense.Skipper); ok && s.Randomized() {
			sk.Skip(n)
		}
	}
	return true
}

// Apply implements defense.Transform.
func (c *Chain) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	cur := x
	for _, s := range c.steps {
		next, err := s.Apply(ctx, cur)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		cur = next
	}
	if cur == x { // unreachable with conforming steps; keep the contract anyway
		cur = x.Clone()
	}
	return cur, nil
}

// Ensemble averages Size independent applications of a randomized
// transform: T(x) = (1/Size) sum_i T_i(x). This is how the crop ensemble of
// Guo et al. (2018) and the PD ensemble are turned into a single image
// transform; note that the papers average the classifier's predictions over
// the members, which a defense.Transform that outputs images cannot do.
type Ensemble struct {
	name   string
	member defense.Transform
	size   int
}

// NewEnsemble returns the average of size applications of member. name is
// used in reports ("<member> x<size>" when empty). It returns an error for
// a nil member or size < 1.
func NewEnsemble(name string, member defense.Transform, size int) (*Ensemble, error) {
	if member == nil {
		return nil, &ParamError{Defense: "ensemble", Field: "member", Value: nil, Reason: "nil transform"}
	}
	if size < 1 {
		return nil, &ParamError{Defense: "ensemble", Field: "size", Value: size, Reason: "must be >= 1"}
	}
	if name == "" {
		name = fmt.Sprintf("%s x%d", member.Name(), size)
	}
	return &Ensemble{name: name, member: member, size: size}, nil
}

// Name implements defense.Transform.
func (e *Ensemble) Name() string { return e.name }

// Randomized implements defense.Transform: an ensemble of a randomized member is
// still randomized (a finite average).
func (e *Ensemble) Randomized() bool { return e.member.Randomized() }

// Skip implements defense.Skipper: Apply runs the member Size times on the
// batch, so the member skips Size*n images.
func (e *Ensemble) Skip(n int) bool {
	if !e.member.Randomized() {
		return true
	}
	s, ok := e.member.(defense.Skipper)
	return ok && s.Skip(e.size*n)
}

// Apply implements defense.Transform. Members are applied one after the other to
// the whole batch; ctx is checked between members.
func (e *Ensemble) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	var sum []float64
	var shape []int
	for m := 0; m < e.size; m++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		y, err := e.member.Apply(ctx, x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if sum == nil {
			sum = make([]float64, len(y.Data))
			shape = y.Shape
		} else if len(y.Data) != len(sum) {
			return nil, &tensor.ShapeError{Op: "baseline.Ensemble", Want: shape, Got: y.Shape}
		}
		for i, v := range y.Data {
			sum[i] += float64(v)
		}
	}
	out := tensor.New(shape...)
	inv := 1 / float64(e.size)
	for i, s := range sum {
		out.Data[i] = float32(s * inv)
	}
	tensor.Clip(out.Data, 0, 1)
	return out, nil
}
