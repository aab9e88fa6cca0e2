package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/progress"
)

// UsageAnyModel says what a flag taking a classifier accepts: whatever
// experiment.LoadModel reads.
const UsageAnyModel = "classifier: a directory written by 'stl train classifier', an ONNX file or PyTorch weights as ARCH:FILE.safetensors (see docs/models.md)"

// AttackFlags are the options of "stl attack": the run's options and the
// attack's, as the command line spells them. Its fields are exported so
// that a pipeline can carry them to its workers (encoded as JSON).
type AttackFlags struct {
	Opts            experiment.AttackOptions
	Method          string
	Norm            string
	Budget          float64
	Steps           int
	StepFrac        float64
	Seed            uint64
	Restarts        int
	NoRandomStart   bool
	Overshoot       float64
	MaxIter         int
	Candidates      int
	Kappa, InitialC float64
	CWOvershoot     float64
	BinarySteps     int
	LR              float64
	Loss            string
	Queries         int
	PInit           float64
	// The universal perturbation's (--attack uap) and the strength
	// search's (--target-dissimilarity) options.
	UAP    experiment.UAPJobOptions
	Search attack.SearchOptions
}

// MethodUAP is the --attack name of the universal adversarial
// perturbation, fitted on training images (experiment.AttackJob.FitUniversal)
// rather than built from the attack registry.
const MethodUAP = "uap"

// uapParams are the flags of --attack uap alone; --max-iter and
// --candidates set its DeepFool steps.
var uapParams = []string{"fit-images", "fit-seed", "fooling-rate", "max-passes", "uap"}

// AttackNames lists what --attack takes.
func AttackNames() []string { return append(attack.MethodNames(), MethodUAP) }

// FlagSet is what Register needs of a flag set: both the standard
// library's *flag.FlagSet and cobra's *pflag.FlagSet have it.
type FlagSet interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
	IntVar(p *int, name string, value int, usage string)
	Int64Var(p *int64, name string, value int64, usage string)
	Uint64Var(p *uint64, name string, value uint64, usage string)
	Float64Var(p *float64, name string, value float64, usage string)
}

