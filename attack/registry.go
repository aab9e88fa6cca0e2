package attack

import (
	"fmt"
	"slices"
)

// Config holds the options of every attack, so that a caller (the
// experiment runner, the command line) can build any of them by name (see
// Methods and PaperSettings). Each field's default is its Default*Options.
type Config struct {
	FGSM     FGSMOptions
	BIM      BIMOptions
	PGD      PGDOptions
	DeepFool DeepFoolOptions
	CW       CWOptions
	APGD     APGDOptions
	Square   SquareOptions
}

// DefaultConfig returns every attack's default options.
func DefaultConfig() Config {
	return Config{
		FGSM:     DefaultFGSMOptions(),
		BIM:      DefaultBIMOptions(),
		PGD:      DefaultPGDOptions(),
		DeepFool: DefaultDeepFoolOptions(),
		CW:       DefaultCWOptions(),
		APGD:     DefaultAPGDOptions(),
		Square:   DefaultSquareOptions(),
	}
}

// Route is where an attack takes its gradients from.
type Route int

const (
	// GrayBox attacks take the gradients of the undefended classifier; the
	// defense then transforms the adversarial images (the paper's section
	// 5.1, Tables 1 and 5).
	GrayBox Route = iota
	// WhiteBox attacks differentiate through the defense with BPDA, and
	// EOT over randomized defenses: run them against a model wrapped by
	// Adaptive (the paper's Table 4).
	WhiteBox
)

// Method is one attack algorithm of this package.
type Method struct {
	// Name is how the command line names it, e.g. "fgsm".
	Name string
	// Label is its display name, the start of Attack.Name, e.g. "FGSM".
	Label string
	// Params are its options besides Budget and Targeted, as the command
	// line spells them.
	Params []string
	// Targetable reports whether it has a targeted variant.
	Targetable bool
	// Randomized reports whether it draws random numbers with the default
	// options (PGD's random start, seeded by PGDOptions.Seed).
	Randomized bool
	// fields returns the method's budget and targeted flag in c (nil when
	// not Targetable).
	fields func(c *Config) (*Budget, *bool)
	// iters returns the method's step count and step fraction in c (nil
	// for methods without them).
	iters func(c *Config) (*int, *float64)
	build func(c Config) (Attack, error)
	// options returns the method's options in c.
	options func(c Config) any
	// knob sets its strength (see Knob); nil for the methods whose
	// strength is their budget.
	knob *Knob
}

var methods = []Method{
	{Name: "fgsm", Label: "FGSM", Targetable: true,
		fields:  func(c *Config) (*Budget, *bool) { return &c.FGSM.Budget, &c.FGSM.Targeted },
		build:   func(c Config) (Attack, error) { return NewFGSM(c.FGSM) },
		options: func(c Config) any { return c.FGSM }},
	{Name: "bim", Label: "BIM", Params: []string{"steps", "step-frac"}, Targetable: true,
		fields:  func(c *Config) (*Budget, *bool) { return &c.BIM.Budget, &c.BIM.Targeted },
		iters:   func(c *Config) (*int, *float64) { return &c.BIM.Steps, &c.BIM.StepFrac },
		build:   func(c Config) (Attack, error) { return NewBIM(c.BIM) },
		options: func(c Config) any { return c.BIM }},
	{Name: "pgd", Label: "PGD", Params: []string{"steps", "step-frac", "seed", "no-random-start", "restarts"},
		Targetable: true, Randomized: true,
		fields:  func(c *Config) (*Budget, *bool) { return &c.PGD.Budget, &c.PGD.Targeted },
		iters:   func(c *Config) (*int, *float64) { return &c.PGD.Steps, &c.PGD.StepFrac },
		build:   func(c Config) (Attack, error) { return NewPGD(c.PGD) },
		options: func(c Config) any { return c.PGD }},
	{Name: "deepfool", Label: "DeepFool", Params: []string{"overshoot", "max-iter", "candidates"},
		fields:  func(c *Config) (*Budget, *bool) { return &c.DeepFool.Budget, nil },
		build:   func(c Config) (Attack, error) { return NewDeepFool(c.DeepFool) },
		options: func(c Config) any { return c.DeepFool },
		knob:    deepFoolKnob},
	{Name: "cw", Label: "CW", Params: []string{"kappa", "initial-c", "binary-steps", "max-iter", "lr", "cw-overshoot"}, Targetable: true,
		fields:  func(c *Config) (*Budget, *bool) { return &c.CW.Budget, &c.CW.Targeted },
		build:   func(c Config) (Attack, error) { return NewCW(c.CW) },
		options: func(c Config) any { return c.CW },
		knob:    cwKnob},
	{Name: "apgd", Label: "APGD", Params: []string{"steps", "seed", "restarts", "loss"}, Targetable: true, Randomized: true,
		fields:  func(c *Config) (*Budget, *bool) { return &c.APGD.Budget, &c.APGD.Targeted },
		build:   func(c Config) (Attack, error) { return NewAPGD(c.APGD) },
		options: func(c Config) any { return c.APGD }},
	{Name: "square", Label: "Square", Params: []string{"seed", "queries", "p-init"}, Targetable: true, Randomized: true,
		fields:  func(c *Config) (*Budget, *bool) { return &c.Square.Budget, &c.Square.Targeted },
		build:   func(c Config) (Attack, error) { return NewSquare(c.Square) },
		options: func(c Config) any { return c.Square }},
}

