package evaluate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// AttackResult is one attack of the suite on one subject at one budget.
type AttackResult struct {
	// Subject is "defended" (the classifier behind the defense) or
	// "undefended" (the classifier alone).
	Subject string `json:"subject"`
	// Attack is the suite's name (AttackNames), Name the attack's own,
	// e.g. "APGD-CE-linf0.0314".
	Attack string `json:"attack"`
	Name   string `json:"name"`
	// Route is the gradient route of a gradient attack: "exact" on the
	// undefended classifier, a Route's name through the defense.
	Route  string        `json:"route,omitempty"`
	Budget attack.Budget `json:"budget"`
	// Steps is the iterations of PGD and APGD, 0 for the others.
	Steps int `json:"steps,omitempty"`
	// Probe names the automatic check an attack outside the suite serves
	// ("iterations", "large-budget", "unbounded"); those attacks do not
	// enter the worst case.
	Probe string `json:"probe,omitempty"`
	// Settings are the attack's options as package attack encodes them.
	Settings json.RawMessage `json:"settings,omitempty"`
	// Accuracy is the robust accuracy over the images in scope.
	Accuracy metrics.Accuracy `json:"accuracy"`
	// Attacked is the number of images attacked (in scope, correct
	// without attack, and with Cascade not broken before); Broken those
	// of them misclassified after the attack.
	Attacked int `json:"attacked"`
	Broken   int `json:"broken"`
	// GradImages and ForwardImages count the images carried by the
	// gradient (forward and backward) and forward-only passes of the
	// attack itself, the evaluation draws excluded: Square's
	// ForwardImages are its queries.
	GradImages    int `json:"grad_images"`
	ForwardImages int `json:"forward_images"`
	// Seconds is the attack's and its evaluation's wall time (of the run
	// that computed it, when Cached).
	Seconds float64 `json:"seconds"`
	// Cached is set when the result was reloaded from Options.Dir.
	Cached bool `json:"cached,omitempty"`
	Outcome
}

// Label is the row label of r in reports, e.g. "APGD-CE (bpda)".
func (r *AttackResult) Label() string { return Label(r.Attack, r.Route) }

// Label is the report label of the suite's attack (AttackNames) through
// route ("" for none): "APGD-CE (bpda)", "Square", "transfer from
// undefended".
func Label(attack, route string) string {
	l := displayName(attack)
	if route != "" {
		l += " (" + route + ")"
	}
	return l
}

func displayName(a string) string {
	switch a {
	case PGDCE:
		return "PGD-CE"
	case PGDCW:
		return "PGD-CW"
	case APGDCE:
		return "APGD-CE"
	case APGDDLR:
		return "APGD-DLR"
	case APGDT:
		return "APGD-T"
	case APGDCW:
		return "APGD-CW"
	case Square:
		return "Square"
	case Transfer:
		return "transfer from undefended"
	case Noise:
		return "random noise"
	}
	return a
}

// run is one evaluation in progress.
type run struct {
	t       Target
	o       Options
	x       *tensor.Tensor
	labels  []int
	n, k    int
	rep     progress.Reporter
	store   store
	clean   map[string][]bool
	results []*AttackResult
	sources map[string]*source // transfer sources, by budget
	done    int
	total   int
}

// spec is one attack to run.
type spec struct {
	subj   subject
	attack string
	route  Route
	budget attack.Budget
	probe  string
	steps  int    // PGD's iterations (0: Options.PGDSteps)
	scope  []bool // nil: every image
}

// seed derives the seed of one attack (and of its defense draws) from
// Options.Seed and what identifies the attack.
func (r *run) seed(parts ...any) uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, r.o.Seed)
	for _, p := range parts {
		fmt.Fprintf(h, "|%v", p)
	}
	return h.Sum64()
}

// id identifies sp for its seeds: PGD's iteration counts of the
// iterations check share theirs, so that their random starts and first
// iterates are the same and, on a deterministic classifier, the images
// broken with fewer iterations are broken with more.
func (sp spec) id() []any {
	return []any{sp.subj.name, sp.attack, sp.route.Name, sp.budget, sp.probe}
}

// build returns the attack of a gradient or Square spec.
func (r *run) build(sp spec) (attack.Attack, error) {
	o := r.o
	if sp.steps > 0 {
		o.PGDSteps = sp.steps
	}
	return NewAttack(sp.attack, sp.budget, o, r.k, r.seed(append(sp.id(), "attack")...))
}

