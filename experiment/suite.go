package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/internal/safefile"
)

// WhiteBoxSuiteSettings configure the adaptive evaluation suite a run adds
// to its white-box table (Config.WhiteBoxSuite): the suite of `stl
// evaluate` (package experiment/evaluate: PGD and APGD on several losses
// through each gradient route, Square, transfer, a noise control, the
// per-image worst case and the automatic checks) on every row of the
// Table 4 form, at the Table 4 budget (L-infinity 0.031), with PGD's
// Config.WhiteBoxSteps iterations, EOT over Config.EOTDraws draws and the
// run's seed, on the white-box images (Config.WhiteBoxSubset). Each row is
// a cached stage; inside it each finished attack is kept, so that an
// interrupted stage resumes attack by attack. Zero values take the
// defaults; no Attacks (default) runs no suite.
type WhiteBoxSuiteSettings struct {
	// Attacks are the suite's attacks, names of evaluate.AttackNames
	// ("pgd-ce", "apgd-cw", "square", ...), or "all". Default: none.
	Attacks []string `json:"attacks,omitempty" yaml:"attacks"`
	// Routes are the gradient routes through the defense
	// (defense.GradientRoutes). "bpda" takes the defense's own backward
	// pass where it has one (MagNet), the identity otherwise, as the
	// Table 4 attack does; "implicit" and "unrolled" (the exact gradients
	// of the STL) apply to the STL rows (with or without adversarial
	// training) only, the other rows being attacked through bpda. Default
	// ["bpda"].
	Routes []string `json:"routes,omitempty" yaml:"routes"`
	// APGDSteps is APGD's N_iter; 0 takes 100 (Croce and Hein 2020).
	APGDSteps int `json:"apgd_steps,omitempty" yaml:"apgd_steps"`
	// SquareQueries is Square's query budget per image; 0 takes 1000.
	SquareQueries int `json:"square_queries,omitempty" yaml:"square_queries"`
	// SquareImages runs Square on a class-balanced subset of this many of
	// the white-box images; 0 (default) on all.
	SquareImages int `json:"square_images,omitempty" yaml:"square_images"`
	// EvalDraws is the number of times each image is classified through a
	// randomized defense, counted correct only when every draw is; 0
	// takes 10 (evaluate.DefaultOptions).
	EvalDraws int `json:"eval_draws,omitempty" yaml:"eval_draws"`
	// CGTol, CGMaxIter, UnrollIterations and ClusterGradient are the exact
	// routes' options (defense.GradientOptions: CGTol, CGMaxIter,
	// Iterations, Cluster); zero values take its defaults (1e-6, 500, the
	// forward run's iterations, "vote").
	CGTol            float64 `json:"cg_tol,omitempty" yaml:"cg_tol"`
	CGMaxIter        int     `json:"cg_max_iter,omitempty" yaml:"cg_max_iter"`
	UnrollIterations int     `json:"unroll_iterations,omitempty" yaml:"unroll_iterations"`
	ClusterGradient  string  `json:"cluster_gradient,omitempty" yaml:"cluster_gradient"`
	// WarmStart starts the projections of the attacks through STL and
	// STL (cluster) from the previous query's state of the same image
	// (evaluate.Options.WarmStart). Default false (cold starts; every key
	// as before the setting existed).
	WarmStart bool `json:"warm_start,omitempty" yaml:"warm_start"`
}

// active reports whether the run has a suite.
func (s WhiteBoxSuiteSettings) active() bool { return len(s.Attacks) > 0 }

// attacks returns the suite's attack names ("all" expanded).
func (s WhiteBoxSuiteSettings) attacks() []string {
	if len(s.Attacks) == 1 && s.Attacks[0] == "all" {
		return slices.Clone(evaluate.AttackNames)
	}
	return slices.Clone(s.Attacks)
}

// routes returns the route names, ["bpda"] by default.
func (s WhiteBoxSuiteSettings) routes() []string {
	if len(s.Routes) == 0 {
		return []string{defense.RouteBPDA}
	}
	return slices.Clone(s.Routes)
}

// gradient returns the exact routes' options.
func (s WhiteBoxSuiteSettings) gradient() defense.GradientOptions {
	return defense.GradientOptions{CGTol: s.CGTol, CGMaxIter: s.CGMaxIter, Iterations: s.UnrollIterations, Cluster: defense.ClusterGradient(s.ClusterGradient)}
}