// Methods returns every attack method, in a fixed order. The caller may
// modify the returned slice.
func Methods() []Method { return append([]Method(nil), methods...) }

// MethodNames returns the names of Methods, in order.
func MethodNames() []string {
	var names []string
	for _, m := range methods {
		names = append(names, m.Name)
	}
	return names
}

// UnknownError reports a name the registry does not know.
type UnknownError struct {
	What  string // "attack" or "paper attack"
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("attack: unknown %s %q (want one of %v)", e.What, e.Name, e.Known)
}

// LookupMethod returns the named method, or an *UnknownError.
func LookupMethod(name string) (Method, error) {
	if i := slices.IndexFunc(methods, func(m Method) bool { return m.Name == name }); i >= 0 {
		return methods[i], nil
	}
	return Method{}, &UnknownError{What: "attack", Name: name, Known: MethodNames()}
}

// Budget returns a pointer to the method's budget in c.
func (m Method) Budget(c *Config) *Budget {
	b, _ := m.fields(c)
	return b
}

// SetTargeted sets the method's Targeted option in c. It returns an
// *OptionError when targeted is true and the method is not Targetable.
func (m Method) SetTargeted(c *Config, targeted bool) error {
	_, t := m.fields(c)
	if t == nil {
		if targeted {
			return optErr(m.Label, "Targeted", true, "has no targeted variant")
		}
		return nil
	}
	*t = targeted
	return nil
}

// New builds the method with its options in c; their Validate errors are
// returned.
func (m Method) New(c Config) (Attack, error) { return m.build(c) }

// Options returns the method's options in c (an FGSMOptions, ...): what
// New builds from, for cache keys and reports.
func (m Method) Options(c Config) any { return m.options(c) }

// Names of the paper's attack settings (section 5.1 and Table 4).
const (
	PaperFGSM008  = "FGSM-0.08" // FGSM, normalized L2 dissimilarity 0.08
	PaperFGSM004  = "FGSM-0.04" // FGSM, normalized L2 dissimilarity 0.04
	PaperBIM      = "BIM"       // BIM at dissimilarity 0.04
	PaperDeepFool = "DeepFool"  // DeepFool capped at dissimilarity 0.04
	PaperCW       = "CW"        // CW-L2 capped at dissimilarity 0.04
	PaperBPDA     = "BPDA"      // PGD at L-infinity 0.031, to run through BPDA
)

// Setting is an attack configured as in the paper: a method at a budget.
// This package's defaults stand for what the paper does not state (steps,
// step sizes, CW's optimizer).
type Setting struct {
	// Name is how configuration files and result tables name it (the
	// column label of the paper's tables), e.g. "FGSM-0.08".
	Name string
	// Method is the name of its Method.
	Method string
	// Budget is the paper's budget for it.
	Budget Budget
	// Route is where it takes its gradients from.
	Route Route
	// Steps and StepFrac, when not zero, replace the method's iteration
	// count and step fraction (BIM and PGD only; see Protocol). Zero in
	// every setting of the paper's text, which leaves them to Config.
	Steps    int
	StepFrac float64
}