// Register defines the flags of "stl attack" (all but --shard) on fl,
// with their defaults, storing into f.
func (f *AttackFlags) Register(fl FlagSet) {
	d, ad := experiment.DefaultAttackOptions(), attack.DefaultConfig()
	o := &f.Opts
	fl.StringVar(&o.Model, "model", "", UsageAnyModel+" (required)")
	fl.StringVar(&o.Data, "data", "", "data set (see 'stl data'); default "+dataset.DefaultSpec)
	fl.StringVar(&o.Split, "split", d.Split, "which part of the data set to attack: test or train")
	fl.IntVar(&o.N, "n", 0, "attack a class-balanced subset of this many images (0: all)")
	fl.Int64Var(&o.SubsetSeed, "subset-seed", 1, "seed of the class-balanced subset")
	fl.StringVar(&f.Method, "attack", "fgsm", "attack: "+OrList(AttackNames()))
	fl.StringVar(&f.Norm, "norm", "", "budget norm: l2 (normalized dissimilarity), l2z (the same on the classifier's normalized tensors) or linf; default the attack's")
	fl.Float64Var(&f.Budget, "budget", 0, "budget in (0,1]; default the attack's (0.04; pgd, apgd, square: L-inf 0.031)")
	fl.IntVar(&f.Steps, "steps", 0, "bim, pgd, apgd: iterations (default 10, 20, 100)")
	fl.Float64Var(&f.StepFrac, "step-frac", 0, "bim, pgd: step size as a fraction of the budget (default 0.125, 0.1)")
	fl.Uint64Var(&f.Seed, "seed", ad.PGD.Seed, "pgd, apgd: seed of the random start; square: seed of its random squares")
	fl.BoolVar(&f.NoRandomStart, "no-random-start", false, "pgd: start at the clean image")
	fl.IntVar(&f.Restarts, "restarts", ad.PGD.Restarts, "pgd, apgd: runs from independent random starts")
	fl.StringVar(&f.Loss, "loss", string(ad.APGD.Loss), "apgd: ce (cross-entropy), dlr (difference of logits ratio), dlr-t (targeted DLR over the top classes, AutoAttack's APGD-T) or cw (Carlini-Wagner margin, APGD-CW)")
	fl.IntVar(&f.Queries, "queries", ad.Square.MaxQueries, "square: model queries per image")
	fl.Float64Var(&f.PInit, "p-init", ad.Square.PInit, "square: initial fraction of the image a square covers")
	fl.Float64Var(&f.Overshoot, "overshoot", ad.DeepFool.Overshoot, "deepfool: overshoot")
	fl.IntVar(&f.MaxIter, "max-iter", 0, "deepfool, cw: iterations (default 50, 1000)")
	fl.IntVar(&f.Candidates, "candidates", ad.DeepFool.Candidates, "deepfool: classes considered (0: all)")
	fl.Float64Var(&f.Kappa, "kappa", ad.CW.Kappa, "cw: confidence margin")
	fl.Float64Var(&f.CWOvershoot, "cw-overshoot", ad.CW.Overshoot, "cw: multiply the perturbation found by 1+this (the strength --target-dissimilarity sets)")
	fl.Float64Var(&f.InitialC, "initial-c", ad.CW.InitialC, "cw: initial trade-off constant")
	fl.IntVar(&f.BinarySteps, "binary-steps", ad.CW.BinarySteps, "cw: binary search steps over c")
	fl.Float64Var(&f.LR, "lr", ad.CW.LearningRate, "cw: Adam learning rate")
	u := experiment.DefaultUAPJobOptions()
	fl.IntVar(&f.UAP.FitImages, "fit-images", u.FitImages, "uap: training images the perturbation is fitted on, a class-balanced subset seeded by --fit-seed (0: all)")
	fl.Int64Var(&f.UAP.FitSeed, "fit-seed", u.FitSeed, "uap: seed of the fitting subset and of the order the fit visits it in")
	fl.Float64Var(&f.UAP.UAP.FoolingRate, "fooling-rate", u.UAP.FoolingRate, "uap: stop fitting once this fraction of the fitting images is fooled")
	fl.IntVar(&f.UAP.UAP.MaxPasses, "max-passes", u.UAP.MaxPasses, "uap: passes over the fitting images at most")
	fl.StringVar(&f.UAP.From, "uap", "", "uap: reuse the perturbation saved by an earlier run (its uap.npy, or its --out directory) instead of fitting one")
	s := attack.DefaultSearchOptions()
	fl.Float64Var(&f.Search.Target, "target-dissimilarity", 0, "search the attack's strength so that the average normalized L2 dissimilarity on the classifier's normalized tensors is this (the paper's Table 3: 0.06; 0: off)")
	fl.Float64Var(&f.Search.Tolerance, "target-tolerance", 0, "with --target-dissimilarity: how far from it the average may end (0: 1% of it)")
	fl.IntVar(&f.Search.MaxProbes, "max-probes", s.MaxProbes, "with --target-dissimilarity: attack runs the search makes at most")
	fl.StringVar((*string)(&o.Protocol), FlagProtocol, "", UsageProtocol)
	fl.BoolVar(&o.Round8, FlagRound8, false, UsageRound8)
	fl.BoolVar(&o.Targeted, "targeted", false, "targeted attack towards class (label+1) mod K (not deepfool)")
	fl.StringVar(&o.Defense, "defense", "", "a defense directory or a baseline ("+strings.Join(baseline.Names(), ", ")+"); evaluated on the adversarial set, attacked through with --bpda")
	fl.BoolVar(&o.BPDA, "bpda", false, "attack through the defense with BPDA (identity backward pass)")
	fl.IntVar(&o.EOT, "eot", d.EOT, "with --bpda on a randomized defense: gradient draws averaged (EOT)")
	fl.IntVar(&o.Batch, "batch", d.Batch, "images per attack batch")
	fl.IntVar(&o.Threads, "threads", 0, "classifier threads (0: as saved)")
	fl.StringVar(&o.Out, "out", "", "output directory of the adversarial set (required)")
	fl.StringVar(&o.BaselineDir, "baseline-dir", "", "cache of the patch database and auto-encoder of --defense "+JoinList(LearningBaselines(), "and")+", one subfolder per training set (default: 'baselines' beside --out)")
	fl.IntVar(&o.BaselineTrain, "baseline-train", 0, "train those baselines on a class-balanced subset of this many training images, seeded by --subset-seed (0: all)")
	fl.IntVar(&o.MagNetEpochs, "magnet-epochs", d.MagNetEpochs, "magnet: auto-encoder training epochs")
	fl.IntVar(&o.QuiltPatches, "quilt-patches", d.QuiltPatches, "quilting: patches kept in the database (0: all; the search costs time linear in it)")
}

