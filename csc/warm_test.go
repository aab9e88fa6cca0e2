package csc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// TestWarmStartObjective projects perturbed tiles (seeded sign noise of
// 2/255 and 8/255, an attack's step and budget) cold and warm-started from
// the clean tiles' states, and checks that every warm objective is within
// 1e-4 relative of the cold one, the mean no higher than the cold mean
// (within 1e-6), and the mean iteration count lower.
func TestWarmStartObjective(t *testing.T) {
	d := loadDict(t)
	img := loadImage(t, "img128")
	for _, c := range []struct {
		size, n int
		eps     float32
	}{{32, 12, 2}, {32, 12, 8}, {64, 3, 2}, {64, 3, 8}} {
		t.Run(fmt.Sprintf("%dpx/eps=%g", c.size, c.eps), func(t *testing.T) {
			clean := cutTiles(img, c.n, c.size, 5)
			adv := perturbSign(clean, c.eps/255, 9)
			p, err := NewProjection(d, DefaultProjectOptions())
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			out := tensor.New(clean.Shape...)
			states := make([]*State, c.n)
			if _, err := p.ProjectFrom(ctx, out, clean, nil, states, nil); err != nil {
				t.Fatal(err)
			}
			cold, err := p.ProjectBatch(ctx, out, adv, nil)
			if err != nil {
				t.Fatal(err)
			}
			warm, err := p.ProjectFrom(ctx, out, adv, states, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var oc, ow float64
			var ic, iw int
			for i := range cold {
				if rel := (warm[i].Objective - cold[i].Objective) / cold[i].Objective; rel > 1e-4 {
					t.Errorf("image %d: warm objective %.8f, cold %.8f (rel %.2g > 1e-4)", i, warm[i].Objective, cold[i].Objective, rel)
				}
				oc, ow = oc+cold[i].Objective, ow+warm[i].Objective
				ic, iw = ic+cold[i].Iterations, iw+warm[i].Iterations
			}
			t.Logf("cold %d iterations objective %.6f, warm %d iterations objective %.6f", ic, oc, iw, ow)
			if ow > oc*(1+1e-6) {
				t.Errorf("mean warm objective %.8f above cold %.8f", ow/float64(c.n), oc/float64(c.n))
			}
			if iw >= ic {
				t.Errorf("warm starts took %d iterations, cold %d", iw, ic)
			}
		})
	}
}

// TestProjectFrom checks ProjectFrom's contract: without starts it equals
// ProjectBatch bit for bit; restarting an image from its own final state
// stops within a few iterations (the tighter
// WarmRelStopTol) at the same objective; to may alias from; a start of
// another size, a non-finite or non-positive one and mismatched lengths
// are errors.
func TestProjectFrom(t *testing.T) {
	d := loadDict(t)
	x := cutTiles(loadImage(t, "img128"), 3, 32, 2)
	p, _ := NewProjection(d, DefaultProjectOptions())
	ctx := context.Background()
	ref := tensor.New(x.Shape...)
	refSt, err := p.ProjectBatch(ctx, ref, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := tensor.New(x.Shape...)
	states := make([]*State, 3)
	st, err := p.ProjectFrom(ctx, out, x, nil, states, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st {
		if st[i].Iterations != refSt[i].Iterations || st[i].Objective != refSt[i].Objective {
			t.Errorf("image %d: cold ProjectFrom %+v, ProjectBatch %+v", i, st[i], refSt[i])
		}
	}
	for i := range out.Data {
		if out.Data[i] != ref.Data[i] {
			t.Fatalf("cold ProjectFrom differs from ProjectBatch at %d", i)
		}
	}
	// From its own state, in place (to aliases from).
	again := tensor.New(x.Shape...)
	st2, err := p.ProjectFrom(ctx, again, x, states, states, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st2 {
		if st2[i].Iterations > 10 || st2[i].Iterations*5 > refSt[i].Iterations {
			t.Errorf("image %d restarted from its own state: %d iterations", i, st2[i].Iterations)
		}
		if rel := (st2[i].Objective - refSt[i].Objective) / refSt[i].Objective; rel > 1e-4 {
			t.Errorf("image %d restarted from its own state: objective %.8f, was %.8f", i, st2[i].Objective, refSt[i].Objective)
		}
	}
	big := make([]*State, 3)
	if _, err := p.ProjectFrom(ctx, tensor.New(3, 3, 40, 40), cutTiles(loadImage(t, "img128"), 3, 40, 2), nil, big, nil); err != nil {
		t.Fatal(err)
	}
	nan := &State{Y: append([]float32(nil), states[0].Y...), U: states[0].U, Rho: states[0].Rho}
	nan.Y[5] = float32(math.NaN())
	for _, c := range []struct {
		name     string
		from, to []*State
	}{
		{"other size", big, nil},
		{"non-finite", []*State{nil, nan, nil}, nil},
		{"zero rho", []*State{{Y: states[0].Y, U: states[0].U, Rho: []float64{0}}, nil, nil}, nil},
	} {
		_, err := p.ProjectFrom(ctx, out, x, c.from, c.to, nil)
		var se *StateError
		if !errors.As(err, &se) {
			t.Errorf("%s: err = %v, want *StateError", c.name, err)
		}
	}
	if _, err := p.ProjectFrom(ctx, out, x, states[:2], nil, nil); err == nil {
		t.Error("2 starts for 3 images: no error")
	}
	if _, err := p.ProjectFrom(ctx, out, x, nil, make([]*State, 4), nil); err == nil {
		t.Error("4 states for 3 images: no error")
	}
}