var paperSettings = []Setting{
	{Name: PaperFGSM008, Method: "fgsm", Budget: Budget{Norm: L2Rel, Eps: 0.08}, Route: GrayBox},
	{Name: PaperFGSM004, Method: "fgsm", Budget: Budget{Norm: L2Rel, Eps: 0.04}, Route: GrayBox},
	{Name: PaperBIM, Method: "bim", Budget: Budget{Norm: L2Rel, Eps: 0.04}, Route: GrayBox},
	{Name: PaperDeepFool, Method: "deepfool", Budget: Budget{Norm: L2Rel, Eps: 0.04}, Route: GrayBox},
	{Name: PaperCW, Method: "cw", Budget: Budget{Norm: L2Rel, Eps: 0.04}, Route: GrayBox},
	{Name: PaperBPDA, Method: "pgd", Budget: Budget{Norm: LInf, Eps: 0.031}, Route: WhiteBox},
}

// PaperBudget returns the paper's budget in norm n: normalized L2
// dissimilarity 0.04 (section 5.1) or L-infinity 0.031 (Table 4).
func PaperBudget(n Norm) Budget {
	if n == LInf {
		return Budget{Norm: LInf, Eps: 0.031}
	}
	return Budget{Norm: n, Eps: 0.04}
}

// PaperAttacks lists the names of PaperSettings, in the column order of
// the paper's tables.
var PaperAttacks = PaperNames()

// PaperSettings returns the paper's attack settings in the column order of
// its tables. The caller may modify the returned slice.
func PaperSettings() []Setting { return append([]Setting(nil), paperSettings...) }

// PaperNames returns the names of the paper's settings whose Route is one
// of routes (all of them when routes is empty), in column order.
func PaperNames(routes ...Route) []string {
	var names []string
	for _, s := range paperSettings {
		if len(routes) == 0 || slices.Contains(routes, s.Route) {
			names = append(names, s.Name)
		}
	}
	return names
}

// LookupSetting returns the paper's setting of that name, or an
// *UnknownError.
func LookupSetting(name string) (Setting, error) {
	if i := slices.IndexFunc(paperSettings, func(s Setting) bool { return s.Name == name }); i >= 0 {
		return paperSettings[i], nil
	}
	return Setting{}, &UnknownError{What: "paper attack", Name: name, Known: PaperNames()}
}

// method returns the setting's method.
func (s Setting) method() Method {
	m, err := LookupMethod(s.Method)
	if err != nil {
		panic("attack: paper setting " + s.Name + " of an unknown method") // the tables above are consistent
	}
	return m
}

// Randomized reports whether the setting's method draws random numbers.
func (s Setting) Randomized() bool { return s.method().Randomized }

// New builds the setting from c, its budget (and its Steps and StepFrac
// when set) replaced by the setting's, and returns the attack and its
// options (as Method.Options).
func (s Setting) New(c Config) (Attack, any, error) { return s.build(c, nil) }

// WithStrength is New with the strength of the setting's method set to v
// (Method.Knob; Method.WithStrength) over the setting's budget.
func (s Setting) WithStrength(c Config, v float64) (Attack, any, error) { return s.build(c, &v) }

// Knob returns the strength knob of the setting's method.
func (s Setting) Knob() Knob { return s.method().Knob() }

func (s Setting) build(c Config, strength *float64) (Attack, any, error) {
	m := s.method()
	*m.Budget(&c) = s.Budget
	if s.Steps != 0 || s.StepFrac != 0 {
		if m.iters == nil {
			return nil, nil, optErr(m.Label, "Steps", s.Steps, "the method has no steps")
		}
		steps, frac := m.iters(&c)
		if s.Steps != 0 {
			*steps = s.Steps
		}
		if s.StepFrac != 0 {
			*frac = s.StepFrac
		}
	}
	if strength != nil {
		m.setStrength(&c, *strength)
	}
	a, err := m.New(c)
	if err != nil {
		return nil, nil, err
	}
	return a, m.Options(c), nil
}

// PaperAttack returns the attack the paper names (see PaperSettings) with
// the default options otherwise. seed seeds PGD's random start (the only
// random attack). An unknown name gives an *UnknownError.
func PaperAttack(name string, seed uint64) (Attack, error) {
	s, err := LookupSetting(name)
	if err != nil {
		return nil, err
	}
	c := DefaultConfig()
	c.PGD.Seed = seed
	a, _, err := s.New(c)
	return a, err
}
