package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/internal/cputime"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// benchAttackFlags are the options of "stl bench attack".
type benchAttackFlags struct {
	model, data string
	images      int
	cwMaxIter   int
	threads     int
	json        bool
	// The suite's attacks (stl evaluate): APGD, Square, PGD-CW, through
	// each route of --defense when given.
	defense   string
	routes    string
	apgdSteps int
	queries   int
	eot       int
	suiteOnly bool
	// The exact routes' options (gradientFlags, as stl evaluate takes them).
	grad    defense.GradientOptions
	cluster string
	// warm times every suite attack through --defense twice, cold and
	// with warm-started projections (defense.WarmCache), interleaved.
	warm bool
}

// benchAttackResult is one attack's row of the benchmark.
type benchAttackResult struct {
	Attack string `json:"attack"`
	// Passes is the number of forward+backward passes on the batch (or
	// what remains of it: DeepFool and CW drop finished images) and
	// ImagePasses the number of images they carried.
	Passes      int `json:"passes"`
	ImagePasses int `json:"image_passes"`
	// ForwardImages counts the images of the forward-only passes (Square's
	// queries, the clean and final predictions).
	ForwardImages int `json:"forward_images"`
	// Route is the gradient route through the defense ("" without one),
	// RouteSettings the options that shape it (evaluate.Route.Settings:
	// the implicit route's CG tolerance and cap, the unrolled route's
	// iterations, the cluster gradient), absent for bpda.
	Route           string          `json:"route,omitempty"`
	RouteSettings   json.RawMessage `json:"route_settings,omitempty"`
	Seconds         float64         `json:"seconds"`
	MsPerImage      float64         `json:"ms_per_image"`
	MsPerImagePass  float64         `json:"ms_per_image_pass"`
	SuccessRate     float64         `json:"success_rate"`
	MeanDissim      float64         `json:"mean_dissim"`
	MaxLInf         float64         `json:"max_linf"`
	CleanAccuracy   float64         `json:"clean_accuracy"`
	AdvAccuracy     float64         `json:"adv_accuracy"`
	SettingsChanged string          `json:"settings_changed,omitempty"`
	// Warm marks a row whose projections started warm (--warm), Cold
	// the same attack's cold row with --warm. Projections counts the
	// images the defense projected, ProjectionCPUSeconds the process's
	// CPU time inside the defense (ProjectionSeconds its wall time),
	// ProjectionsPerCPUSecond their ratio,
	// and WarmStarts the projections started from an earlier state.
	Warm                    bool    `json:"warm,omitempty"`
	Projections             int     `json:"projections,omitempty"`
	ProjectionCPUSeconds    float64 `json:"projection_cpu_seconds,omitempty"`
	ProjectionSeconds       float64 `json:"projection_seconds,omitempty"`
	ProjectionsPerCPUSecond float64 `json:"projections_per_cpu_second,omitempty"`
	WarmStarts              int     `json:"warm_starts,omitempty"`
}

// benchAttackReport is the JSON document printed with --json.
type benchAttackReport struct {
	Model   string `json:"model"`
	Defense string `json:"defense,omitempty"`
	Data    string `json:"data"`
	Images  int    `json:"images"`
	Threads int    `json:"threads"`
	Go      string `json:"go"`
	machine
	Results []benchAttackResult `json:"results"`
}

