package evaluate

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/tensor"
)

// Route is one way of differentiating through the defense: the backward
// pass attack.BPDA uses for it.
type Route struct {
	// Name names the route in reports, e.g. "bpda".
	Name string
	// Backward returns the backward pass through the defense t (each
	// attack draws its own defense); nil, or a nil Approx, is the identity
	// (BPDA, Athalye et al. 2018).
	Backward func(t attack.Transform) (attack.Approx, error)
	// Settings are the options that shape the backward pass (JSON), for
	// the report and the cache keys: attacks through routes of the same
	// name with other settings are not reloaded for each other. nil when
	// there are none (BPDA).
	Settings json.RawMessage
}

// RouteBPDA is the identity backward pass, the route every defense has.
var RouteBPDA = Route{Name: "bpda"}

// routeExact names the gradient of the undefended classifier itself.
const routeExact = "exact"

// Target is what an evaluation attacks: a classifier, alone or behind a
// defense.
type Target struct {
	// Model is the classifier (required). Without a defense it is what is
	// evaluated; with one it is also evaluated alone, as the base the
	// defense must not weaken and the source of the transfer attack.
	Model     attack.Model
	ModelName string
	// NewDefense returns the defense in front of Model, its random
	// numbers (when it draws any) seeded with seed; every attack and
	// every evaluation draws a fresh one, so that results do not depend
	// on which attacks a resumed evaluation reloads. nil: no defense.
	NewDefense  func(seed uint64) (attack.Transform, error)
	DefenseName string
	// DefenseKey, when not empty, identifies the defense in the cache keys
	// of the defended classifier's attacks only, so that Options.Key may
	// identify the classifier alone and evaluations of several defenses
	// in front of one classifier, sharing Options.Dir, compute its
	// undefended suite once. Default "": Options.Key identifies both.
	DefenseKey string
	// Routes are the gradient routes through the defense, each attacked
	// by every gradient attack. Default (nil): RouteBPDA.
	Routes []Route
}

// subject is one classifier under evaluation: the undefended Model, or
// Model behind the defense.
type subject struct {
	name     string // "undefended" or "defended"
	defended bool
	routes   []Route
}

const (
	subjUndefended = "undefended"
	subjDefended   = "defended"
)

// The subjects of AttackResult.Subject: the classifier alone and behind
// the defense.
const (
	SubjectUndefended = subjUndefended
	SubjectDefended   = subjDefended
)

// counter counts the images the forward and the gradient passes of a
// model carried. It is safe for concurrent use.
type counter struct {
	attack.Model
	mu            sync.Mutex
	forward, grad int
}

func (c *counter) add(x *tensor.Tensor, grad bool) {
	if x == nil || len(x.Shape) == 0 {
		return
	}
	c.mu.Lock()
	if grad {
		c.grad += x.Shape[0]
	} else {
		c.forward += x.Shape[0]
	}
	c.mu.Unlock()
}

func (c *counter) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	c.add(x, false)
	return c.Model.Logits(ctx, x)
}

func (c *counter) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	c.add(x, true)
	return c.Model.InputGrad(ctx, x, seed)
}

// defense draws a fresh defense seeded with seed; it is nil for the
// undefended subject.
func (t Target) defense(s subject, seed uint64) (attack.Transform, error) {
	if !s.defended {
		return nil, nil
	}
	d, err := t.NewDefense(seed)
	if err != nil {
		return nil, fmt.Errorf("evaluate: defense %s: %w", t.DefenseName, err)
	}
	if d == nil {
		return nil, fmt.Errorf("evaluate: defense %s: none returned", t.DefenseName)
	}
	return d, nil
}

// whiteBox returns the model the gradient attacks of route r attack on s,
// with its defense drawn with seed: the classifier itself, or BPDA through
// the defense with r's backward pass (EOT over eot draws when the defense
// is randomized).
// With warm, the forward pass starts each projection warm (warmed).
func (t Target) whiteBox(s subject, r Route, seed uint64, eot int, warm bool) (attack.Model, error) {
	d, err := t.defense(s, seed)
	if err != nil || d == nil {
		return t.Model, err
	}
	var approx attack.Approx
	if r.Backward != nil {
		if approx, err = r.Backward(d); err != nil {
			return nil, fmt.Errorf("evaluate: route %s through %s: %w", r.Name, d.Name(), err)
		}
	}
	if d, err = warmed(d, warm); err != nil {
		return nil, err
	}
	return attack.Adaptive(d, t.Model, approx, eot)
}

// forward returns the model whose logits classify on s: the classifier, or
// the classifier behind the defense drawn with seed, its projections
// started warm with warm (warmed).
func (t Target) forward(s subject, seed uint64, warm bool) (attack.Model, attack.Transform, error) {
	d, err := t.defense(s, seed)
	if err != nil || d == nil {
		return t.Model, nil, err
	}
	if d, err = warmed(d, warm); err != nil {
		return nil, nil, err
	}
	b, err := attack.NewBPDA(d, t.Model, nil)
	return b, d, err
}

// warmed returns d behind a defense.WarmCache (Options.WarmStart) when
// warm is set and d can start its projections warm, else d.
func warmed(d attack.Transform, warm bool) (attack.Transform, error) {
	w, ok := d.(defense.WarmTransform)
	if !warm || !ok {
		return d, nil
	}
	return defense.NewWarmCache(w, defense.WarmOptions{})
}
