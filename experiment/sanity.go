package experiment

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/cache"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// The white-box sanity checks a careful reviewer expects of an adaptive
// evaluation (Athalye et al., ICML 2018, and Carlini et al., "On
// Evaluating Adversarial Robustness", 2019): accuracy against the number of
// PGD-through-BPDA iterations (more iterations never help the defense),
// against the L-infinity budget (it reaches 0 at a large enough budget), a
// random-noise control (sign noise at the same budget, which should hurt
// far less than the attack) and a transfer control (PGD on the vanilla
// classifier, fed through the defense: the grey-box setting, which should
// hurt less than the white-box attack). They run with Config.WhiteBox, on
// No Defense, STL and STL (cluster), and on every baseline too with
// Config.SanityBaselines (off by default: with EOT over 10 draws for the
// randomized ones they multiply the white-box cost). Each baseline is
// attacked as in the white-box table, through Backend.Adaptive. With
// Config.WhiteBoxSubset they run, as the white-box table does, on a
// class-balanced subset of the attacked images. They use the cross-entropy
// PGD only (Backend.PGD, and the Table 4 stage of LossCE for the 0.031
// point and the transfer's source), whatever Config.WhiteBoxLosses adds:
// they check that the attack is run correctly, and repeating them for the
// CW loss would double their cost (about 6 times the Table 4 attack per
// row) to check the same loop with another seed function.
var (
	// SanitySteps are the PGD iteration counts of the iterations check,
	// those below Config.WhiteBoxSteps; WhiteBoxSteps itself (the Table 4
	// attack) is always the last point.
	SanitySteps = []int{1, 5, 10, 20}
	// SanityEps are the L-infinity budgets of the budget check, each
	// attacked with WhiteBoxSteps iterations; 0.031 is the Table 4 attack.
	SanityEps = []float64{0.008, 0.016, 0.031, 0.063, 0.125, 0.25}
)

// whiteBoxEps is the L-infinity budget of the paper's Table 4.
const whiteBoxEps = 0.031

// sanityNearZero is the accuracy at the largest budget under which the
// budget check counts as having reached 0: stl evaluate's.
var sanityNearZero = evaluate.DefaultThresholds().LargeMaxAcc

// Column names of the controls table.
const (
	colSanityAttack   = "PGD-BPDA (white box)"
	colSanityNoise    = "random sign noise"
	colSanityTransfer = "transfer from vanilla (grey box)"
)

// sanityRows are the rows the sanity checks always run on.
var sanityRows = []string{NoDefense, RowSTL, RowSTLCluster}

// sanityRow reports whether the sanity checks run on rw: the rows of
// sanityRows, and the baselines with Config.SanityBaselines.
func (r *runner) sanityRow(rw *row) bool {
	return contains(sanityRows, rw.name) || (r.cfg.SanityBaselines && rw.baseline)
}

// sanitySet is one row's sanity-check images, each T(x') for the row's
// transform T (the identity for No Defense), by column.
type sanitySet struct {
	steps    map[int]*tensor.Tensor
	eps      map[float64]*tensor.Tensor
	noise    *tensor.Tensor
	transfer *tensor.Tensor
	missing  map[string]string // why a column is missing, by column name
}

// sanityStepList returns the iteration counts of the iterations check.
func (c Config) sanityStepList() []int {
	var out []int
	for _, s := range SanitySteps {
		if s < c.WhiteBoxSteps {
			out = append(out, s)
		}
	}
	return append(out, c.WhiteBoxSteps)
}

func stepsCol(s int) string {
	if s == 1 {
		return "1 iteration"
	}
	return fmt.Sprintf("%d iterations", s)
}

func epsCol(e float64) string { return "eps " + strconv.FormatFloat(e, 'g', -1, 64) }

