package nn

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/internal/option"
)

// Schedule gives the learning rate for optimizer step `step` of `total`
// (0-based).
type Schedule interface {
	LR(step, total int) float64
}

// Constant is a fixed learning rate.
type Constant float64

// LR implements Schedule.
func (c Constant) LR(_, _ int) float64 { return float64(c) }

// Cosine decays from Base to Min along half a cosine after a linear warm-up
// of Warmup steps (Loshchilov and Hutter 2017, without restarts).
type Cosine struct {
	Base, Min float64
	Warmup    int
}

// LR implements Schedule.
func (c Cosine) LR(step, total int) float64 {
	if step < c.Warmup {
		return c.Base * float64(step+1) / float64(c.Warmup)
	}
	span := total - c.Warmup
	if span <= 1 {
		return c.Base
	}
	f := float64(step-c.Warmup) / float64(span-1)
	return c.Min + (c.Base-c.Min)*0.5*(1+math.Cos(math.Pi*math.Min(f, 1)))
}

// Step multiplies Base by Gamma every Every steps.
type Step struct {
	Base, Gamma float64
	Every       int
}

// LR implements Schedule.
func (s Step) LR(step, _ int) float64 {
	if s.Every <= 0 {
		return s.Base
	}
	return s.Base * math.Pow(s.Gamma, float64(step/s.Every))
}

// OneCycle is the one-cycle policy (Smith and Topin 2018) as in PyTorch's
// OneCycleLR with cosine annealing: from Max/DivFactor up to Max over the
// first PctStart of the steps, then down to Max/(DivFactor*FinalDiv).
type OneCycle struct {
	Max       float64
	PctStart  float64 // default 0.3
	DivFactor float64 // default 25
	FinalDiv  float64 // default 1e4
}

// DefaultOneCycle returns PyTorch's defaults with the given peak.
func DefaultOneCycle(max float64) OneCycle {
	return OneCycle{Max: max, PctStart: 0.3, DivFactor: 25, FinalDiv: 1e4}
}

// Validate checks the ranges.
func (o OneCycle) Validate() error {
	switch {
	case o.Max <= 0:
		return option.New("nn", "OneCycle.Max", o.Max, "want > 0")
	case o.PctStart <= 0 || o.PctStart >= 1:
		return option.New("nn", "OneCycle.PctStart", o.PctStart, "want (0, 1)")
	case o.DivFactor <= 0:
		return option.New("nn", "OneCycle.DivFactor", o.DivFactor, "want > 0")
	case o.FinalDiv <= 0:
		return option.New("nn", "OneCycle.FinalDiv", o.FinalDiv, "want > 0")
	}
	return nil
}

// LR implements Schedule.
func (o OneCycle) LR(step, total int) float64 {
	start := o.Max / o.DivFactor
	end := start / o.FinalDiv
	up := o.PctStart*float64(total) - 1
	anneal := func(a, b, f float64) float64 { return b + (a-b)*0.5*(1+math.Cos(math.Pi*f)) }
	s := float64(step)
	if s <= up {
		if up <= 0 {
			return o.Max
		}
		return anneal(start, o.Max, s/up)
	}
	down := float64(total-1) - up
	if down <= 0 {
		return end
	}
	return anneal(o.Max, end, math.Min((s-up)/down, 1))
}

// ScheduleKind names a learning-rate schedule for TrainOptions.
type ScheduleKind string

// Schedules.
const (
	ScheduleOneCycle ScheduleKind = "onecycle" // DefaultOneCycle(LR)
	ScheduleCosine   ScheduleKind = "cosine"   // Cosine{Base: LR, Warmup: one epoch}
	ScheduleStep     ScheduleKind = "step"     // x0.1 at 50% and 75% of the epochs
	ScheduleConstant ScheduleKind = "constant"
)

func (k ScheduleKind) build(lr float64, stepsPerEpoch, epochs int) (Schedule, error) {
	switch k {
	case ScheduleOneCycle:
		return DefaultOneCycle(lr), nil
	case ScheduleCosine:
		return Cosine{Base: lr, Warmup: stepsPerEpoch}, nil
	case ScheduleStep:
		return stepAt{lr, []int{epochs / 2 * stepsPerEpoch, epochs * 3 / 4 * stepsPerEpoch}}, nil
	case ScheduleConstant:
		return Constant(lr), nil
	}
	return nil, option.New("nn", "Schedule", fmt.Sprintf("%q", k), "want onecycle, cosine, step or constant")
}

type stepAt struct {
	base      float64
	milestone []int
}

func (s stepAt) LR(step, _ int) float64 {
	lr := s.base
	for _, m := range s.milestone {
		if step >= m {
			lr *= 0.1
		}
	}
	return lr
}
