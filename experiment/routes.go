package experiment

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/evaluate"
)

// EvaluationRoute returns the gradient route name through a defense
// ("bpda", "implicit" or "unrolled", defense.GradientRoutes) as the
// adaptive evaluation takes it: for every drawn defense its backward pass
// is defense.GradientRoute(t, name, o) (nil, the identity, for bpda).
// The exact routes exist for STL and STL (cluster) only; through another
// defense the attacks using them fail with an error naming the defense.
//
// The route's Settings record the options that shape it, defaults filled
// in (defense.GradientOptions.Effective): cg_tol and cg_max_iter for the
// implicit route, iterations (0: the forward run's) for the unrolled one,
// and cluster for both; bpda has none. They appear in the evaluation's
// report and in its cache keys. An unknown name is a
// *defense.UnknownRouteError; invalid options an error from
// defense.GradientOptions.Validate.
func EvaluationRoute(name string, o defense.GradientOptions) (evaluate.Route, error) {
	if !slices.Contains(defense.GradientRoutes(), name) {
		return evaluate.Route{}, &defense.UnknownRouteError{Name: name}
	}
	if err := o.Validate(); err != nil {
		return evaluate.Route{}, err
	}
	r := evaluate.Route{Name: name, Backward: func(t attack.Transform) (attack.Approx, error) {
		dt, ok := t.(defense.Transform)
		if !ok {
			return nil, fmt.Errorf("%s is not a defense", t.Name())
		}
		v, err := defense.GradientRoute(dt, name, o)
		if err != nil || v == nil {
			return nil, err // nil: the identity (bpda)
		}
		return v, nil
	}}
	e := o.Effective()
	var settings map[string]any
	switch name {
	case defense.RouteImplicit:
		settings = map[string]any{"cg_tol": e.CGTol, "cg_max_iter": e.CGMaxIter, "cluster": e.Cluster}
	case defense.RouteUnrolled:
		settings = map[string]any{"iterations": e.Iterations, "cluster": e.Cluster}
	}
	if settings != nil {
		b, err := json.Marshal(settings)
		if err != nil {
			return evaluate.Route{}, err
		}
		r.Settings = b
	}
	return r, nil
}

// EvaluationRoutes returns EvaluationRoute of each name, in order; a name
// given twice is an error.
func EvaluationRoutes(names []string, o defense.GradientOptions) ([]evaluate.Route, error) {
	var out []evaluate.Route
	for i, n := range names {
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("gradient route %q given twice", n)
		}
		r, err := EvaluationRoute(n, o)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