// sanityWeight is the planned cost of one row's sanity checks (planWeights).
func (c Config) sanityWeight(nsub, per, px float64) float64 {
	steps := 0
	for _, s := range c.sanityStepList() {
		steps += s
	}
	steps += (len(SanityEps) - 1) * c.WhiteBoxSteps
	return nsub * float64(steps) * (per + 6e-3*px)
}

// sanity computes the sanity checks of the rows sanityRow selects, after
// whiteBox. Each attacked or perturbed set is a cached stage.
func (r *runner) sanity(ctx context.Context) error {
	if !r.cfg.WhiteBox {
		return nil
	}
	var source *row // No Defense, whose white-box examples the transfer control reuses
	for _, rw := range r.rows {
		if rw.name == NoDefense {
			source = rw
		}
	}
	for _, rw := range r.rows {
		if !r.sanityRow(rw) {
			continue
		}
		r.next("white-box sanity checks on " + rw.name)
		s := &sanitySet{steps: map[int]*tensor.Tensor{}, eps: map[float64]*tensor.Tensor{}, missing: map[string]string{}}
		rw.sanity = s
		if why := r.sanityUnavailable(rw); why != "" {
			s.missing[""] = why
			continue
		}
		if err := r.newSanityRun(rw, s, source).run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// sanityUnavailable says why the sanity checks cannot run on rw, or "".
func (r *runner) sanityUnavailable(rw *row) string {
	switch {
	case rw.wbAdv == nil && rw.wbMissing != "":
		return rw.wbMissing
	case rw.wbAdv == nil:
		return "the white-box attack is not available"
	case r.b.PGD == nil:
		return "no PGD at other budgets in this build"
	}
	return ""
}

// sanityRun computes the sanity checks of one row into its sanitySet.
type sanityRun struct {
	r    *runner
	rw   *row
	s    *sanitySet
	m    attack.Model // the classifier behind the defense
	deps []cache.Key  // the keys every stage of the row depends on
	// source is No Defense, whose white-box examples the transfer control
	// feeds through the defense.
	source *row
}

// newSanityRun prepares the sanity checks of rw: its classifier is the
// one its white-box examples were computed against.
func (r *runner) newSanityRun(rw *row, s *sanitySet, source *row) *sanityRun {
	m, mKey := rw.model, rw.modelKey
	if rw.wbVanilla || rw.name == NoDefense {
		m, mKey = r.vanilla, r.vanillaKey
	}
	deps := []cache.Key{mKey, r.wbSubsetKey}
	if rw.name != NoDefense {
		deps = append(deps, rw.key)
	}
	return &sanityRun{r: r, rw: rw, s: s, m: m, deps: deps, source: source}
}

// run computes the row's checks in turn.
func (sr *sanityRun) run(ctx context.Context) error {
	for _, check := range []func(context.Context) error{sr.iterations, sr.budgets, sr.noise, sr.transfer} {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// sanityImages computes perturbed images of the white-box subset for the
// row's transform T (nil for No Defense).
type sanityImages func(ctx context.Context, t defense.Transform) (*tensor.Tensor, error)

// stage computes T(f(T)) for the row's transform T, seeded by the stage
// (nil for No Defense), and caches it as the stage name-<row>.
func (sr *sanityRun) stage(ctx context.Context, name string, cfg map[string]any, extra []cache.Key, f sanityImages) (*tensor.Tensor, error) {
	r, rw := sr.r, sr.rw
	stage := name + "-" + slug(rw.name)
	cfg["seed"] = r.cfg.Seed
	d := append(append([]cache.Key(nil), sr.deps...), extra...)
	key, err := cache.NewKey(stage, cfg, d...)
	if err != nil {
		return nil, err
	}
	dir, _, err := r.store.Do(ctx, stage, key, cfg, d, func(ctx context.Context, out string) error {
		var t defense.Transform
		if rw.name != NoDefense {
			if t, err = rw.newT(stageSeed(r.cfg.Seed, stage)); err != nil {
				return err
			}
		}
		x, err := f(ctx, t)
		if err != nil {
			return err
		}
		if t != nil {
			if x, err = applyBatched(ctx, t, x, rw.name+" on "+name, r.rep, nil); err != nil {
				return err
			}
		}
		return npy.WriteFile(filepath.Join(out, "images.npy"), x)
	})
	if err != nil {
		return nil, err
	}
	return readImages(filepath.Join(dir, "images.npy"), r.wbX.Shape)
}

// failed records a column's failure; it returns ctx's error.
func (sr *sanityRun) failed(ctx context.Context, col string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sr.s.missing[col] = err.Error()
	return nil
}

// pgd returns PGD at eps with steps iterations against the row's defended
// classifier through BPDA (EOT), its stage configuration, and the images
// it computes.
func (sr *sanityRun) pgd(eps float64, steps int) (map[string]any, sanityImages, error) {
	r := sr.r
	_, settings, err := r.b.PGD(r.cfg, eps, steps)
	cfg := map[string]any{"attack": settings, "eot_draws": r.cfg.EOTDraws}
	if sr.rw.backward != "" {
		cfg["backward"] = sr.rw.backward
	}
	return cfg, func(ctx context.Context, t defense.Transform) (*tensor.Tensor, error) {
		atk, _, err := r.b.PGD(r.cfg, eps, steps)
		if err != nil {
			return nil, err
		}
		am := sr.m
		if t != nil {
			if am, err = r.b.Adaptive(t, sr.m, r.cfg.EOTDraws); err != nil {
				return nil, err
			}
		}
		return atk(ctx, am, r.wbX, r.wbY, r.rep)
	}, err
}

// point returns the row's images under PGD at eps with steps iterations,
// computed in the named stage: the white-box table's own at the Table 4
// attack. A failure leaves them nil and the column col missing.
func (sr *sanityRun) point(ctx context.Context, name, col string, eps float64, steps int) (*tensor.Tensor, error) {
	if eps == whiteBoxEps && steps == sr.r.cfg.WhiteBoxSteps {
		return sr.rw.wbAdv, nil
	}
	cfg, f, err := sr.pgd(eps, steps)
	var x *tensor.Tensor
	if err == nil {
		x, err = sr.stage(ctx, name, cfg, nil, f)
	}
	if err != nil {
		return nil, sr.failed(ctx, col, err)
	}
	return x, nil
}

// iterations is the iterations check: PGD at the Table 4 budget with each
// of Config.sanityStepList iterations.
func (sr *sanityRun) iterations(ctx context.Context) error {
	for _, st := range sr.r.cfg.sanityStepList() {
		x, err := sr.point(ctx, fmt.Sprintf("whitebox-steps%d", st), stepsCol(st), whiteBoxEps, st)
		if err != nil {
			return err
		}
		sr.s.steps[st] = x
	}
	return nil
}

// budgets is the budget check: PGD with Config.WhiteBoxSteps iterations at
// each budget of SanityEps.
func (sr *sanityRun) budgets(ctx context.Context) error {
	for _, e := range SanityEps {
		x, err := sr.point(ctx, "whitebox-eps"+strconv.FormatFloat(e, 'g', -1, 64), epsCol(e), e, sr.r.cfg.WhiteBoxSteps)
		if err != nil {
			return err
		}
		sr.s.eps[e] = x
	}
	return nil
}

// noise is the random-noise control: sign noise at the Table 4 budget.
func (sr *sanityRun) noise(ctx context.Context) error {
	r, rw := sr.r, sr.rw
	var err error
	sr.s.noise, err = sr.stage(ctx, "whitebox-noise", map[string]any{"noise": "uniform random sign", "eps": whiteBoxEps}, nil,
		func(ctx context.Context, t defense.Transform) (*tensor.Tensor, error) {
			return signNoise(r.wbX, whiteBoxEps, stageSeed(r.cfg.Seed, "whitebox-noise-"+slug(rw.name))), nil
		})
	if err != nil {
		return sr.failed(ctx, colSanityNoise, err)
	}
	return nil
}

// transfer is the transfer control: No Defense's white-box examples
// through the row's defense.
func (sr *sanityRun) transfer(ctx context.Context) error {
	source := sr.source
	switch {
	case sr.rw.name == NoDefense:
		sr.s.missing[colSanityTransfer] = "not applicable: No Defense is the transfer's source"
		return nil
	case source == nil || source.wbAdv == nil:
		sr.s.missing[colSanityTransfer] = "the white-box attack on No Defense is missing"
		return nil
	}
	src := source.wbAdv
	var err error
	sr.s.transfer, err = sr.stage(ctx, "whitebox-transfer", map[string]any{"from": NoDefense}, []cache.Key{source.wbKey},
		func(ctx context.Context, t defense.Transform) (*tensor.Tensor, error) { return src.Clone(), nil })
	if err != nil {
		return sr.failed(ctx, colSanityTransfer, err)
	}
	return nil
}

// signNoise returns x plus eps times a uniformly random sign per pixel,
// clipped to [0, 1]: the random-noise control at the attack's L-infinity
// budget, as stl evaluate draws it.
func signNoise(x *tensor.Tensor, eps float64, seed uint64) *tensor.Tensor {
	return evaluate.RandomNoise(x, attack.Budget{Norm: attack.LInf, Eps: eps}, seed)
}

// sanityTables evaluates the sanity checks: accuracy against iterations,
// against the budget, and the controls, and the notes saying whether each
// expected property held.
func (r *runner) sanityTables(e *evaluator) ([]report.Table, []string, error) {
	stepsList := r.cfg.sanityStepList()
	ts := report.Table{ID: "whitebox-iterations", Title: "White-box sanity check: accuracy against PGD-through-BPDA iterations",
		Caption: fmt.Sprintf("PGD at L-infinity %g through BPDA%s (EOT over %d draws for randomized defenses) with each number of iterations, step %g of the budget, "+
			"random start, last iterate. More iterations should never help the defense.", whiteBoxEps, r.exactBackward(), r.cfg.EOTDraws, attack.DefaultPGDOptions().StepFrac)}
	for _, s := range stepsList {
		ts.Columns = append(ts.Columns, stepsCol(s))
	}
	te := report.Table{ID: "whitebox-epsilon", Title: "White-box sanity check: accuracy against the L-infinity budget",
		Caption: fmt.Sprintf("PGD through BPDA with %d iterations at each L-infinity budget (images in [0, 1]). Accuracy should not increase with the budget and should reach about 0 at the largest.", r.cfg.WhiteBoxSteps)}
	for _, eps := range SanityEps {
		te.Columns = append(te.Columns, epsCol(eps))
	}
	tc := report.Table{ID: "whitebox-controls", Columns: []string{colSanityAttack, colSanityNoise, colSanityTransfer},
		Title: fmt.Sprintf("White-box sanity check: controls at L-infinity %g", whiteBoxEps),
		Caption: "Random sign noise adds plus or minus the budget to each pixel at random; the transfer control feeds the PGD examples computed on the undefended vanilla classifier " +
			"(grey box) through the defense. Both should leave the defended classifier more accurate than the white-box attack does."}
	var notes []string
	for _, rw := range r.rows {
		s := rw.sanity
		if s == nil {
			continue
		}
		m := rw.model
		if rw.wbVanilla || rw.name == NoDefense {
			m = r.vanilla
		}
		name := rw.name
		if rw.wbVanilla && rw.name != NoDefense {
			name += " (vanilla classifier)"
		}
		cell := func(col string, x *tensor.Tensor) (report.Cell, error) {
			if why, ok := s.missing[""]; ok {
				return report.Cell{Missing: why}, nil
			}
			if x == nil {
				why := s.missing[col]
				if why == "" {
					why = "not computed"
				}
				return report.Cell{Missing: why}, nil
			}
			a, err := e.acc(m, x, r.wbY)
			return report.Cell{Acc: a}, err
		}
		rs, re, rc := report.Row{Defense: name}, report.Row{Defense: name}, report.Row{Defense: name}
		for _, st := range stepsList {
			c, err := cell(stepsCol(st), s.steps[st])
			if err != nil {
				return nil, nil, err
			}
			rs.Cells = append(rs.Cells, c)
		}
		for _, eps := range SanityEps {
			c, err := cell(epsCol(eps), s.eps[eps])
			if err != nil {
				return nil, nil, err
			}
			re.Cells = append(re.Cells, c)
		}
		for _, col := range []struct {
			name string
			x    *tensor.Tensor
		}{{colSanityAttack, s.eps[whiteBoxEps]}, {colSanityNoise, s.noise}, {colSanityTransfer, s.transfer}} {
			c, err := cell(col.name, col.x)
			if err != nil {
				return nil, nil, err
			}
			rc.Cells = append(rc.Cells, c)
		}
		ts.Rows, te.Rows, tc.Rows = append(ts.Rows, rs), append(te.Rows, re), append(tc.Rows, rc)
		if _, ok := s.missing[""]; !ok {
			notes = append(notes, sanityNote(name, ts.Columns, rs, te.Columns, re, rc))
		}
	}
	scope := r.whiteBoxScope()
	ts.Caption, te.Caption, tc.Caption = ts.Caption+scope, te.Caption+scope, tc.Caption+scope
	return []report.Table{ts, te, tc}, notes, nil
}

// sanityNote says whether each expected property held for one row.
func sanityNote(name string, stepCols []string, rs report.Row, epsCols []string, re, rc report.Row) string {
	var parts []string
	parts = append(parts, "iterations: "+monotone(stepCols, rs.Cells))
	eps := "budget: " + monotone(epsCols, re.Cells)
	if last := re.Cells[len(re.Cells)-1].Acc; last != nil {
		if last.Value <= sanityNearZero {
			eps += fmt.Sprintf("; reaches %.1f%% at %s (held)", 100*last.Value, epsCols[len(epsCols)-1])
		} else {
			eps += fmt.Sprintf("; still %.1f%% at %s (NOT near 0)", 100*last.Value, epsCols[len(epsCols)-1])
		}
	}
	parts = append(parts, eps)
	atk := rc.Cells[0].Acc
	for i, what := range []string{"noise control", "transfer control"} {
		c := rc.Cells[i+1].Acc
		switch {
		case atk == nil || c == nil:
			parts = append(parts, what+": not computed ("+rc.Cells[i+1].Missing+")")
		case c.Value > atk.Value:
			parts = append(parts, fmt.Sprintf("%s: %.1f%%, above the attack's %.1f%% (held)", what, 100*c.Value, 100*atk.Value))
		default:
			parts = append(parts, fmt.Sprintf("%s: %.1f%%, NOT above the attack's %.1f%%", what, 100*c.Value, 100*atk.Value))
		}
	}
	return "White-box sanity checks, " + name + ": " + strings.Join(parts, "; ") + "."
}

// monotone says whether the accuracies of cells never increase from one
// column to the next, naming the increases when they do.
func monotone(cols []string, cells []report.Cell) string {
	var ups []string
	var prev *metrics.Accuracy
	prevCol := ""
	for i, c := range cells {
		if c.Acc == nil {
			return "not computed"
		}
		if prev != nil && c.Acc.Value > prev.Value {
			ups = append(ups, fmt.Sprintf("%.1f%% at %s to %.1f%% at %s", 100*prev.Value, prevCol, 100*c.Acc.Value, cols[i]))
		}
		prev, prevCol = c.Acc, cols[i]
	}
	if len(ups) == 0 {
		return "non-increasing (held)"
	}
	return "NOT non-increasing (" + strings.Join(ups, ", ") + ")"
}