// NewAttack returns the suite's attack of that name (a gradient attack or
// Square) at budget b with the settings of o, for a classifier of classes
// classes, seeded with seed: PGD (attack.DefaultPGDOptions: step 0.1 of
// the budget, random start) with o.PGDSteps and o.Restarts, stopping each
// image at its first success; APGD (attack.DefaultAPGDOptions) with
// o.APGDSteps, o.Restarts and min(o.TargetClasses, classes-1) target
// classes (APGD-CW ascends the unclamped margin max_{j!=y} z_j - z_y,
// attack.LossCW); Square with o.SquareQueries and o.SquarePInit. Transfer and
// Noise are not attacks of package attack and give an error, as do
// invalid settings.
func NewAttack(name string, b attack.Budget, o Options, classes int, seed uint64) (attack.Attack, error) {
	switch name {
	case PGDCE, PGDCW:
		po, err := PGDOptions(name, b, o, seed)
		if err != nil {
			return nil, err
		}
		p, err := attack.NewPGD(po)
		if err != nil {
			return nil, err
		}
		return earlyPGD{p}, nil
	case APGDCE, APGDDLR, APGDT, APGDCW:
		ao := attack.DefaultAPGDOptions()
		ao.Budget, ao.Steps, ao.Restarts, ao.Seed = b, o.APGDSteps, max(o.Restarts, 1), seed
		ao.Loss = map[string]attack.Loss{APGDCE: attack.LossCE, APGDDLR: attack.LossDLR, APGDT: attack.LossDLRTargeted, APGDCW: attack.LossCW}[name]
		ao.NTargetClasses = max(min(o.TargetClasses, classes-1), 1)
		return attack.NewAPGD(ao)
	case Square:
		so := attack.DefaultSquareOptions()
		so.Budget, so.MaxQueries, so.PInit, so.Seed = b, o.SquareQueries, o.SquarePInit, seed
		return attack.NewSquare(so)
	}
	return nil, fmt.Errorf("evaluate: %s is not an attack of package attack", name)
}

// PGDOptions returns the options of the suite's PGD attack name (PGDCE or
// PGDCW) at budget b with o.PGDSteps iterations and o.Restarts restarts
// (at least one), seeded with seed: attack.DefaultPGDOptions otherwise
// (Madry et al.: step 0.1 of the budget, uniform random start), the
// cross-entropy for PGDCE (Loss left empty, as the options encoded before
// losses existed) and the unclamped margin (attack.LossCW, kappa 0) for
// PGDCW. The suite runs it stopping each image at its first success
// (NewAttack); stl run's Table 4 form runs the same attack to its last
// iterate, as the paper's Table 4 does, with the run's seed. Another name
// is an error.
func PGDOptions(name string, b attack.Budget, o Options, seed uint64) (attack.PGDOptions, error) {
	po := attack.DefaultPGDOptions()
	po.Budget, po.Steps, po.Restarts, po.Seed = b, o.PGDSteps, max(o.Restarts, 1), seed
	switch name {
	case PGDCE:
	case PGDCW:
		po.Loss = attack.LossCW
	default:
		return attack.PGDOptions{}, fmt.Errorf("evaluate: %s is not a PGD attack of the suite (%s, %s)", name, PGDCE, PGDCW)
	}
	return po, nil
}

// minClasses is the number of classes an attack's loss needs.
func minClasses(name string) int {
	switch name {
	case APGDDLR:
		return 3
	case APGDT:
		return 4
	}
	return 2
}

// active returns the images sp attacks: in scope, correct without attack
// and, with Cascade, after every earlier attack of prior.
func (r *run) active(sp spec, prior []Outcome) ([]bool, error) {
	act := r.clean[sp.subj.name]
	if r.o.Cascade && sp.probe == "" {
		var err error
		if act, err = WorstCase(act, prior...); err != nil {
			return nil, err
		}
	}
	out := make([]bool, r.n)
	for i := range out {
		out[i] = act[i] && (sp.scope == nil || sp.scope[i])
	}
	return out, nil
}

