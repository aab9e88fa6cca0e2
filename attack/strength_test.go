package attack

import (
	"context"
	"testing"
)

func mean64(v []float64, mask []bool) float64 {
	s, n := 0.0, 0
	for i, x := range v {
		if mask == nil || mask[i] {
			s += x
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return s / float64(n)
}

func mustRun(t *testing.T, a Attack, err error, m Model, f *fixture) *Result {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Run(context.Background(), m, f.x, f.labels)
	if err != nil {
		t.Fatalf("%s: %v", a.Name(), err)
	}
	return r
}

// TestStrength runs every attack at the paper's budgets on the trained
// test classifier and checks their relative strength (issue 4).
func TestStrength(t *testing.T) {
	f := getFixture(t)
	clean := accuracyOf(t, f.m, f.x, f.labels)
	l2 := Budget{Norm: L2Rel, Eps: 0.04}

	fg, err := NewFGSM(FGSMOptions{Budget: l2})
	rF := mustRun(t, fg, err, f.m, f)
	fg8, err := NewFGSM(FGSMOptions{Budget: Budget{Norm: L2Rel, Eps: 0.08}})
	rF8 := mustRun(t, fg8, err, f.m, f)
	bo := DefaultBIMOptions()
	bim, err := NewBIM(bo)
	rB := mustRun(t, bim, err, f.m, f)
	df, err := NewDeepFool(DefaultDeepFoolOptions())
	rD := mustRun(t, df, err, f.m, f)
	cw, err := NewCW(DefaultCWOptions())
	rC := mustRun(t, cw, err, f.m, f)
	po := DefaultPGDOptions()
	po.Budget = l2
	pgd, err := NewPGD(po)
	rP := mustRun(t, pgd, err, f.m, f)

	for _, r := range []struct {
		name string
		r    *Result
	}{{"FGSM-0.04", rF}, {"FGSM-0.08", rF8}, {"BIM", rB}, {"PGD-l2", rP}, {"DeepFool", rD}, {"CW", rC}} {
		t.Logf("%-10s clean %.3f adv %.3f success %.3f mean dissim %.4f (successful %.4f) iters %d",
			r.name, clean, r.r.AdvAccuracy(f.labels), r.r.SuccessRate(), mean64(r.r.Dissim, nil), mean64(r.r.Dissim, r.r.Success), r.r.Passes)
	}
	if a := rF.AdvAccuracy(f.labels); a > clean-0.4 {
		t.Errorf("FGSM-0.04 accuracy %.3f, want at most clean %.3f - 0.4", a, clean)
	}
	if a := rB.AdvAccuracy(f.labels); a > rF.AdvAccuracy(f.labels) || a > clean-0.4 {
		t.Errorf("BIM accuracy %.3f, want <= FGSM's %.3f and <= clean-0.4", a, rF.AdvAccuracy(f.labels))
	}
	if s, sF := rC.SuccessRate(), rF.SuccessRate(); s < sF {
		t.Errorf("CW success %.3f < FGSM success %.3f at the same L2 budget", s, sF)
	}
	if rD.SuccessRate() < 0.5 {
		t.Errorf("DeepFool success %.3f, want >= 0.5", rD.SuccessRate())
	}
	// DeepFool's minimal perturbations are smaller than FGSM's (which
	// spends the whole budget) on the images both attacks flip.
	both := make([]bool, len(rD.Success))
	for i := range both {
		both[i] = rD.Success[i] && rF.Success[i] && rD.CleanPred[i] == f.labels[i]
	}
	if dD, dF := mean64(rD.Dissim, both), mean64(rF.Dissim, both); !(dD < dF) {
		t.Errorf("DeepFool mean dissimilarity %.4f, want < FGSM's %.4f", dD, dF)
	}
}