func init() {
	var f benchAttackFlags
	cmd := &cobra.Command{
		Use:   "attack",
		Short: "Per-image cost of each attack with the paper's settings",
		Long: `bench attack times FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW (dissimilarity 0.04)
and PGD at L-infinity 0.031 (the BPDA setting) on one batch of test images,
against --model or, by default, a freshly initialized (seeded) vgg-small at
32 px (untrained: only the cost matters). The labels are the classifier's clean predictions, so that every
attack starts from correctly classified images. Each attack's cost is its number of forward+backward passes times the
classifier's cost per image and pass; both are reported. CW runs --cw-max-iter Adam steps
per binary-search step (0: its default 1000), which the row records.

It then times the attacks of 'stl evaluate' at L-infinity 8/255: PGD with the
cross-entropy and the CW loss (stopping each image at its first success),
APGD-CE, APGD-DLR and APGD-T (--apgd-steps) and Square (--queries, forward
passes only, counted as forward image-passes). With --defense (a defense
directory or a baseline, with --model) they run through the defense, the gradient attacks once
per route of --routes (EOT over --eot draws for a randomized defense): every
query and gradient then costs a pass through the defense too; the exact
routes take the options of 'stl evaluate' (--cg-tol, --cg-max-iter,
--unroll-iterations, --cluster-gradient), which each row records. --suite-only
skips the paper's attacks. --warm runs each suite attack through the defense
(STL or STL (cluster)) twice on the same images, cold and then with each
projection started from the previous query's state of the same image
(defense.WarmCache), and reports the projections, their CPU time and the
adversarial accuracy of each.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.images < 1 || f.cwMaxIter < 0 || f.threads < 0 || f.apgdSteps < 1 || f.queries < 1 || f.eot < 1 {
				return usagef("--images, --apgd-steps, --queries and --eot must be >= 1, --cw-max-iter and --threads >= 0")
			}
			if f.defense != "" && f.model == "" {
				return usagef("--defense needs --model")
			}
			if f.warm && f.defense == "" {
				return usagef("--warm needs --defense")
			}
			if err := checkGradient(&f.grad, f.cluster); err != nil {
				return err
			}
			if _, err := parseRoutes(f.routes, f.grad); err != nil {
				return err
			}
			return runBenchAttack(cmd.Context(), f, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "", usageAnyModel+" (default: a seeded, untrained vgg-small at 32 px)")
	fl.StringVar(&f.data, "data", dataset.DefaultSpec, "data set whose first test images are attacked")
	fl.IntVar(&f.images, "images", 16, "images in the batch")
	fl.IntVar(&f.cwMaxIter, "cw-max-iter", 100, "CW Adam steps per binary-search step (0: default 1000)")
	fl.IntVar(&f.threads, "threads", 0, "classifier threads (0: as saved, or all cores)")
	fl.BoolVar(&f.json, "json", false, "print the results as JSON")
	d := evaluate.DefaultOptions()
	fl.StringVar(&f.defense, "defense", "", "time the suite's attacks through this defense (directory or baseline name; needs --model)")
	fl.StringVar(&f.routes, "routes", "bpda", "gradient routes through --defense, comma-separated: "+strings.Join(routeNames(), ", "))
	fl.IntVar(&f.apgdSteps, "apgd-steps", d.APGDSteps, "APGD iterations")
	fl.IntVar(&f.queries, "queries", d.SquareQueries, "Square's queries per image")
	fl.IntVar(&f.eot, "eot", d.EOTDraws, "gradient draws through a randomized defense")
	fl.BoolVar(&f.suiteOnly, "suite-only", false, "time only the attacks of stl evaluate")
	gradientFlags(fl, &f.grad, &f.cluster)
	fl.BoolVar(&f.warm, "warm", false, "run each suite attack through --defense (STL or STL (cluster)) cold and then with warm-started projections, on the same images, and report projections per CPU second of each")
	benchCmd.AddCommand(cmd)
}

func runBenchAttack(ctx context.Context, f benchAttackFlags, stdout io.Writer, bar progress.Reporter) error {
	clf, name, threads, err := benchModel(f)
	if err != nil {
		return err
	}
	_, h, _ := clf.InputShape()
	lo := dataset.DefaultLoadOptions()
	lo.Size = h
	_, test, err := dataset.LoadContext(ctx, f.data, lo)
	if err != nil {
		return err
	}
	set := test.Head(f.images)
	// Attack the classifier's own predictions, so that every image starts
	// correctly classified and the minimal-perturbation attacks (DeepFool,
	// CW) do their full work even on an untrained network.
	z, err := clf.Logits(ctx, set.Images)
	if err != nil {
		return err
	}
	k := clf.NumClasses()
	for i := range set.Labels {
		row := z.Data[i*k : (i+1)*k]
		set.Labels[i] = tensor.Argmax(row)
	}
	rep := benchAttackReport{Model: name, Data: set.Name, Images: set.Len(), Threads: threads, Go: runtime.Version(), machine: thisMachine()}
	for _, pname := range attack.PaperAttacks {
		if f.suiteOnly {
			break
		}
		a, err := attack.PaperAttack(pname, 1)
		if err != nil {
			return err
		}
		changed := ""
		if cw, ok := a.(*attack.CW); ok && f.cwMaxIter > 0 {
			o := cw.Options()
			o.MaxIter = f.cwMaxIter
			if a, err = attack.NewCW(o); err != nil {
				return err
			}
			changed = fmt.Sprintf("MaxIter=%d", f.cwMaxIter)
		}
		row, err := benchOne(ctx, a, clf, set, bar)
		if err != nil {
			return err
		}
		row.SettingsChanged = changed
		rep.Results = append(rep.Results, row)
	}
	suite, err := benchSuiteTargets(ctx, f, clf, bar)
	if err != nil {
		return err
	}
	rep.Defense = suite.defense
	o := evaluate.DefaultOptions()
	o.APGDSteps, o.SquareQueries = f.apgdSteps, f.queries
	for _, aname := range []string{evaluate.PGDCE, evaluate.PGDCW, evaluate.APGDCE, evaluate.APGDDLR, evaluate.APGDT, evaluate.APGDCW, evaluate.Square} {
		a, err := evaluate.NewAttack(aname, evaluate.DefaultBudget, o, k, 1)
		if err != nil {
			return err
		}
		for _, tg := range suite.targets {
			if (aname == evaluate.Square) != (tg.route == "") {
				continue // Square queries the forward model; the others each route
			}
			for _, warm := range warmCases(f.warm) {
				row, err := benchTargetOnce(ctx, a, tg, warm, set, bar)
				if err != nil {
					return err
				}
				row.Route, row.RouteSettings = tg.route, tg.settings
				if aname == evaluate.Square {
					row.SettingsChanged = fmt.Sprintf("MaxQueries=%d", f.queries)
				} else if aname != evaluate.PGDCE && aname != evaluate.PGDCW {
					row.SettingsChanged = fmt.Sprintf("Steps=%d", f.apgdSteps)
				}
				rep.Results = append(rep.Results, row)
			}
		}
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintln(stdout, rep.machine)
	fmt.Fprintf(stdout, "%s, %d images of %s, %d threads\n", rep.Model, rep.Images, rep.Data, rep.Threads)
	if rep.Defense != "" {
		fmt.Fprintf(stdout, "suite attacks through %s\n", rep.Defense)
	}
	fmt.Fprintf(stdout, "%-32s %-8s %7s %12s %10s %10s %12s %9s %8s\n", "attack", "route", "passes", "image-passes", "fwd-images", "ms/image", "ms/img/pass", "success", "dissim")
	for _, r := range rep.Results {
		fmt.Fprintf(stdout, "%-32s %-8s %7d %12d %10d %10.1f %12.2f %9.3f %8.4f %s%s%s\n", r.Attack, r.Route, r.Passes, r.ImagePasses, r.ForwardImages, r.MsPerImage, r.MsPerImagePass, r.SuccessRate, r.MeanDissim, r.SettingsChanged, routeSuffix(r.RouteSettings), projectionSuffix(r))
	}
	return nil
}

// benchOne times the attack a on m over the whole set, in one batch.
func benchOne(ctx context.Context, a attack.Attack, m attack.Model, set *dataset.Set, bar progress.Reporter) (benchAttackResult, error) {
	cm := &countingModel{Model: m}
	start := time.Now()
	res, err := attack.RunBatched(ctx, a, cm, set.Images, set.Labels, set.Len(), bar)
	if err != nil {
		return benchAttackResult{}, err
	}
	sec := time.Since(start).Seconds()
	n := float64(set.Len())
	return benchAttackResult{
		Attack: a.Name(), Passes: res.Passes, ImagePasses: cm.images, ForwardImages: cm.forward, Seconds: sec,
		MsPerImage:     1e3 * sec / n,
		MsPerImagePass: 1e3 * sec / float64(max(passImages(cm), 1)),
		SuccessRate:    res.SuccessRate(), MeanDissim: meanOf(res.Dissim), MaxLInf: maxOf(res.LInf),
		CleanAccuracy: res.CleanAccuracy(set.Labels), AdvAccuracy: res.AdvAccuracy(set.Labels),
	}, nil
}

// passImages is what an attack's cost per image-pass divides by: its
// gradient image-passes, or for a forward-only attack (Square) its forward
// ones.
func passImages(c *countingModel) int {
	if c.images > 0 {
		return c.images
	}
	return c.forward
}

// benchTarget is a model the suite's attacks are timed on: the classifier
// alone (route "exact"), through the defense with a route, or the
// defense's forward model for Square (route "").
type benchTarget struct {
	route    string
	settings json.RawMessage
	m        attack.Model
	// Through a defense: the drawn transform t, the route's backward pass
	// and the EOT draws, from which each row builds its model.
	t      defense.Transform
	clf    attack.Model
	approx attack.Approx
	eot    int
}

type benchSuite struct {
	defense string
	targets []benchTarget
}

// benchModel returns the classifier the attacks are timed on: --model,
// any classifier experiment.LoadModel reads (a model directory of stl
// train classifier, an ONNX file, PyTorch weights), or by default a seeded,
// untrained vgg-small; its name for the report and its threads.
func benchModel(f benchAttackFlags) (attack.Model, string, int, error) {
	threads := runtime.NumCPU()
	if f.threads > 0 {
		threads = f.threads
	}
	if f.model == "" {
		clf, err := nn.NewClassifier(nn.DefaultClassifierConfig())
		if err != nil {
			return nil, "", 0, err
		}
		if f.threads > 0 {
			clf.SetThreads(f.threads)
		}
		return clf, "vgg-small (untrained, seed 1)", threads, nil
	}
	m, err := experiment.LoadModel(f.model, f.threads)
	if err != nil {
		return nil, "", 0, err
	}
	if c, ok := m.Model.(*nn.Classifier); ok && f.threads == 0 {
		threads = c.Config().Threads // as saved
	}
	return m.Model, f.model, threads, nil
}

// benchSuiteTargets returns the models the suite's attacks are timed on.
func benchSuiteTargets(ctx context.Context, f benchAttackFlags, clf attack.Model, bar progress.Reporter) (benchSuite, error) {
	if f.defense == "" {
		return benchSuite{targets: []benchTarget{{route: "exact", m: clf}, {m: clf}}}, nil
	}
	o := experiment.DefaultAttackOptions()
	o.Model, o.Data, o.Defense, o.Threads, o.N = f.model, f.data, f.defense, f.threads, 1
	o.Out = filepath.Join(os.TempDir(), "stl-bench-attack")
	in, err := experiment.LoadEvaluation(ctx, o, bar)
	if err != nil {
		return benchSuite{}, defenseError(err)
	}
	t, err := in.NewDefense(1)
	if err != nil {
		return benchSuite{}, err
	}
	fwd, err := attack.NewBPDA(t, clf, nil)
	if err != nil {
		return benchSuite{}, err
	}
	dt, _ := t.(defense.Transform)
	if _, ok := t.(defense.WarmTransform); f.warm && !ok {
		return benchSuite{}, usagef("--warm: %s cannot start its projections warm (STL and STL (cluster) can)", in.DefenseName)
	}
	s := benchSuite{defense: in.DefenseName, targets: []benchTarget{{m: fwd, t: dt, clf: clf}}}
	routes, err := parseRoutes(f.routes, f.grad)
	if err != nil {
		return benchSuite{}, err
	}
	for _, rt := range routes {
		var approx attack.Approx
		if b := rt.Backward; b != nil {
			if approx, err = b(t); err != nil {
				return benchSuite{}, err
			}
		}
		m, err := attack.Adaptive(t, clf, approx, f.eot)
		if err != nil {
			return benchSuite{}, err
		}
		s.targets = append(s.targets, benchTarget{route: rt.Name, settings: rt.Settings, m: m, t: dt, clf: clf, approx: approx, eot: f.eot})
	}
	return s, nil
}

// countingModel counts the images of the gradient passes (images) and of
// the forward-only passes (forward) it forwards.
type countingModel struct {
	attack.Model
	images, forward int
}

func (c *countingModel) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if len(x.Shape) > 0 {
		c.forward += x.Shape[0]
	}
	return c.Model.Logits(ctx, x)
}

func (c *countingModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	if len(x.Shape) > 0 {
		c.images += x.Shape[0]
	}
	return c.Model.InputGrad(ctx, x, seed)
}

// routeSuffix formats a route's settings for the text table: " route
// {...}", or "" without settings.
func routeSuffix(s json.RawMessage) string {
	if len(s) == 0 {
		return ""
	}
	return " route " + string(s)
}

// projectionSuffix formats a row's projection figures for the text table
// ("" without a defense).
func projectionSuffix(r benchAttackResult) string {
	if r.Projections == 0 {
		return ""
	}
	start := "cold"
	if r.Warm {
		start = fmt.Sprintf("warm (%d warm starts)", r.WarmStarts)
	}
	return fmt.Sprintf(" %s: %d projections, %.1f per CPU s, adv acc %.3f", start, r.Projections, r.ProjectionsPerCPUSecond, r.AdvAccuracy)
}

// warmCases are the starts each suite attack runs with: cold, and with
// --warm then warm.
func warmCases(warm bool) []bool {
	if warm {
		return []bool{false, true}
	}
	return []bool{false}
}

// benchTargetOnce times the attack a on the target tg; through a defense
// it counts the projections and their CPU time, started warm (a fresh
// defense.WarmCache) when warm is set.
func benchTargetOnce(ctx context.Context, a attack.Attack, tg benchTarget, warm bool, set *dataset.Set, bar progress.Reporter) (benchAttackResult, error) {
	if tg.t == nil {
		return benchOne(ctx, a, tg.m, set, bar)
	}
	mt := &meteredTransform{Transform: tg.t}
	var cache *defense.WarmCache
	if wt, ok := tg.t.(defense.WarmTransform); ok && warm {
		var err error
		if cache, err = defense.NewWarmCache(wt, defense.WarmOptions{}); err != nil {
			return benchAttackResult{}, err
		}
		mt.Transform = cache
	}
	var m attack.Model
	var err error
	if tg.route == "" {
		m, err = attack.NewBPDA(mt, tg.clf, nil) // Square: the forward model
	} else {
		m, err = attack.Adaptive(mt, tg.clf, tg.approx, max(tg.eot, 1))
	}
	if err != nil {
		return benchAttackResult{}, err
	}
	row, err := benchOne(ctx, a, m, set, bar)
	if err != nil {
		return row, err
	}
	row.Warm, row.Projections, row.ProjectionCPUSeconds, row.ProjectionSeconds = warm, mt.images, mt.cpu.Seconds(), mt.wall.Seconds()
	if mt.cpu > 0 {
		row.ProjectionsPerCPUSecond = float64(mt.images) / mt.cpu.Seconds()
	}
	if cache != nil {
		row.WarmStarts, _ = cache.Starts()
	}
	return row, nil
}

// meteredTransform counts the images a transform is applied to and the
// process's CPU time inside Apply (the attacks apply it from one goroutine,
// so nothing else of theirs runs meanwhile).
type meteredTransform struct {
	defense.Transform
	images    int
	cpu, wall time.Duration
}

func (m *meteredTransform) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	c0, t0 := cputime.Process(), time.Now()
	y, err := m.Transform.Apply(ctx, x)
	m.cpu += cputime.Process() - c0
	m.wall += time.Since(t0)
	if x != nil && len(x.Shape) > 0 {
		m.images += x.Shape[0]
	}
	return y, err
}