// exec runs one attack (or reloads it) and records its result.
func (r *run) exec(ctx context.Context, sp spec, prior []Outcome) (*AttackResult, error) {
	act, err := r.active(sp, prior)
	if err != nil {
		return nil, err
	}
	res := &AttackResult{Subject: sp.subj.name, Attack: sp.attack, Route: sp.route.Name, Budget: sp.budget, Probe: sp.probe,
		Outcome: Outcome{Correct: make([]bool, r.n), Scope: sp.scope}}
	var atk attack.Attack
	if sp.attack != Transfer && sp.attack != Noise {
		if atk, err = r.build(sp); err != nil {
			return nil, err
		}
		res.Name = atk.Name()
		switch a := atk.(type) {
		case earlyPGD:
			res.Steps = a.Options().Steps
		case *attack.APGD:
			res.Steps = a.Options().Steps
		}
		if res.Settings, err = json.Marshal(atk); err != nil {
			return nil, err
		}
	} else {
		res.Name = displayName(sp.attack) + " at " + BudgetLabel(sp.budget)
	}
	if src := r.sources[sp.budget.String()]; sp.attack == Transfer && src != nil {
		if res.Settings, err = src.settings(); err != nil {
			return nil, err
		}
	}
	key, err := r.store.key(r, sp, res.Settings, act)
	if err != nil {
		return nil, err
	}
	idx := indices(act)
	res.Attacked = len(idx)
	r.rep.Report("evaluate", r.done, r.total, res.Label()+" on "+sp.subj.name+" at "+BudgetLabel(sp.budget))
	if cached, adv := r.store.load(key, r.n); cached != nil {
		cached.Cached = true
		r.keep(sp, cached, adv)
		return cached, nil
	}
	start := time.Now()
	adv := r.x.Clone()
	if len(idx) > 0 {
		xa, la := gather(r.x, idx, len(r.x.Data)/r.n), pick(r.labels, idx)
		aa, err := r.adversarial(ctx, sp, atk, res, xa, la, idx)
		if err != nil {
			return nil, err
		}
		if r.o.Round8 {
			if err := attack.Round8Within(aa, xa, sp.budget); err != nil {
				return nil, fmt.Errorf("evaluate: %s on %s: %w", res.Label(), sp.subj.name, err)
			}
		}
		correct, err := r.judge(ctx, sp.subj, aa, la, r.seed(append(sp.id(), "judge")...))
		if err != nil {
			return nil, err
		}
		d := len(r.x.Data) / r.n
		for a, i := range idx {
			copy(adv.Data[i*d:(i+1)*d], aa.Data[a*d:(a+1)*d])
			res.Correct[i] = correct[a]
			if !correct[a] {
				res.Broken++
			}
		}
	}
	res.Accuracy = res.Outcome.Accuracy()
	res.Seconds = time.Since(start).Seconds()
	if err := r.store.save(key, res, adv); err != nil {
		return nil, err
	}
	r.keep(sp, res, adv)
	return res, nil
}

// keep records a result and, for the transfer source, its images.
func (r *run) keep(sp spec, res *AttackResult, adv *tensor.Tensor) {
	res.Accuracy = res.Outcome.Accuracy()
	r.results = append(r.results, res)
	if sp.subj.name == subjUndefended && gradientAttack(sp.attack) && sp.probe == "" {
		r.source(sp.budget).add(res, adv, sp.attack == transferSource)
	}
	r.done++
	r.rep.Report("evaluate", r.done, r.total, res.Label()+fmt.Sprintf(": %.1f%%", 100*res.Accuracy.Value))
}

// transferSource is the attack of the undefended classifier whose
// examples the transfer attack feeds through the defense where no
// gradient attack fooled that classifier.
const transferSource = APGDCE

// source is the transfer attack's images at one budget: per image, the
// first example of the suite's gradient attacks (in running order) that
// fooled the undefended classifier, else the transferSource's example.
type source struct {
	adv    *tensor.Tensor
	fooled []bool
}

func (r *run) source(b attack.Budget) *source {
	s := r.sources[b.String()]
	if s == nil {
		s = &source{adv: r.x.Clone(), fooled: make([]bool, r.n)}
		r.sources[b.String()] = s
	}
	return s
}

// add takes the examples of res (adv) that fooled the undefended
// classifier where no earlier one did, and with fallback every other
// example too, until one that fools it arrives.
func (s *source) add(res *AttackResult, adv *tensor.Tensor, fallback bool) {
	d := len(adv.Data) / len(s.fooled)
	for i := range s.fooled {
		broke := res.inScope(i) && !res.Correct[i]
		if !s.fooled[i] && (broke || fallback) {
			copy(s.adv.Data[i*d:(i+1)*d], adv.Data[i*d:(i+1)*d])
			s.fooled[i] = broke
		}
	}
}

// settings identifies the source's images in a cache key.
func (s *source) settings() (json.RawMessage, error) {
	h := sha256.New()
	if err := npy.Write(h, s.adv); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"source_sha256": hex.EncodeToString(h.Sum(nil))})
}