// LearningBaselines names the baselines that learn from clean training
// images.
func LearningBaselines() []string {
	var names []string
	for _, e := range baseline.Entries() {
		if e.Learns() {
			names = append(names, e.Name)
		}
	}
	return names
}

// usagef returns a UsageError.
func usagef(format string, a ...any) error { return UsageError{Err: fmt.Errorf(format, a...)} }

// Check validates the flags that need no file; changed reports whether
// the named flag was given on the command line. Its errors are
// UsageErrors.
func (f *AttackFlags) Check(changed func(name string) bool) error {
	o := f.Opts
	if o.Model == "" {
		return usagef("--model is required")
	}
	if o.Out == "" {
		return usagef("--out is required")
	}
	var params []string
	if f.Method == MethodUAP {
		params = append(uapParams, "max-iter", "candidates")
	} else {
		m, err := attack.LookupMethod(f.Method)
		if err != nil {
			return usagef("--attack %q: want %s", f.Method, OrList(AttackNames()))
		}
		params = m.Params
	}
	for _, names := range [][]string{uapParams, allParams()} {
		for _, name := range names {
			if changed(name) && !slices.Contains(params, name) {
				return usagef("--%s does not apply to --attack %s", name, f.Method)
			}
		}
	}
	if f.Search.Target != 0 {
		if err := f.Search.Validate(); err != nil {
			return usagef("--target-dissimilarity: %v", err)
		}
		if o.BPDA || !o.Shard.Whole() {
			return usagef("--target-dissimilarity searches one strength for every attacked image, gray-box: not with --bpda or --shard (search once, then give the shards the strength found)")
		}
	} else if changed("target-tolerance") || changed("max-probes") {
		return usagef("--target-tolerance and --max-probes need --target-dissimilarity")
	}
	if f.Method == MethodUAP && o.BPDA {
		return usagef("--attack uap is fitted on the classifier alone: not with --bpda")
	}
	if o.Split != "test" && o.Split != "train" {
		return usagef("--split %q: want test or train", o.Split)
	}
	if o.N < 0 || o.Batch < 1 || o.Threads < 0 {
		return usagef("--n, --batch and --threads must be >= 0, >= 1 and >= 0")
	}
	if o.BaselineTrain < 0 || o.MagNetEpochs < 0 || o.QuiltPatches < 0 {
		return usagef("--baseline-train, --magnet-epochs and --quilt-patches must be >= 0")
	}
	if f.Norm != "" {
		if _, err := attack.ParseNorm(f.Norm); err != nil {
			return usagef("--norm: %v", err)
		}
	}
	p, err := parseProtocol(string(o.Protocol))
	if err != nil {
		return err
	}
	if p == attack.ProtocolGuo && f.Norm == attack.L2Rel.String() {
		return usagef("--norm %s measures on [0,1] pixels, and --%s %s measures normalized L2 budgets on the classifier's normalized tensors (%s): drop --norm, or use --%s %s",
			f.Norm, FlagProtocol, p, attack.L2Z, FlagProtocol, attack.ProtocolText)
	}
	if changed("budget") && !(f.Budget > 0 && f.Budget <= 1) {
		return usagef("--budget %g: want a value in (0, 1]", f.Budget)
	}
	if o.BPDA && o.Defense == "" {
		return usagef("--bpda needs --defense")
	}

	if o.EOT < 1 {
		return usagef("--eot %d: want at least 1", o.EOT)
	}
	if o.Targeted && (f.Method == MethodUAP || !mustMethod(f.Method).Targetable) {
		return usagef("--targeted does not apply to %s", f.Method)
	}
	// A placeholder normalization stands for the classifier's, read later,
	// so that an l2z budget validates.
	if _, err := f.Build(&attack.Normalization{Mean: []float64{0}, Std: []float64{1}}); err != nil {
		return UsageError{Err: err}
	}
	if f.Search.Target != 0 && f.Method != MethodUAP && (o.Round8 || p.Round8()) {
		if s, _, _ := f.Config(nil); s.Knob().Param == attack.BudgetKnob().Param && s.Budget.Norm == attack.LInf {
			return usagef("--target-dissimilarity searches the L-infinity budget of %s, and with 8-bit rounding (--%s %s, or --%s) its pixels move by whole levels of 1/255 (at +-eps they all round alike), so the average dissimilarity jumps from level to level and the search cannot meet it: "+
				"search a normalized L2 budget (--%s %s or %s, with --%s for 8-bit images)",
				f.Method, FlagProtocol, attack.ProtocolRelease, FlagRound8, FlagProtocol, attack.ProtocolText, attack.ProtocolGuo, FlagRound8)
		}
	}
	return nil
}

