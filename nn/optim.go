package nn

import (
	"math"

	"github.com/stl-defense/stl/internal/option"
)

// Optimizer updates trainable parameters from their gradients. Step uses
// the learning rate lr given by a Schedule; buffers (Param.Buffer) are
// skipped. State returns the optimizer's per-parameter arrays, named after
// the parameters, for checkpoints; the returned slices alias the state.
type Optimizer interface {
	Step(params []*Param, lr float64)
	State(params []*Param) map[string][]float32
}

// SGDOptions configures stochastic gradient descent with momentum.
type SGDOptions struct {
	Momentum    float64 // default 0.9
	Nesterov    bool    // default true
	WeightDecay float64 // L2 coefficient on Param.Decay weights; default 5e-4
}

// DefaultSGDOptions returns momentum 0.9, Nesterov, weight decay 5e-4 (the
// CIFAR recipe of the PyTorch anchor).
func DefaultSGDOptions() SGDOptions {
	return SGDOptions{Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4}
}

// Validate checks the ranges.
func (o SGDOptions) Validate() error {
	switch {
	case o.Momentum < 0 || o.Momentum >= 1:
		return option.New("nn", "SGDOptions.Momentum", o.Momentum, "want [0, 1)")
	case o.Nesterov && o.Momentum == 0:
		return option.New("nn", "SGDOptions.Momentum", o.Momentum, "Nesterov needs a positive momentum")
	case o.WeightDecay < 0:
		return option.New("nn", "SGDOptions.WeightDecay", o.WeightDecay, "want >= 0")
	}
	return nil
}

// SGD is PyTorch's SGD: g = grad + wd w; v = mu v + g; step = g + mu v
// (Nesterov) or v; w -= lr step.
type SGD struct {
	Opts SGDOptions
	vel  map[*Param][]float32
}

// NewSGD validates o and returns an SGD optimizer.
func NewSGD(o SGDOptions) (*SGD, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &SGD{Opts: o, vel: map[*Param][]float32{}}, nil
}

func (s *SGD) v(p *Param) []float32 {
	v := s.vel[p]
	if v == nil {
		v = make([]float32, len(p.W))
		s.vel[p] = v
	}
	return v
}

// Step implements Optimizer.
func (s *SGD) Step(params []*Param, lr float64) {
	mu, lrf := float32(s.Opts.Momentum), float32(lr)
	for _, p := range params {
		if p.Buffer {
			continue
		}
		wd := float32(0)
		if p.Decay {
			wd = float32(s.Opts.WeightDecay)
		}
		v := s.v(p)
		for i, g := range p.G {
			g += wd * p.W[i]
			v[i] = mu*v[i] + g
			if s.Opts.Nesterov {
				g += mu * v[i]
			} else {
				g = v[i]
			}
			p.W[i] -= lrf * g
		}
	}
}

// State implements Optimizer.
func (s *SGD) State(params []*Param) map[string][]float32 {
	m := map[string][]float32{}
	for _, p := range params {
		if !p.Buffer {
			m["velocity."+p.Name] = s.v(p)
		}
	}
	return m
}

// AdamOptions configures Adam (Kingma and Ba 2015).
type AdamOptions struct {
	Beta1, Beta2 float64 // defaults 0.9, 0.999
	Eps          float64 // default 1e-8
	WeightDecay  float64 // decoupled (AdamW) decay on Param.Decay weights; default 0
}

// DefaultAdamOptions returns the paper's defaults.
func DefaultAdamOptions() AdamOptions { return AdamOptions{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// Validate checks the ranges.
func (o AdamOptions) Validate() error {
	switch {
	case o.Beta1 < 0 || o.Beta1 >= 1:
		return option.New("nn", "AdamOptions.Beta1", o.Beta1, "want [0, 1)")
	case o.Beta2 < 0 || o.Beta2 >= 1:
		return option.New("nn", "AdamOptions.Beta2", o.Beta2, "want [0, 1)")
	case o.Eps <= 0:
		return option.New("nn", "AdamOptions.Eps", o.Eps, "want > 0")
	case o.WeightDecay < 0:
		return option.New("nn", "AdamOptions.WeightDecay", o.WeightDecay, "want >= 0")
	}
	return nil
}

// Adam keeps bias-corrected first and second moment estimates:
// w -= lr * mhat / (sqrt(vhat) + eps), plus decoupled weight decay
// w -= lr * wd * w.
type Adam struct {
	Opts AdamOptions
	T    int // steps taken
	m, v map[*Param][]float32
}

// NewAdam validates o and returns an Adam optimizer.
func NewAdam(o AdamOptions) (*Adam, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Adam{Opts: o, m: map[*Param][]float32{}, v: map[*Param][]float32{}}, nil
}

func (a *Adam) mv(p *Param) ([]float32, []float32) {
	if a.m[p] == nil {
		a.m[p], a.v[p] = make([]float32, len(p.W)), make([]float32, len(p.W))
	}
	return a.m[p], a.v[p]
}

// Step implements Optimizer.
func (a *Adam) Step(params []*Param, lr float64) {
	a.T++
	b1, b2 := float32(a.Opts.Beta1), float32(a.Opts.Beta2)
	c1 := 1 - math.Pow(a.Opts.Beta1, float64(a.T))
	c2 := 1 - math.Pow(a.Opts.Beta2, float64(a.T))
	stepSize := float32(lr / c1)
	sc2 := float32(1 / math.Sqrt(c2))
	eps := float32(a.Opts.Eps)
	for _, p := range params {
		if p.Buffer {
			continue
		}
		m, v := a.mv(p)
		decay := float32(0)
		if p.Decay {
			decay = float32(lr * a.Opts.WeightDecay)
		}
		for i, g := range p.G {
			m[i] = b1*m[i] + (1-b1)*g
			v[i] = b2*v[i] + (1-b2)*g*g
			p.W[i] -= stepSize*m[i]/(float32(math.Sqrt(float64(v[i])))*sc2+eps) + decay*p.W[i]
		}
	}
}

// State implements Optimizer (the step count T is saved separately).
func (a *Adam) State(params []*Param) map[string][]float32 {
	st := map[string][]float32{}
	for _, p := range params {
		if !p.Buffer {
			m, v := a.mv(p)
			st["m."+p.Name], st["v."+p.Name] = m, v
		}
	}
	return st
}
