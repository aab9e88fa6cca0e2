package attack

import "fmt"

// Names of the paper's attack settings (section 5.1 and Table 4).
const (
	PaperFGSM008  = "FGSM-0.08" // FGSM, normalized L2 dissimilarity 0.08
	PaperFGSM004  = "FGSM-0.04" // FGSM, normalized L2 dissimilarity 0.04
	PaperBIM      = "BIM"       // BIM at dissimilarity 0.04
	PaperDeepFool = "DeepFool"  // DeepFool capped at dissimilarity 0.04
	PaperCW       = "CW"        // CW-L2 capped at dissimilarity 0.04
	PaperBPDA     = "BPDA"      // PGD at L-infinity 0.031, to run through BPDA
)

// PaperAttacks lists the names PaperAttack accepts, in the column order of
// the paper's tables.
var PaperAttacks = []string{PaperFGSM008, PaperFGSM004, PaperBIM, PaperDeepFool, PaperCW, PaperBPDA}

// PaperAttack returns the attack the paper names, with this package's
// defaults for what the paper does not state (steps, step sizes, CW's
// optimizer). seed seeds PGD's random start (the only random attack). The
// BPDA setting is PGD at L-infinity 0.031; run it against a model wrapped
// by Adaptive. An unknown name gives an error listing the known ones.
func PaperAttack(name string, seed uint64) (Attack, error) {
	l2 := Budget{Norm: L2Rel, Eps: 0.04}
	switch name {
	case PaperFGSM008:
		return NewFGSM(FGSMOptions{Budget: Budget{Norm: L2Rel, Eps: 0.08}})
	case PaperFGSM004:
		return NewFGSM(FGSMOptions{Budget: l2})
	case PaperBIM:
		return NewBIM(DefaultBIMOptions())
	case PaperDeepFool:
		return NewDeepFool(DefaultDeepFoolOptions())
	case PaperCW:
		return NewCW(DefaultCWOptions())
	case PaperBPDA:
		o := DefaultPGDOptions()
		o.Seed = seed
		return NewPGD(o)
	}
	return nil, fmt.Errorf("attack: unknown paper attack %q (want one of %v)", name, PaperAttacks)
}