// adversarial computes the adversarial images of the active images xa
// (labels la, indices idx in the evaluation's images) and fills the cost
// figures of res.
func (r *run) adversarial(ctx context.Context, sp spec, atk attack.Attack, res *AttackResult, xa *tensor.Tensor, la, idx []int) (*tensor.Tensor, error) {
	switch sp.attack {
	case Noise:
		return RandomNoise(xa, sp.budget, r.seed(append(sp.id(), "noise")...)), nil
	case Transfer:
		src := r.sources[sp.budget.String()]
		if src == nil {
			return nil, fmt.Errorf("evaluate: the transfer attack needs the gradient attacks of the undefended classifier at %s", sp.budget)
		}
		return gather(src.adv, idx, len(r.x.Data)/r.n), nil
	}
	seed := r.seed(append(sp.id(), "defense")...)
	var m attack.Model
	var err error
	if sp.attack == Square {
		m, _, err = r.t.forward(sp.subj, seed, r.o.WarmStart) // one draw per query
	} else {
		m, err = r.t.whiteBox(sp.subj, sp.route, seed, r.o.EOTDraws, r.o.WarmStart)
	}
	if err != nil {
		return nil, err
	}
	cm := &counter{Model: m}
	out, err := attack.RunBatches(ctx, atk, cm, xa, la, attack.BatchOptions{Size: r.o.Batch, Progress: r.rep})
	if err != nil {
		return nil, fmt.Errorf("evaluate: %s on the %s classifier: %w", atk.Name(), sp.subj.name, err)
	}
	res.GradImages, res.ForwardImages = cm.grad, cm.forward
	return out.Adv, nil
}

// judge classifies x on the subject: once, or EvalDraws times through a
// randomized defense, an image being correct only when every draw is.
func (r *run) judge(ctx context.Context, s subject, x *tensor.Tensor, labels []int, seed uint64) ([]bool, error) {
	correct := make([]bool, len(labels))
	for i := range correct {
		correct[i] = true
	}
	for draw := 0; ; draw++ {
		m, d, err := r.t.forward(s, seed+uint64(draw), false)
		if err != nil {
			return nil, err
		}
		for lo := 0; lo < len(labels); lo += r.o.Batch {
			hi := min(lo+r.o.Batch, len(labels))
			z, err := m.Logits(ctx, x.Batch(lo, hi))
			if err != nil {
				return nil, err
			}
			if len(z.Data) != (hi-lo)*r.k {
				return nil, &tensor.ShapeError{Op: "evaluate: logits", Want: []int{hi - lo, r.k}, Got: z.Shape}
			}
			for i := lo; i < hi; i++ {
				if tensor.Argmax(z.Data[(i-lo)*r.k:(i-lo+1)*r.k]) != labels[i] {
					correct[i] = false
				}
			}
		}
		if d == nil || !d.Randomized() || draw+1 >= r.o.EvalDraws {
			return correct, nil
		}
	}
}

func indices(b []bool) []int {
	var idx []int
	for i, v := range b {
		if v {
			idx = append(idx, i)
		}
	}
	return idx
}

func pick(v []int, idx []int) []int {
	out := make([]int, len(idx))
	for a, i := range idx {
		out[a] = v[i]
	}
	return out
}

// outcomes returns the outcomes of the suite's results (no probes) of a
// subject at a budget whose attack satisfies keep.
func (r *run) outcomes(subj string, b attack.Budget, keep func(*AttackResult) bool) []Outcome {
	var out []Outcome
	for _, res := range r.results {
		if res.Subject == subj && res.Budget == b && res.Probe == "" && keep(res) {
			out = append(out, res.Outcome)
		}
	}
	return out
}

func anyAttack(*AttackResult) bool { return true }

func isGradient(res *AttackResult) bool { return gradientAttack(res.Attack) }

// suiteAttacks returns the suite's specs of a subject at a budget, in
// running order.
func (r *run) suiteAttacks(s subject, b attack.Budget, squareScope []bool) []spec {
	var out []spec
	for _, a := range AttackNames {
		if !r.o.has(a) || r.k < minClasses(a) {
			continue
		}
		switch {
		case gradientAttack(a):
			for _, rt := range s.routes {
				out = append(out, spec{subj: s, attack: a, route: rt, budget: b})
			}
		case a == Transfer:
			if s.defended && slices.ContainsFunc(r.o.Attacks, gradientAttack) {
				out = append(out, spec{subj: s, attack: a, budget: b})
			}
		case a == Square:
			out = append(out, spec{subj: s, attack: a, budget: b, scope: squareScope})
		default:
			out = append(out, spec{subj: s, attack: a, budget: b})
		}
	}
	return out
}

// subjects returns the undefended classifier and, with a defense, the
// defended one (the subject of the checks, last).
func (t Target) subjects() []subject {
	s := []subject{{name: subjUndefended, routes: []Route{{Name: routeExact}}}}
	if t.NewDefense != nil {
		routes := t.Routes
		if len(routes) == 0 {
			routes = []Route{RouteBPDA}
		}
		s = append(s, subject{name: subjDefended, defended: true, routes: routes})
	}
	return s
}

// checkRoutes reports the first route named twice or not at all.
func checkRoutes(routes []Route) error {
	var names []string
	for _, rt := range routes {
		if rt.Name == "" || rt.Name == routeExact || slices.Contains(names, rt.Name) {
			return option.New("evaluate", "Target.Routes", fmt.Sprintf("%q", rt.Name), "each route needs a distinct name other than \"exact\"")
		}
		names = append(names, rt.Name)
	}
	return nil
}
