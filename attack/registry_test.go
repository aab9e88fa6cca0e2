package attack

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestPaperAttack(t *testing.T) {
	want := map[string]Budget{
		PaperFGSM008: {Norm: L2Rel, Eps: 0.08}, PaperFGSM004: {Norm: L2Rel, Eps: 0.04}, PaperBIM: {Norm: L2Rel, Eps: 0.04},
		PaperDeepFool: {Norm: L2Rel, Eps: 0.04}, PaperCW: {Norm: L2Rel, Eps: 0.04}, PaperBPDA: {Norm: LInf, Eps: 0.031},
	}
	for _, name := range PaperAttacks {
		a, err := PaperAttack(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if a.Budget() != want[name] {
			t.Errorf("%s: budget %v, want %v", name, a.Budget(), want[name])
		}
	}
	if _, err := PaperAttack("FGSM-0.5", 1); err == nil {
		t.Error("unknown name accepted")
	}
}

// TestMethods builds every method with the default options and checks
// what the registry states about it.
func TestMethods(t *testing.T) {
	c := DefaultConfig()
	for _, m := range Methods() {
		a, err := m.New(c)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if !strings.HasPrefix(a.Name(), m.Label) {
			t.Errorf("%s: attack name %q does not start with the label %q", m.Name, a.Name(), m.Label)
		}
		if a.Budget() != *m.Budget(&c) {
			t.Errorf("%s: budget %v, registry %v", m.Name, a.Budget(), *m.Budget(&c))
		}
		// The options encode as the attack does (the cache keys of the
		// experiment hash them).
		ja, _ := json.Marshal(a)
		jo, _ := json.Marshal(m.Options(c))
		if string(ja) != string(jo) {
			t.Errorf("%s: attack encodes as %s, its options as %s", m.Name, ja, jo)
		}
		cc := c
		err = m.SetTargeted(&cc, true)
		if m.Targetable != (err == nil) {
			t.Errorf("%s: SetTargeted: %v, targetable %v", m.Name, err, m.Targetable)
		}
		if a, err := m.New(cc); err == nil && a.Targeted() != m.Targetable {
			t.Errorf("%s: targeted %v after SetTargeted", m.Name, a.Targeted())
		}
	}
	var ue *UnknownError
	if _, err := LookupMethod("nope"); !errors.As(err, &ue) {
		t.Errorf("LookupMethod(nope): %v", err)
	}
	if got := strings.Join(PaperNames(GrayBox), " "); got != "FGSM-0.08 FGSM-0.04 BIM DeepFool CW" {
		t.Errorf("gray-box settings %q", got)
	}
	if got := PaperNames(WhiteBox); len(got) != 1 || got[0] != PaperBPDA {
		t.Errorf("white-box settings %q", got)
	}
	for _, s := range PaperSettings() {
		if s.Randomized() != (s.Method == "pgd") {
			t.Errorf("%s: randomized %v", s.Name, s.Randomized())
		}
	}
}
