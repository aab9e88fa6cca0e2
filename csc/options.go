package csc

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/admm"
)

// Options configures CBPDN. The defaults are SPORCO's for ConvBPDN (commit
// 52c20b55), with MaxIter 200 and RelStopTol 5e-3 as in the paper's
// reference implementation, so that results are comparable.
type Options struct {
	// Lambda is the l1 weight (0.2, the paper's value for CIFAR-10).
	Lambda float64
	// Rho0 is the initial ADMM penalty; 0 means SPORCO's 50*Lambda + 1.
	Rho0 float64
	// ADMM holds the loop settings: MaxIter 200, RelStopTol 5e-3,
	// relaxation 1.8, adaptive rho every iteration with residual ratio
	// 1.2 and maximum scaling 1000. RsdlTarget 0 means SPORCO's
	// 1 + 18.3^(log10(Lambda)+1).
	ADMM admm.Options
	// Workers is the number of goroutines of the batch functions; 0 means
	// runtime.GOMAXPROCS(0). Results do not depend on it.
	Workers int
	// Method is the algorithm: MethodADMM (the zero value, SPORCO's
	// ADMM) or MethodActiveSet (a working-set solver stopped by a
	// certified duality gap; see Method). With MethodActiveSet, ADMM
	// holds only MaxIter, the bound on its outer iterations, and a
	// Recorder sees no iterations.
	Method Method `json:",omitempty"`
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{Lambda: 0.2, ADMM: admm.DefaultOptions()}
}

// AndersonMemory, AcceleratedRhoPeriod and AcceleratedRelStopTol are the
// settings Accelerated applies (chosen by measurement on 32x32 and 64x64
// highpass tiles; docs/csc.md).
const (
	AndersonMemory        = 2
	AcceleratedRhoPeriod  = 10
	AcceleratedRelStopTol = 3e-3
)

// Accelerated returns o with the accelerated CBPDN solver: Anderson
// acceleration of the ADMM iteration with memory AndersonMemory (see
// admm.Options.Anderson) and the residual-balancing rho update every
// AcceleratedRhoPeriod iterations instead of every iteration (each rho
// change perturbs the map Anderson extrapolates). The stopping rule is
// SPORCO's with RelStopTol AcceleratedRelStopTol (when o's is the default
// 5e-3): at 5e-3 the accelerated iterates stop up to 6e-4 relative above
// the plain solver's objective on some tiles; at 3e-3 they stop within
// 1e-4 of it on every tile measured (csc's tests assert it).
func (o Options) Accelerated() Options {
	o.ADMM.Anderson = AndersonMemory
	o.ADMM.RhoPeriod = AcceleratedRhoPeriod
	if o.ADMM.RelStopTol == admm.DefaultOptions().RelStopTol {
		o.ADMM.RelStopTol = AcceleratedRelStopTol
	}
	return o
}

// WarmRelStopTol is the relative stopping tolerance of a warm-started
// solve (Projection.ProjectFrom) when the Options' is the default 5e-3. A
// warm start begins with small residuals, and SPORCO's rule at 5e-3 then
// stopped up to 5e-4 (relative) above a cold start's objective on
// perturbed 32x32 and 64x64 tiles; at 4e-3 it stopped within 5e-5 of it
// on every tile measured (docs/csc.md; csc's tests assert 1e-4).
const WarmRelStopTol = 4e-3

// warmOptions returns the loop options a for a warm-started solve.
func (o Options) warmOptions(a admm.Options) admm.Options {
	if o.ADMM.RelStopTol == admm.DefaultOptions().RelStopTol {
		a.RelStopTol = WarmRelStopTol
	}
	return a
}

// Validate returns an *OptionError (or the ADMM options' error) for the
// first invalid field.
func (o Options) Validate() error {
	if !(o.Lambda > 0) || math.IsInf(o.Lambda, 0) {
		return &OptionError{Field: "Lambda", Value: o.Lambda, Want: "finite, > 0"}
	}
	if math.IsNaN(o.Rho0) || math.IsInf(o.Rho0, 0) || o.Rho0 < 0 {
		return &OptionError{Field: "Rho0", Value: o.Rho0, Want: "finite, >= 0 (0 = 50*Lambda+1)"}
	}
	if o.Workers < 0 {
		return &OptionError{Field: "Workers", Value: o.Workers, Want: ">= 0"}
	}
	if o.Method != MethodADMM && o.Method != MethodActiveSet {
		return &OptionError{Field: "Method", Value: o.Method, Want: "MethodADMM or MethodActiveSet"}
	}
	return o.ADMM.Validate()
}

// rho0 returns the initial penalty (SPORCO: 50*lambda + 1).
func (o Options) rho0() float64 {
	if o.Rho0 > 0 {
		return o.Rho0
	}
	return 50*o.Lambda + 1
}

// admmOptions returns the loop options with SPORCO's residual target for
// ConvBPDN filled in.
func (o Options) admmOptions() admm.Options {
	a := o.ADMM
	if a.RsdlTarget == 0 {
		a.RsdlTarget = 1 + math.Pow(18.3, math.Log10(o.Lambda)+1)
	}
	return a
}

// OptionError reports an invalid option value.
type OptionError struct {
	Field string
	Value any
	Want  string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("csc: option %s = %v: want %s", e.Field, e.Value, e.Want)
}