// options returns the evaluation's options for the run c (without Dir,
// Key and Progress, which the stage sets): under a rounding protocol
// ("release") or Config.Round8 the suite judges 8-bit images
// (evaluate.Options.Round8).
func (s WhiteBoxSuiteSettings) options(c Config) evaluate.Options {
	o := evaluate.DefaultOptions()
	o.Budgets = []attack.Budget{{Norm: attack.LInf, Eps: whiteBoxEps}}
	o.Attacks = s.attacks()
	o.PGDSteps, o.EOTDraws, o.Seed = c.WhiteBoxSteps, c.EOTDraws, uint64(c.Seed)
	o.Round8 = c.round8() // the release protocol's or Config.Round8's rounding, as the Table 4 images get it
	o.WarmStart = s.WarmStart
	var iters []int
	for _, st := range o.IterationSteps {
		if st < o.PGDSteps {
			iters = append(iters, st)
		}
	}
	o.IterationSteps = iters
	for _, f := range []struct{ dst, v *int }{{&o.APGDSteps, &s.APGDSteps}, {&o.SquareQueries, &s.SquareQueries}, {&o.SquareImages, &s.SquareImages}, {&o.EvalDraws, &s.EvalDraws}} {
		if *f.v > 0 {
			*f.dst = *f.v
		}
	}
	return o
}

// validate checks the settings against the run c.
func (s WhiteBoxSuiteSettings) validate(c Config) error {
	bad := func(format string, v ...any) error {
		return &ConfigError{"whitebox_suite", fmt.Sprintf(format, v...)}
	}
	if s.active() && !c.WhiteBox {
		return bad("without whitebox: the suite evaluates the rows of the white-box table")
	}
	if !s.active() {
		if len(s.Routes) != 0 || s.APGDSteps != 0 || s.SquareQueries != 0 || s.SquareImages != 0 || s.EvalDraws != 0 ||
			s.CGTol != 0 || s.CGMaxIter != 0 || s.UnrollIterations != 0 || s.ClusterGradient != "" || s.WarmStart {
			return bad("settings without attacks: list the suite's attacks (or \"all\")")
		}
		return nil
	}
	for i, a := range s.Attacks {
		if !(slices.Contains(evaluate.AttackNames, a) || a == "all" && len(s.Attacks) == 1) || slices.Contains(s.Attacks[:i], a) {
			return bad("attack %q: want \"all\" or distinct names among %s", a, strings.Join(evaluate.AttackNames, ", "))
		}
	}
	if s.APGDSteps < 0 || s.SquareQueries < 0 || s.SquareImages < 0 || s.EvalDraws < 0 {
		return bad("negative value in %+v", s)
	}
	if _, err := EvaluationRoutes(s.routes(), s.gradient()); err != nil {
		return bad("%v", err)
	}
	if err := s.options(c).Validate(); err != nil {
		return bad("%v", err)
	}
	return nil
}

// suiteBPDA is the suite's bpda route in a run: the defense's own backward
// pass where it has one (attack.Approx, as MagNet's reformer), else the
// identity, as the Table 4 attack (DefaultBackend's Adaptive) takes it.
var suiteBPDA = evaluate.Route{Name: defense.RouteBPDA, Backward: func(t attack.Transform) (attack.Approx, error) {
	a, _ := t.(attack.Approx)
	return a, nil
}}

// exactRoutes reports whether the STL's exact gradient routes apply to
// rw: STL, STL (cluster) and their adversarially trained rows.
func (rw *row) exactRoutes() bool {
	return rw.name == RowSTL || rw.name == RowSTLCluster || rw.atBase != nil
}

// suiteRoutes returns the routes the suite attacks rw through: every
// route of all for the STL rows, bpda (suiteBPDA) for the others.
func suiteRoutes(rw *row, all []evaluate.Route) []evaluate.Route {
	var out []evaluate.Route
	for _, rt := range all {
		switch {
		case rt.Name == defense.RouteBPDA:
			out = append(out, suiteBPDA)
		case rw.exactRoutes():
			out = append(out, rt)
		}
	}
	if len(out) == 0 {
		out = []evaluate.Route{suiteBPDA}
	}
	return out
}

// suiteStage names the suite's stage of a row.
func suiteStage(rowName string) string { return "whitebox-suite-" + slug(rowName) }

