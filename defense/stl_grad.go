package defense

import (
	"context"
	"fmt"
	"slices"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/tensor"
)

// Names of the STL's gradient routes, the backward passes an attack can
// take through STL and STL (cluster). GradientRoutes lists them.
const (
	// RouteBPDA treats the STL as the identity on the backward pass
	// (Athalye et al., ICML 2018, section 4.1), the paper's Table 4
	// setting.
	RouteBPDA = "bpda"
	// RouteImplicit differentiates the CBPDN solution through its
	// optimality conditions on its support (csc.GradImplicit): the exact
	// Jacobian of the converged sparse code, by conjugate gradients with
	// the FFT operators.
	RouteImplicit = "implicit"
	// RouteUnrolled is reverse mode through the ADMM iterations of the
	// forward run with its penalty schedule held fixed (csc.GradUnrolled).
	RouteUnrolled = "unrolled"
)

// gradientRoutes is the registry of route names, in documentation order.
var gradientRoutes = []string{RouteBPDA, RouteImplicit, RouteUnrolled}

// GradientRoutes returns the names GradientRoute accepts: "bpda",
// "implicit", "unrolled" (a new slice).
func GradientRoutes() []string { return slices.Clone(gradientRoutes) }

// VJPer is a transform's backward pass: VJP returns (dT/dx)^T gy at the
// batch x, a new tensor of x's shape (gy has x's shape too). It has the
// method set of attack.Approx, so a VJPer from GradientRoute is the Approx
// of attack.BPDA / attack.Adaptive without package attack importing this
// one.
type VJPer interface {
	VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error)
}

// GradientOptions configures GradientRoute. The zero value means the
// defaults documented per field.
type GradientOptions struct {
	// CGTol is the implicit route's stopping rule, relative to the
	// gradient projected on the support (0: 1e-6; see csc.GradOptions).
	CGTol float64 `json:"cg_tol,omitempty"`
	// CGMaxIter caps the implicit route's conjugate-gradient iterations
	// per image (0: 500). Reaching it returns the partial solution.
	CGMaxIter int `json:"cg_max_iter,omitempty"`
	// Iterations is the unrolled route's K: 0 differentiates the forward
	// run exactly as Apply computes it (its stopping rule included); K > 0
	// runs and differentiates K ADMM iterations without the stopping rule.
	Iterations int `json:"iterations,omitempty"`
	// Cluster is STL (cluster)'s treatment of the cluster choice (""
	// means ClusterVote); ignored by the other transforms.
	Cluster ClusterGradient `json:"cluster,omitempty"`
}

// Validate returns an error for the first invalid field.
func (o GradientOptions) Validate() error {
	if _, err := o.csc(RouteImplicit); err != nil {
		return err
	}
	switch o.Cluster {
	case "", ClusterVote, ClusterEOT:
		return nil
	}
	return fmt.Errorf("defense: gradient option cluster %q: want %q or %q", o.Cluster, ClusterVote, ClusterEOT)
}

// Effective returns o with the defaults its zero fields stand for filled
// in: CGTol 1e-6 and CGMaxIter 500 (csc.DefaultGradOptions) and Cluster
// ClusterVote; Iterations 0 stays 0 (the forward run's own iterations).
// GradientRoute gives the same backward pass for o and o.Effective().
func (o GradientOptions) Effective() GradientOptions {
	g := csc.DefaultGradOptions()
	if o.CGTol == 0 {
		o.CGTol = g.CGTol
	}
	if o.CGMaxIter == 0 {
		o.CGMaxIter = g.CGMaxIter
	}
	if o.Cluster == "" {
		o.Cluster = ClusterVote
	}
	return o
}

// csc returns csc's options for a route with the defaults filled in.
func (o GradientOptions) csc(route string) (csc.GradOptions, error) {
	g := csc.DefaultGradOptions()
	if route == RouteUnrolled {
		g.Method = csc.GradUnrolled
	}
	if o.CGTol != 0 {
		g.CGTol = o.CGTol
	}
	if o.CGMaxIter != 0 {
		g.CGMaxIter = o.CGMaxIter
	}
	g.Iterations = o.Iterations
	if err := g.Validate(); err != nil {
		return g, fmt.Errorf("defense: gradient options: %w", err)
	}
	return g, nil
}

// DifferentiableProjector is a Projector that can differentiate its
// projection; CSCProjector's projectors are.
type DifferentiableProjector interface {
	Projector
	// ProjectVJP returns (dP/dx)^T gy at the (N, C, H, W) batch x, a new
	// tensor, differentiating the CBPDN step by opt.Method and the
	// lowpass split and the output mapping exactly.
	ProjectVJP(ctx context.Context, x, gy *tensor.Tensor, opt csc.GradOptions) (*tensor.Tensor, error)
}

// ProjectVJP implements DifferentiableProjector with csc.Projection.VJP.
func (c cscProjector) ProjectVJP(ctx context.Context, x, gy *tensor.Tensor, opt csc.GradOptions) (*tensor.Tensor, error) {
	g, _, err := c.p.VJP(ctx, nil, x, gy, opt)
	return g, err
}

// UnknownRouteError reports a gradient route name not in GradientRoutes.
type UnknownRouteError struct{ Name string }

func (e *UnknownRouteError) Error() string {
	return fmt.Sprintf("defense: unknown gradient route %q (want one of %v)", e.Name, gradientRoutes)
}

