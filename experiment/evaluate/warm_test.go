package evaluate

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/tensor"
)

// warmIdentity is the identity as a defense.WarmTransform that counts the
// images started from an earlier state.
type warmIdentity struct {
	mu         sync.Mutex
	warm, cold int
}

func (*warmIdentity) Name() string     { return "warm identity" }
func (*warmIdentity) Randomized() bool { return false }
func (w *warmIdentity) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	w.mu.Lock()
	w.cold += x.Shape[0]
	w.mu.Unlock()
	return x.Clone(), nil
}

func (w *warmIdentity) ApplyFrom(_ context.Context, x *tensor.Tensor, from, to []*defense.WarmState) (*tensor.Tensor, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range to {
		if from[i] != nil {
			w.warm++
		} else {
			w.cold++
		}
		if to[i] == nil {
			to[i] = &defense.WarmState{}
		}
	}
	return x.Clone(), nil
}

// TestRunWarmStart: with Options.WarmStart the attacks through a defense
// that can start warm start projections from the previous query's state
// (PGD's steps of 0.8/255 are within the cache's radius; APGD's first
// steps and Square's patches are not), give the results of cold starts (the identity
// here), and are cached under keys of their own; the undefended
// classifier's attacks keep theirs.
func TestRunWarmStart(t *testing.T) {
	lin := newLinear(6)
	x, y := testData(lin, 12, 6)
	dir := t.TempDir()
	var reports []*Report
	var counts []*warmIdentity
	for _, warm := range []bool{false, true} {
		w := &warmIdentity{}
		o := fastOptions()
		o.Attacks, o.WarmStart, o.Dir, o.SquareQueries = []string{PGDCE, APGDCE, Square}, warm, dir, 50
		rep, err := Run(context.Background(), Target{Model: lin, NewDefense: defenseOf(w), DefenseName: "warm identity"}, x, y, o)
		if err != nil {
			t.Fatal(err)
		}
		reports, counts = append(reports, rep), append(counts, w)
	}
	if counts[0].warm != 0 || counts[1].warm == 0 {
		t.Errorf("warm starts: %d of %d without WarmStart, %d of %d with it", counts[0].warm, counts[0].warm+counts[0].cold, counts[1].warm, counts[1].warm+counts[1].cold)
	}
	for i, a := range reports[1].Budgets[0].Attacks {
		b := reports[0].Budgets[0].Attacks[i]
		if a.Accuracy != b.Accuracy {
			t.Errorf("%s on %s: accuracy %v warm, %v cold", a.Label(), a.Subject, a.Accuracy, b.Accuracy)
		}
		if want := a.Subject == SubjectUndefended; a.Cached != want {
			t.Errorf("%s on %s: cached %v, want %v", a.Label(), a.Subject, a.Cached, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		t.Error("nothing cached")
	}
}
