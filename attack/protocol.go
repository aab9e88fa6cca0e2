package attack

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Protocol names how the paper's attack columns (PaperSettings: FGSM-0.08,
// FGSM-0.04, BIM, DeepFool, CW, BPDA) are turned into concrete attacks: the
// budget of each column, BIM's steps, and whether the adversarial images
// are rounded to 8 bits before anything sees them. The paper's text and its
// released code disagree on these, so each reading is a named protocol; a
// protocol is the one place that maps a column to its attack settings.
//
// The zero value "" is ProtocolText.
type Protocol string

const (
	// ProtocolText reads section 5.1 literally: every budget is the
	// normalized L2 dissimilarity ||x_adv - x0||_2 / ||x0||_2 on pixels in
	// [0,1] (FGSM-0.08 at 0.08, the others at 0.04), BPDA is PGD at
	// L-infinity 0.031, and the images stay in float32. The settings of
	// PaperSettings.
	ProtocolText Protocol = "text"
	// ProtocolRelease follows the adversarial images the authors released
	// with their code (sample_images_64/fgsm_0.08 against the clean
	// images: every unclipped value differs by exactly 8 on the 0-255
	// scale, and the files are 8-bit PNGs): FGSM-0.08 is one L-infinity
	// sign step of 8/255 and FGSM-0.04 one of 4/255; BIM is L-infinity
	// 4/255 in total with Kurakin et al.'s step of 1/255 and their
	// min(eps+4, 1.25*eps) iterations (eps on the 0-255 scale: 5 steps;
	// "Adversarial examples in the physical world", ICLR 2017 workshop,
	// section 2.2); DeepFool and CW keep the normalized L2 dissimilarity
	// 0.04 of the text; BPDA is unchanged. Every adversarial image is then
	// rounded to 8 bits (Round8) before any defense or classifier sees it,
	// as the released code read its images back from 8-bit files.
	ProtocolRelease Protocol = "release"
	// ProtocolGuo measures the normalized L2 dissimilarity as Guo et al.'s
	// code does ("Countering adversarial images using input
	// transformations", ICLR 2018; their adversary.py compute_stats), on
	// the classifier's mean/std-normalized tensors: with per-channel mean
	// mu_c and standard deviation sigma_c, z = (x - mu)/sigma and the
	// budget bounds ||z_adv - z0||_2 / ||z0||_2 per image (see L2Norm;
	// Guo et al. report the mean of this ratio over images, which a
	// per-image bound also bounds). The budgets are the text's (FGSM-0.08
	// at 0.08, the others at 0.04); BPDA is unchanged; no rounding.
	ProtocolGuo Protocol = "guo"
)

// Release budgets: the sign steps of the released sample images.
const (
	// Release8 is the L-infinity budget of FGSM-0.08 under ProtocolRelease.
	Release8 = 8.0 / 255
	// Release4 is that of FGSM-0.04 and BIM.
	Release4 = 4.0 / 255
)

type protocolEntry struct {
	p      Protocol
	round8 bool
	doc    string
	short  string
}

// protocols lists every protocol, ProtocolText first; doc is the line a
// report shows, short the few words a command's help shows.
var protocols = []protocolEntry{
	{ProtocolText, false, "the paper's text (section 5.1): budgets are the normalized L2 dissimilarity ||x_adv-x0||/||x0|| on [0,1] pixels",
		"the paper's text: normalized L2 on [0,1] pixels"},
	{ProtocolRelease, true, "as the authors' released images show: FGSM-0.08 and FGSM-0.04 are L-infinity sign steps of 8/255 and 4/255, BIM L-infinity 4/255 in 5 steps of 1/255 (Kurakin et al.), DeepFool and CW normalized L2 0.04, every adversarial image rounded to 8 bits",
		"as the released images: L-inf sign steps of 8/255 and 4/255, 8-bit rounding"},
	{ProtocolGuo, false, "as Guo et al.'s code measures it: budgets are the normalized L2 dissimilarity on the classifier's normalized tensors, ||z_adv-z0||/||z0|| with z = (x-mean)/std per channel (FGSM-0.08 at 0.08, the others at 0.04)",
		"normalized L2 on the classifier's mean/std-normalized tensors"},
}

// ProtocolNames returns the names of the protocols, ProtocolText first.
func ProtocolNames() []string {
	var names []string
	for _, p := range protocols {
		names = append(names, string(p.p))
	}
	return names
}

// ParseProtocol returns the named protocol ("" is ProtocolText), or an
// *UnknownError.
func ParseProtocol(name string) (Protocol, error) {
	if name == "" {
		return ProtocolText, nil
	}
	p := Protocol(name)
	if p.index() < 0 {
		return "", &UnknownError{What: "attack protocol", Name: name, Known: ProtocolNames()}
	}
	return p, nil
}

func (p Protocol) index() int {
	if p == "" {
		p = ProtocolText
	}
	return slices.IndexFunc(protocols, func(e protocolEntry) bool { return e.p == p })
}

// IsDefault reports whether p is ProtocolText (or "").
func (p Protocol) IsDefault() bool { return p == "" || p == ProtocolText }

// Round8 reports whether the protocol rounds every adversarial image to 8
// bits (ProtocolRelease).
func (p Protocol) Round8() bool {
	if i := p.index(); i >= 0 {
		return protocols[i].round8
	}
	return false
}