// GradientRoute returns the backward pass named route through t, for
// attack.BPDA's Approx: nil (the identity) for "bpda", whatever t is; for
// "implicit" and "unrolled" a VJPer differentiating t exactly (see the
// route constants and GradientOptions), available for *STL and
// *StratifiedSTL whose projectors are DifferentiableProjectors (those of
// CSCProjector, the default backend's). Other transforms, an unknown
// route or bad options return an error. The VJPer is safe for concurrent
// use when t is; each call costs one forward projection per image (plus
// the stratifier's encoding for STL (cluster)) and the route's backward
// work.
//
// The adaptive evaluation (`stl evaluate`) builds its white-box models
// with exactly this function and signature, and GradientRoutes: keep
// both.
func GradientRoute(t Transform, route string, opt GradientOptions) (VJPer, error) {
	if !slices.Contains(gradientRoutes, route) {
		return nil, &UnknownRouteError{route}
	}
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if route == RouteBPDA {
		return nil, nil
	}
	copt, err := opt.csc(route)
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case *STL:
		p, err := differentiable(t.proj, t.Name())
		if err != nil {
			return nil, err
		}
		copt.Output = outputGrad{t.opt}
		return &stlVJP{t: t, p: p, opt: copt}, nil
	case *StratifiedSTL:
		ps := make([]DifferentiableProjector, len(t.projs))
		for k, p := range t.projs {
			if ps[k], err = differentiable(p, fmt.Sprintf("%s, cluster %d", t.Name(), k)); err != nil {
				return nil, err
			}
		}
		copt.Output = outputGrad{t.opt}
		return &stratifiedVJP{t: t, ps: ps, opt: copt, mode: opt.Cluster}, nil
	case *ClusterSTL:
		p, err := differentiable(t.proj, t.Name())
		if err != nil {
			return nil, err
		}
		copt.Output = outputGrad{t.opt}
		return &stlVJP{t: &t.STL, p: p, opt: copt}, nil
	case nil:
		return nil, fmt.Errorf("defense: GradientRoute: nil transform")
	}
	return nil, fmt.Errorf("defense: transform %s has no %q gradient route (only STL and STL (cluster) do; use %q)", t.Name(), route, RouteBPDA)
}

func differentiable(p Projector, name string) (DifferentiableProjector, error) {
	d, ok := p.(DifferentiableProjector)
	if !ok {
		return nil, fmt.Errorf("defense: the projector of %s cannot differentiate its projection", name)
	}
	return d, nil
}

// checkGrad checks a VJP's arguments: x as the transform's Apply does,
// gy of x's shape.
func checkGrad(op string, x, gy *tensor.Tensor, channels int, spec *Defense) error {
	if err := checkInput(op, x, channels, spec); err != nil {
		return err
	}
	if gy == nil || !tensor.SameShape(x, gy) || len(gy.Data) != len(x.Data) {
		var got []int
		if gy != nil {
			got = gy.Shape
		}
		return &tensor.ShapeError{Op: op + ": output gradient", Want: x.Shape, Got: got}
	}
	return nil
}

// stlVJP is the exact backward pass of the universal STL.
type stlVJP struct {
	t   *STL
	p   DifferentiableProjector
	opt csc.GradOptions
}

// VJP implements VJPer.
func (s *stlVJP) VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkGrad("defense.STL VJP", x, gy, 0, s.t.spec); err != nil {
		return nil, err
	}
	if x.Shape[0] == 0 {
		return tensor.New(x.Shape...), nil
	}
	return s.p.ProjectVJP(ctx, x, gy, s.opt)
}

// stratifiedVJP is the exact backward pass of STL (cluster).
type stratifiedVJP struct {
	t    *StratifiedSTL
	ps   []DifferentiableProjector
	opt  csc.GradOptions
	mode ClusterGradient
}

// VJP implements VJPer: with ClusterVote, image i's gradient goes through
// the dictionary of its voted cluster (the vote is piecewise constant in
// the image: this is the exact derivative almost everywhere); with
// ClusterEOT, through the dictionary of every cluster among its K nearest
// training codes, weighted by their share.
func (s *stratifiedVJP) VJP(ctx context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkGrad("defense.StratifiedSTL VJP", x, gy, s.t.strat.channels, s.t.spec); err != nil {
		return nil, err
	}
	n := x.Shape[0]
	if n == 0 {
		return tensor.New(x.Shape...), nil
	}
	// weights[i][k]: the weight of cluster k for image i.
	weights := make([][]float64, n)
	if s.mode == ClusterEOT {
		shares, err := s.t.strat.shares(ctx, x)
		if err != nil {
			return nil, err
		}
		for i := range weights {
			weights[i] = make([]float64, len(s.ps))
			for k := range min(len(s.ps), shares.Shape[1]) {
				weights[i][k] = float64(shares.Data[i*shares.Shape[1]+k])
			}
		}
	} else {
		clusters, err := s.t.strat.assign(ctx, x)
		if err != nil {
			return nil, err
		}
		for i, k := range clusters {
			weights[i] = make([]float64, len(s.ps))
			weights[i][k] = 1
		}
	}
	per := len(x.Data) / n
	out := tensor.New(x.Shape...)
	acc := make([]float64, len(x.Data))
	for k, p := range s.ps {
		var idx []int
		for i, w := range weights {
			if w[k] != 0 {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		xs, gs := gather(x, idx), gather(gy, idx)
		g, err := p.ProjectVJP(ctx, xs, gs, s.opt)
		if err != nil {
			return nil, fmt.Errorf("defense: STL (cluster) %d: %w", k, err)
		}
		for j, i := range idx {
			w := weights[i][k]
			for q, v := range g.Data[j*per : (j+1)*per] {
				acc[i*per+q] += w * float64(v)
			}
		}
	}
	for i, v := range acc {
		out.Data[i] = float32(v)
	}
	return out, nil
}
