package experiment

import (
	"errors"
	"testing"

	"github.com/stl-defense/stl/defense"
)

// TestEvaluationRoute: each route's recorded settings with the defaults
// filled in, a user's options recorded as given, and the errors.
func TestEvaluationRoute(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  defense.GradientOptions
		want string // "" for no settings
	}{
		{defense.RouteBPDA, defense.GradientOptions{}, ""},
		{defense.RouteImplicit, defense.GradientOptions{}, `{"cg_max_iter":500,"cg_tol":0.000001,"cluster":"vote"}`},
		{defense.RouteImplicit, defense.GradientOptions{CGTol: 1e-4, CGMaxIter: 50, Cluster: defense.ClusterEOT}, `{"cg_max_iter":50,"cg_tol":0.0001,"cluster":"eot"}`},
		{defense.RouteUnrolled, defense.GradientOptions{}, `{"cluster":"vote","iterations":0}`},
		{defense.RouteUnrolled, defense.GradientOptions{Iterations: 40}, `{"cluster":"vote","iterations":40}`},
	} {
		r, err := EvaluationRoute(c.name, c.opt)
		if err != nil {
			t.Fatalf("%s %+v: %v", c.name, c.opt, err)
		}
		if r.Name != c.name || string(r.Settings) != c.want || r.Backward == nil {
			t.Errorf("%s %+v: route %q settings %s, want %s", c.name, c.opt, r.Name, r.Settings, c.want)
		}
	}
	if _, err := EvaluationRoute("magic", defense.GradientOptions{}); !errors.As(err, new(*defense.UnknownRouteError)) {
		t.Errorf("unknown route: %v", err)
	}
	for _, bad := range []defense.GradientOptions{{CGTol: -1}, {CGMaxIter: -2}, {Iterations: -1}, {Cluster: "all"}} {
		if _, err := EvaluationRoute(defense.RouteImplicit, bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	if _, err := EvaluationRoutes([]string{"bpda", "implicit", "bpda"}, defense.GradientOptions{}); err == nil {
		t.Error("a route given twice accepted")
	}
	rs, err := EvaluationRoutes([]string{"bpda", "unrolled"}, defense.GradientOptions{})
	if err != nil || len(rs) != 2 || rs[1].Name != "unrolled" {
		t.Errorf("routes %v, %v", rs, err)
	}
}