// Doc describes the protocol in one line, for reports; "" for an unknown
// protocol.
func (p Protocol) Doc() string {
	if i := p.index(); i >= 0 {
		return protocols[i].doc
	}
	return ""
}

// Short describes the protocol in a few words, for a command's help; ""
// for an unknown protocol.
func (p Protocol) Short() string {
	if i := p.index(); i >= 0 {
		return protocols[i].short
	}
	return ""
}

// Settings returns the paper's attack settings under p, in the column order
// of the paper's tables. An unknown protocol gives an *UnknownError.
func (p Protocol) Settings() ([]Setting, error) {
	if p.index() < 0 {
		return nil, &UnknownError{What: "attack protocol", Name: string(p), Known: ProtocolNames()}
	}
	out := PaperSettings()
	for i := range out {
		out[i] = p.adapt(out[i])
	}
	return out, nil
}

// Setting returns the paper's setting of that name under p, or an
// *UnknownError for an unknown name or protocol.
func (p Protocol) Setting(name string) (Setting, error) {
	if p.index() < 0 {
		return Setting{}, &UnknownError{What: "attack protocol", Name: string(p), Known: ProtocolNames()}
	}
	s, err := LookupSetting(name)
	if err != nil {
		return Setting{}, err
	}
	return p.adapt(s), nil
}

// Apply reads s, a method at a budget as the text protocol reads it (e.g.
// "fgsm" at normalized L2 0.08, whatever its Name), under p: the reading of
// a command that names a method and a budget rather than one of the
// paper's columns. A setting with the method and budget of one of the
// paper's columns (PaperSettings) becomes that column's setting under p
// (as Setting gives it, named after the column). Any other setting keeps
// its budget, except that under ProtocolGuo a normalized L2 budget (L2Rel)
// is measured on normalized tensors (L2Z; the caller fills
// Budget.Normalization), and that under ProtocolRelease FGSM and BIM at a
// normalized L2 budget other than the columns' are an error: the release
// defines them as L-infinity steps only at the paper's budgets (give an
// L-infinity budget instead). The method need not be one of Methods (a
// universal perturbation's budget is read the same way). An unknown
// protocol gives an *UnknownError.
func (p Protocol) Apply(s Setting) (Setting, error) {
	if p.index() < 0 {
		return Setting{}, &UnknownError{What: "attack protocol", Name: string(p), Known: ProtocolNames()}
	}
	if i := slices.IndexFunc(paperSettings, func(c Setting) bool { return c.Method == s.Method && c.Budget.Equal(s.Budget) }); i >= 0 {
		return p.adapt(paperSettings[i]), nil
	}
	if s.Budget.Norm == L2Rel {
		switch {
		case p == ProtocolGuo:
			s.Budget.Norm = L2Z
		case p == ProtocolRelease && (s.Method == "fgsm" || s.Method == "bim"):
			var at []string
			for _, c := range paperSettings {
				if c.Method == s.Method && c.Budget.Norm == L2Rel {
					at = append(at, fmt.Sprintf("%g (%s: %s)", c.Budget.Eps, c.Name, budgetWords(p.adapt(c).Budget)))
				}
			}
			return Setting{}, fmt.Errorf("attack: the %s protocol defines %s at the paper's budgets only, normalized L2 %s; give another budget in L-infinity", p, s.Method, strings.Join(at, " or "))
		}
	}
	return s, nil
}

// budgetWords writes an L-infinity budget in 255ths when it is a whole
// number of them (e.g. "L-infinity 8/255"), other budgets as Budget.String.
func budgetWords(b Budget) string {
	if k := b.Eps * 255; b.Norm == LInf && math.Abs(k-math.Round(k)) < 1e-9 {
		return fmt.Sprintf("L-infinity %g/255", math.Round(k))
	}
	return b.String()
}

// adapt turns the text's setting s into p's.
func (p Protocol) adapt(s Setting) Setting {
	switch p {
	case ProtocolRelease:
		switch s.Name {
		case PaperFGSM008:
			s.Budget = Budget{Norm: LInf, Eps: Release8}
		case PaperFGSM004:
			s.Budget = Budget{Norm: LInf, Eps: Release4}
		case PaperBIM:
			s.Budget = Budget{Norm: LInf, Eps: Release4}
			s.Steps, s.StepFrac = KurakinSteps(Release4)
		}
	case ProtocolGuo:
		// The normalization is the classifier's: the caller fills
		// Budget.Normalization before building the attack.
		if s.Budget.Norm == L2Rel {
			s.Budget.Norm = L2Z
		}
	}
	return s
}

// KurakinSteps returns the iteration count and the step as a fraction of
// the budget of Kurakin et al.'s basic iterative method at L-infinity
// budget eps (pixels in [0,1]): a step of 1/255 and min(255*eps + 4,
// 1.25*255*eps) iterations, rounded up ("Adversarial examples in the
// physical world", section 2.2). At 4/255: 5 steps of 1/4 of the budget.
func KurakinSteps(eps float64) (steps int, frac float64) {
	e := eps * 255
	n := math.Min(e+4, 1.25*e)
	steps = int(math.Ceil(n - 1e-9))
	return max(steps, 1), math.Min(1, 1/e)
}

// String returns the protocol's name ("text" for "").
func (p Protocol) String() string {
	if p == "" {
		return string(ProtocolText)
	}
	return string(p)
}