// allParams lists the flags of every registry attack.
func allParams() []string {
	var names []string
	for _, m := range attack.Methods() {
		names = append(names, m.Params...)
	}
	return names
}

// mustMethod returns the registry method name, which Check has looked up.
func mustMethod(name string) attack.Method {
	m, _ := attack.LookupMethod(name)
	return m
}

// budgetOr returns the flags' budget over the attack's default one; a
// --norm other than the default's without --budget takes the paper's
// budget in that norm.
func (f *AttackFlags) budgetOr(def attack.Budget) attack.Budget {
	b := def
	if f.Norm != "" {
		b.Norm, _ = attack.ParseNorm(f.Norm)
		if b.Norm != def.Norm && f.Budget == 0 {
			b = attack.PaperBudget(b.Norm)
			if def.Norm != attack.LInf && b.Norm != attack.LInf {
				b.Eps = def.Eps // l2 and l2z: the attack's own
			}
		}
	}
	if f.Budget != 0 {
		b.Eps = f.Budget
	}
	b.Normalization = nil
	return b
}

// read returns the setting of method at the flags' budget over def, read
// under --protocol (attack.Protocol.Apply, as stl run reads its columns):
// the steps and step fraction it sets give way to --steps and
// --step-frac, and a budget on normalized tensors is measured in norm (the
// classifier's input normalization).
func (f *AttackFlags) read(method string, def attack.Budget, norm *attack.Normalization) (attack.Setting, error) {
	s, err := f.Opts.Protocol.Apply(attack.Setting{Name: method, Method: method, Budget: f.budgetOr(def)})
	if err != nil {
		return s, err
	}
	if f.Steps != 0 {
		s.Steps = 0
	}
	if f.StepFrac != 0 {
		s.StepFrac = 0
	}
	if s.Budget.Norm == attack.L2Z {
		s.Budget.Normalization = norm
	}
	return s, nil
}

// Build returns the attack the flags describe (for --attack uap, nil, and
// its fit's options in f.UAP are completed): the method's default
// options, overridden by the flags that apply to it, its budget read under
// the protocol; budgets on normalized tensors are measured in norm.
func (f *AttackFlags) Build(norm *attack.Normalization) (attack.Attack, error) {
	if f.Method == MethodUAP {
		u := &f.UAP.UAP
		s, err := f.read(MethodUAP, attack.DefaultUAPOptions().Budget, norm)
		if err != nil {
			return nil, err
		}
		u.Budget = s.Budget
		if f.Search.Target != 0 {
			u.Budget.Eps = f.Search.Target // fitted at the target, then scaled
		}
		u.DeepFoolIter, u.Candidates, u.Seed = attack.DefaultUAPOptions().DeepFoolIter, f.Candidates, uint64(f.UAP.FitSeed)
		if f.MaxIter != 0 {
			u.DeepFoolIter = f.MaxIter
		}
		if f.UAP.FitImages < 0 {
			return nil, fmt.Errorf("--fit-images %d: want >= 0", f.UAP.FitImages)
		}
		return nil, u.Validate()
	}
	s, c, err := f.Config(norm)
	if err != nil {
		return nil, err
	}
	a, _, err := s.New(c)
	return a, err
}

// Config returns the setting the flags name (the registry method at its
// budget, read under the protocol) and its options.
func (f *AttackFlags) Config(norm *attack.Normalization) (attack.Setting, attack.Config, error) {
	m, err := attack.LookupMethod(f.Method)
	if err != nil {
		return attack.Setting{}, attack.Config{}, err
	}
	c := attack.DefaultConfig()
	s, err := f.read(f.Method, *m.Budget(&c), norm)
	if err != nil {
		return s, c, err
	}
	if err := m.SetTargeted(&c, f.Opts.Targeted); err != nil {
		return s, c, err
	}
	for _, steps := range []*int{&c.BIM.Steps, &c.PGD.Steps} {
		if f.Steps != 0 {
			*steps = f.Steps
		}
	}
	for _, frac := range []*float64{&c.BIM.StepFrac, &c.PGD.StepFrac} {
		if f.StepFrac != 0 {
			*frac = f.StepFrac
		}
	}
	for _, iters := range []*int{&c.DeepFool.MaxIter, &c.CW.MaxIter} {
		if f.MaxIter != 0 {
			*iters = f.MaxIter
		}
	}
	c.PGD.Seed, c.PGD.RandomStart, c.PGD.Restarts = f.Seed, !f.NoRandomStart, f.Restarts
	if f.Steps != 0 {
		c.APGD.Steps = f.Steps
	}
	loss, err := attack.ParseAPGDLoss(f.Loss)
	if err != nil {
		return s, c, err
	}
	c.APGD.Seed, c.APGD.Restarts, c.APGD.Loss = f.Seed, f.Restarts, loss
	c.Square.Seed, c.Square.MaxQueries, c.Square.PInit = f.Seed, f.Queries, f.PInit
	c.DeepFool.Overshoot, c.DeepFool.Candidates = f.Overshoot, f.Candidates
	c.CW.Kappa, c.CW.InitialC, c.CW.BinarySteps, c.CW.LearningRate, c.CW.Overshoot = f.Kappa, f.InitialC, f.BinarySteps, f.LR, f.CWOvershoot
	return s, c, nil
}