// whiteBoxSuite runs the suite (Config.WhiteBoxSuite) on every row of the
// white-box table, each row a cached stage "whitebox-suite-<row>" holding
// the evaluation's report.json. The attacks of unfinished stages are kept
// in the checkpoints directory (evaluate.Options.Dir, shared by the rows,
// so that the classifier alone, attacked once per row as the base its
// defense must not weaken, is attacked once per classifier), removed when
// every row is done.
func (r *runner) whiteBoxSuite(ctx context.Context) error {
	s := r.cfg.WhiteBoxSuite
	if !r.cfg.WhiteBox || !s.active() {
		return nil
	}
	routes, err := EvaluationRoutes(s.routes(), s.gradient())
	if err != nil {
		return err
	}
	o := s.options(r.cfg)
	r.describe("white-box suite (stl evaluate)", map[string]any{"options": o, "routes": routeSettings(routes)})
	dir := filepath.Join(r.dir, CheckpointsDir, "whitebox-suite")
	done := true
	for _, rw := range r.whiteBoxRows() {
		r.next("white-box suite on " + rw.name)
		if err := r.suiteRow(ctx, rw, o, suiteRoutes(rw, routes), dir); err != nil {
			return err
		}
		done = done && (rw.suite != nil || rw.whiteBoxMissing() != "")
	}
	if done {
		r.dropCheckpoint(dir)
	}
	return nil
}

// routeSettings lists routes by name with their settings, for keys and
// the report.
func routeSettings(routes []evaluate.Route) []map[string]any {
	var out []map[string]any
	for _, rt := range routes {
		m := map[string]any{"name": rt.Name}
		if rt.Settings != nil {
			m["settings"] = rt.Settings
		}
		out = append(out, m)
	}
	return out
}

// suiteRow computes (or reuses) the suite's report on one row, against its
// retrained classifier or the vanilla one, as the white-box table does.
// A failure makes the row's suite cells missing; only ctx's error is
// returned.
func (r *runner) suiteRow(ctx context.Context, rw *row, o evaluate.Options, routes []evaluate.Route, dir string) error {
	if why := rw.whiteBoxMissing(); why != "" {
		rw.suiteMissing = why
		return nil
	}
	m, mKey := rw.model, rw.modelKey
	if m == nil {
		m, mKey = r.vanilla, r.vanillaKey
	}
	t := evaluate.Target{Model: m, ModelName: string(mKey)}
	if !rw.plain() {
		t.NewDefense = func(seed uint64) (attack.Transform, error) { return rw.newT(seed) }
		t.DefenseName, t.DefenseKey, t.Routes = rw.name, string(rw.key), routes
	}
	stage := suiteStage(rw.name)
	cfg, deps, key, err := r.suiteKey(rw, o, routes, mKey)
	if err != nil {
		return err
	}
	out, _, err := r.store.Do(ctx, stage, key, cfg, deps, func(ctx context.Context, out string) error {
		o.Dir, o.Key, o.Progress = dir, string(mKey), r.rep
		rep, err := evaluate.Run(ctx, t, r.wbX, r.wbY, o)
		if err != nil {
			return err
		}
		return safefile.Write(filepath.Join(out, "report.json"), func(w io.Writer) error { return evaluate.WriteJSON(w, rep) })
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		rw.suite, err = readSuiteReport(filepath.Join(out, "report.json"), len(r.wbY))
	}
	if err != nil {
		rw.suite, rw.suiteMissing = nil, "the white-box suite failed: "+err.Error()
	}
	return nil
}

// suiteKey returns the configuration, dependencies and key of a row's
// suite stage with the evaluation's options o (the settings of
// Config.WhiteBoxSuite and the run's, Round8 included when set), its
// routes and the classifier's key mKey.
func (r *runner) suiteKey(rw *row, o evaluate.Options, routes []evaluate.Route, mKey cache.Key) (map[string]any, []cache.Key, cache.Key, error) {
	deps := []cache.Key{mKey, r.wbSubsetKey}
	cfg := map[string]any{"options": o}
	if !rw.plain() {
		deps = append(deps, rw.key)
		cfg["routes"] = routeSettings(routes)
		if rw.backward != "" {
			cfg["backward"] = rw.backward
		}
	}
	key, err := cache.NewKey(suiteStage(rw.name), cfg, deps...)
	return cfg, deps, key, err
}

// readSuiteReport reads a stage's report of n images.
func readSuiteReport(path string, n int) (*evaluate.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep evaluate.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Images != n || len(rep.Budgets) != 1 {
		return nil, fmt.Errorf("%s: %d images and %d budgets, want %d and 1", path, rep.Images, len(rep.Budgets), n)
	}
	return &rep, nil
}
