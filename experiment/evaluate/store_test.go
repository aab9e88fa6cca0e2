package evaluate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stl-defense/stl/attack"
)

// TestRouteSettingsKey: a route's settings enter the cache keys of its
// attacks (other settings recompute them, the same reload them), and a
// route without settings keeps the key it had before routes had settings.
func TestRouteSettingsKey(t *testing.T) {
	lin := newLinear(3)
	x, y := testData(lin, 12, 4)
	o := fastOptions()
	o.Dir = t.TempDir()
	o.Attacks = []string{PGDCE}
	evaluate := func(settings string) *Report {
		t.Helper()
		rt := Route{Name: "exactish", Backward: func(attack.Transform) (attack.Approx, error) { return nil, nil }}
		if settings != "" {
			rt.Settings = json.RawMessage(settings)
		}
		tgt := Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity}), Routes: []Route{rt}}
		rep, err := Run(context.Background(), tgt, x, y, o)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	cached := func(rep *Report) (defended, undefended int) {
		for _, a := range rep.Budgets[0].Attacks {
			if a.Cached && a.Subject == subjDefended {
				defended++
			} else if a.Cached {
				undefended++
			}
		}
		return
	}
	first := evaluate(`{"k":1}`)
	if string(first.RouteSettings["exactish"]) != `{"k":1}` {
		t.Errorf("report's route settings %s", first.RouteSettings)
	}
	if d, u := cached(evaluate(`{"k":1}`)); d != 1 || u != 1 {
		t.Errorf("same settings: %d defended and %d undefended attacks reloaded, want 1 and 1", d, u)
	}
	if d, u := cached(evaluate(`{"k":2}`)); d != 0 || u != 1 {
		t.Errorf("other settings: %d defended and %d undefended attacks reloaded, want 0 and 1", d, u)
	}
	if rep := evaluate(""); rep.RouteSettings != nil {
		t.Errorf("a route without settings reports %s", rep.RouteSettings)
	}

	// The key of a route without settings, as computed before settings.
	s, err := newStore(t.TempDir(), "k", x, y)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{o: o}
	sp := spec{subj: subject{name: subjDefended, defended: true}, attack: PGDCE, route: RouteBPDA, budget: DefaultBudget}
	act := make([]bool, len(y))
	got, err := s.key(r, sp, json.RawMessage(`{"a":1}`), act)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write(s.base)
	fmt.Fprintf(h, "\n%v %d\n%s\n%v\n%d %d %d %d\n", sp.id(), sp.steps, `{"a":1}`, act, o.Seed, o.Batch, o.EOTDraws, o.EvalDraws)
	if want := hex.EncodeToString(h.Sum(nil))[:16]; got[len(got)-16:] != want {
		t.Errorf("bpda key %s, want the hash of before route settings %s", got, want)
	}
}

// TestDefenseKey: Target.DefenseKey enters the defended classifier's keys
// only, so that two defenses in front of one classifier share its
// undefended attacks.
func TestDefenseKey(t *testing.T) {
	lin := newLinear(5)
	x, y := testData(lin, 12, 6)
	o := fastOptions()
	o.Dir = t.TempDir()
	o.Attacks = []string{PGDCE, Noise}
	cached := func(defenseKey string) map[string]int {
		t.Helper()
		tgt := Target{Model: lin, NewDefense: defenseOf(funcTransform{"identity", identity}), DefenseKey: defenseKey}
		rep, err := Run(context.Background(), tgt, x, y, o)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, a := range rep.Budgets[0].Attacks {
			if a.Cached {
				n[a.Subject]++
			}
		}
		return n
	}
	cached("a")
	if n := cached("b"); n[SubjectDefended] != 0 || n[SubjectUndefended] != 2 {
		t.Errorf("another defense key: reloaded %v, want the 2 undefended attacks only", n)
	}
	if n := cached("a"); n[SubjectDefended] != 2 {
		t.Errorf("the same defense key: reloaded %v, want the 2 defended attacks too", n)
	}
}