// NeedsNormalization reports whether the attack the flags describe
// measures its budget on the classifier's normalized tensors (--norm l2z,
// or a normalized L2 budget under the guo protocol), which the search of
// --target-dissimilarity also needs: then SetJobAttack needs the job's
// Normalization.
func (f *AttackFlags) NeedsNormalization() bool {
	if f.Search.Target != 0 {
		return true
	}
	def := attack.DefaultUAPOptions().Budget
	if m, err := attack.LookupMethod(f.Method); err == nil {
		c := attack.DefaultConfig()
		def = *m.Budget(&c)
	}
	s, err := f.read(f.Method, def, nil)
	return err == nil && s.Budget.Norm == attack.L2Z
}

// SetJobAttack gives the job the attack the flags describe: a registry
// attack, at the strength the search finds with --target-dissimilarity,
// or a universal perturbation fitted (or loaded) and, with
// --target-dissimilarity, scaled to reach it. It prints what it did to
// stdout. Errors the flags cause are UsageErrors.
func (f *AttackFlags) SetJobAttack(ctx context.Context, job *experiment.AttackJob, norm *attack.Normalization, stdout io.Writer, bar progress.Reporter) error {
	if _, err := f.Build(norm); err != nil {
		return UsageError{Err: err}
	}
	var knob attack.Knob
	var at func(s float64) (attack.Attack, error)
	if f.Method == MethodUAP {
		info, fit, err := job.FitUniversal(ctx, f.UAP, bar)
		if err != nil {
			return err
		}
		if info.From != "" {
			fmt.Fprintf(stdout, "UAP loaded from %s: budget %v\n", info.From, info.Budget)
		} else {
			fmt.Fprintf(stdout, "UAP fitted on %d training images of %s: fooling rate %.4f after %d passes (%d DeepFool steps), budget %v (radius %.4g)\n",
				info.FitImages, info.Data, info.FoolingRate, info.Passes, info.Updates, info.Budget, info.Radius)
		}
		fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", f.Opts.Out, experiment.UAPFile, experiment.UAPInfoFile)
		knob = attack.BudgetKnob()
		at = func(s float64) (attack.Attack, error) { return experiment.ScaledUniversal(fit, info.Budget, s) }
		if info.From != "" && f.Budget != 0 && f.Budget != info.Budget.Eps {
			// A saved perturbation scaled to the budget asked for.
			a, err := at(f.Budget)
			if err != nil {
				return UsageError{Err: err}
			}
			job.SetAttack(a)
			fmt.Fprintf(stdout, "UAP scaled from %g to %g\n", info.Budget.Eps, f.Budget)
		}
	} else {
		s, c, err := f.Config(norm)
		if err != nil {
			return UsageError{Err: err}
		}
		a, _, err := s.New(c)
		if err != nil {
			return UsageError{Err: err}
		}
		job.SetAttack(a)
		knob = s.Knob()
		at = func(v float64) (attack.Attack, error) {
			a, _, err := s.WithStrength(c, v)
			return a, err
		}
	}
	if f.Search.Target == 0 {
		return nil
	}
	res, err := job.SearchStrength(ctx, knob, at, f.Search, bar)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "search: %s %.6g reaches an average dissimilarity of %.5f on normalized tensors (target %g) after %d probes; wrote %s\n",
		res.Param, res.Strength, res.Mean, res.Target, len(res.Probes), experiment.SearchFile)
	return nil
}
