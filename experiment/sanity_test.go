package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// sanityNames returns the rows the sanity tables of a fake run have.
func sanityNames(cfg Config) []string {
	names := append([]string(nil), sanityRows...)
	if cfg.SanityBaselines {
		names = append(names, "Shrink (vanilla classifier)", "Broken")
	}
	return names
}

// wbImages returns the number of images the white-box evaluation of a fake
// run uses.
func wbImages(cfg Config) int {
	if cfg.WhiteBoxSubset > 0 && cfg.WhiteBoxSubset < cfg.AttackSubset {
		return cfg.WhiteBoxSubset
	}
	return cfg.AttackSubset
}

// checkSanity checks the white-box sanity tables and notes of a fake run
// with WhiteBox on.
func checkSanity(t *testing.T, res *report.Results, cfg Config) {
	t.Helper()
	byID := map[string]report.Table{}
	for _, tb := range res.Tables {
		byID[tb.ID] = tb
	}
	names, n := sanityNames(cfg), wbImages(cfg)
	want := map[string]int{"whitebox-iterations": len(cfg.sanityStepList()), "whitebox-epsilon": len(SanityEps), "whitebox-controls": 3}
	for id, cols := range want {
		tb, ok := byID[id]
		if !ok {
			t.Errorf("no %s table", id)
			continue
		}
		if len(tb.Columns) != cols {
			t.Errorf("%s: %d columns, want %d", id, len(tb.Columns), cols)
		}
		if len(tb.Rows) != len(names) {
			t.Errorf("%s: %d rows, want %d (%v)", id, len(tb.Rows), len(names), names)
		}
	}
	for _, name := range names {
		if name == "Broken" {
			continue // checked by the caller
		}
		for _, id := range []string{"whitebox-iterations", "whitebox-epsilon"} {
			for j, c := range findRow(t, byID[id], name).Cells {
				if c.Acc == nil || c.Acc.N != n {
					t.Errorf("%s %s column %d = %+v, want an accuracy on %d images", id, name, j, c, n)
				}
			}
		}
		ctl := findRow(t, byID["whitebox-controls"], name).Cells
		if ctl[0].Acc == nil || ctl[1].Acc == nil {
			t.Errorf("%s controls = %+v, want the attack and the noise control", name, ctl)
		}
		if (ctl[2].Acc == nil) != (name == NoDefense) {
			t.Errorf("%s transfer control = %+v", name, ctl[2])
		}
		// The attack at the Table 4 setting is the Table 4 cell itself.
		t4 := findRow(t, byID["table4"], name).Cells[0].Acc
		it := findRow(t, byID["whitebox-iterations"], name).Cells
		if a := it[len(it)-1].Acc; a == nil || t4 == nil || *a != *t4 || t4.N != n {
			t.Errorf("%s at %d iterations = %+v, want Table 4's %+v on %d images", name, cfg.WhiteBoxSteps, a, t4, n)
		}
	}
	// The fake attack at 10*eps clipped to 1 saturates the image: accuracy
	// on No Defense at the largest budget is far below the noise control.
	e := findRow(t, byID["whitebox-epsilon"], NoDefense).Cells
	if e[len(e)-1].Acc.Value > 0.5 {
		t.Errorf("No Defense at eps %g: %+v, want a successful attack", SanityEps[len(SanityEps)-1], e[len(e)-1].Acc)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, name := range names {
		has := strings.Contains(notes, "White-box sanity checks, "+name+": iterations: ")
		if has != (name != "Broken") {
			t.Errorf("sanity note for %s: %v in %q", name, has, notes)
		}
	}
}

func TestSanityStepList(t *testing.T) {
	for _, tc := range []struct {
		steps int
		want  []int
	}{{1, []int{1}}, {3, []int{1, 3}}, {5, []int{1, 5}}, {20, []int{1, 5, 10, 20}}, {50, []int{1, 5, 10, 20, 50}}} {
		c := DefaultConfig()
		c.WhiteBoxSteps = tc.steps
		got := c.sanityStepList()
		if len(got) != len(tc.want) {
			t.Errorf("steps %d: %v, want %v", tc.steps, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("steps %d: %v, want %v", tc.steps, got, tc.want)
			}
		}
	}
}

func TestSignNoise(t *testing.T) {
	x := tensor.New(2, 3, 4, 4)
	for i := range x.Data {
		x.Data[i] = float32(i%7) / 6
	}
	y := signNoise(x, 0.031, 7)
	up, down := 0, 0
	for i, v := range y.Data {
		d := float64(v - x.Data[i])
		if v < 0 || v > 1 || math.Abs(d) > 0.031+1e-6 {
			t.Fatalf("pixel %d: %v from %v, want within 0.031 and [0, 1]", i, v, x.Data[i])
		}
		if d > 0.03 {
			up++
		} else if d < -0.03 {
			down++
		}
	}
	if up < 20 || down < 20 {
		t.Errorf("%d pixels up, %d down: want random signs", up, down)
	}
	z := signNoise(x, 0.031, 7)
	for i := range y.Data {
		if y.Data[i] != z.Data[i] {
			t.Fatal("same seed gave different noise")
		}
	}
}

func TestSanityNote(t *testing.T) {
	acc := func(c int) report.Cell { a := metrics.NewAccuracy(c, 100); return report.Cell{Acc: &a} }
	cells := func(cs ...int) report.Row {
		var r report.Row
		for _, c := range cs {
			r.Cells = append(r.Cells, acc(c))
		}
		return r
	}
	stepCols, epsCols := []string{"1", "5", "20"}, []string{"a", "b", "c"}
	for _, tc := range []struct {
		name       string
		rs, re, rc report.Row
		want, not  []string
	}{
		{"all held", cells(30, 20, 20), cells(40, 20, 2), cells(20, 60, 50),
			[]string{"iterations: non-increasing (held)", "budget: non-increasing (held); reaches 2.0%", "noise control: 60.0%, above", "transfer control: 50.0%, above"}, []string{"NOT"}},
		{"all violated", cells(20, 30, 25), cells(40, 20, 30), cells(50, 40, 50),
			[]string{"iterations: NOT non-increasing (20.0% at 1 to 30.0% at 5)", "budget: NOT non-increasing (20.0% at b to 30.0% at c); still 30.0% at c (NOT near 0)",
				"noise control: 40.0%, NOT above", "transfer control: 50.0%, NOT above"}, nil},
	} {
		got := sanityNote("STL", stepCols, tc.rs, epsCols, tc.re, tc.rc)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q has %q", tc.name, got, w)
			}
		}
	}
}

// stageKeys returns the key of each stage of res by stage name.
func stageKeys(res *report.Results) map[string]string {
	m := map[string]string{}
	for _, s := range res.Stages {
		m[s.Name] = s.Key
	}
	return m
}

func TestRunSanityBaselines(t *testing.T) {
	f := newFakes()
	cfg := fakeConfig()
	cfg.WhiteBox, cfg.LambdaSweep = true, nil
	dir := t.TempDir()
	before, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}

	cfg.SanityBaselines = true
	b := f.backend()
	var mu sync.Mutex
	draws := map[string][]int{} // Adaptive's draws by transform
	adaptive := b.Adaptive
	b.Adaptive = func(tr defense.Transform, m attack.Model, n int) (attack.Model, error) {
		mu.Lock()
		draws[tr.Name()] = append(draws[tr.Name()], n)
		mu.Unlock()
		return adaptive(tr, m, n)
	}
	rec := &recorder{}
	res, err := RunWith(context.Background(), cfg, b, dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d", rec.runLast, rec.runTotal)
	}
	checkSanity(t, res, cfg)
	for _, id := range []string{"whitebox-iterations", "whitebox-epsilon", "whitebox-controls"} {
		for _, tb := range res.Tables {
			if tb.ID != id {
				continue
			}
			for _, c := range findRow(t, tb, "Broken").Cells {
				if c.Acc != nil || !strings.Contains(c.Missing, "synthetic transform failure") {
					t.Errorf("%s Broken = %+v, want missing with the white-box attack's reason", id, c)
				}
			}
		}
	}
	// The Table 4 stage is reused; Shrink's sanity stages are new, each
	// attack through Adaptive with the run's EOT draws: the steps below
	// WhiteBoxSteps and the budgets other than 0.031.
	if d := draws["Shrink"]; len(d) != len(cfg.sanityStepList())-1+len(SanityEps)-1 || d[0] != cfg.EOTDraws {
		t.Errorf("Shrink attacked through Adaptive with draws %v, want %d times %d", d, len(cfg.sanityStepList())-1+len(SanityEps)-1, cfg.EOTDraws)
	}
	keys := stageKeys(res)
	for _, st := range []string{"whitebox-steps1-shrink", "whitebox-eps0.25-shrink", "whitebox-noise-shrink", "whitebox-transfer-shrink"} {
		if keys[st] == "" {
			t.Errorf("no stage %s in %v", st, keys)
		}
	}
	// Every stage of the run without baseline sanity checks keeps its key
	// and is reused.
	cached := map[string]bool{}
	for _, s := range res.Stages {
		cached[s.Name] = s.Cached
	}
	for name, key := range stageKeys(before) {
		if keys[name] != key || !cached[name] {
			t.Errorf("stage %s: key %s (cached %v), was %s", name, keys[name], cached[name], key)
		}
	}
	// A third run computes nothing.
	n := f.attacked.Load()
	again, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.attacked.Load() != n {
		t.Errorf("third run attacked again (%d -> %d)", n, f.attacked.Load())
	}
	b1, _ := json.Marshal(res.Tables)
	b2, _ := json.Marshal(again.Tables)
	if string(b1) != string(b2) {
		t.Error("third run gave different tables")
	}
}

func TestRunWhiteBoxSubset(t *testing.T) {
	f := newFakes()
	cfg := fakeConfig()
	cfg.WhiteBox, cfg.LambdaSweep, cfg.Attacks = true, nil, []string{AttackFGSM008}
	all, err := RunWith(context.Background(), cfg, f.backend(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WhiteBoxSubset = cfg.AttackSubset // every attacked image: today's keys
	same, err := RunWith(context.Background(), cfg, f.backend(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := stageKeys(all), stageKeys(same); len(a) != len(b) {
		t.Errorf("whitebox_subset %d: %d stages, 0: %d", cfg.WhiteBoxSubset, len(b), len(a))
	} else {
		for name, key := range a {
			if b[name] != key {
				t.Errorf("whitebox_subset %d changed the key of %s", cfg.WhiteBoxSubset, name)
			}
		}
	}
	if same.Data.WhiteBoxSubset != 12 || same.Data.WhiteBoxSubsetted() {
		t.Errorf("whitebox_subset 12 of 12: data %+v", same.Data)
	}

	cfg.WhiteBoxSubset = 6 // 2 per class
	rec := &recorder{}
	res, err := RunWith(context.Background(), cfg, f.backend(), t.TempDir(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d", rec.runLast, rec.runTotal)
	}
	d := res.Data
	if d.WhiteBoxSubset != 6 || d.WhiteBoxPerClassMin != 2 || d.WhiteBoxPerClassMax != 2 || d.AttackSubset != 12 {
		t.Errorf("data = %+v, want a white-box subset of 6, 2 per class, of 12 attacked", d)
	}
	checkSanity(t, res, cfg)
	if c := findRow(t, res.Tables[0], NoDefense).Cells[1]; c.Acc == nil || c.Acc.N != 12 {
		t.Errorf("Table 1 FGSM-0.08 = %+v, want 12 images", c)
	}
	for _, tb := range res.Tables[2:] {
		if !strings.Contains(tb.Caption, "subset of 6 of the 12 attacked images") {
			t.Errorf("%s caption does not state the subset: %q", tb.ID, tb.Caption)
		}
	}
	if notes := strings.Join(res.Notes, "\n"); !strings.Contains(notes, "subset of 6 of the 12 attacked images (2 to 2 per class, seed 1)") {
		t.Errorf("notes do not state the subset: %q", notes)
	}
	var buf bytes.Buffer
	if err := report.WriteText(&buf, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "class-balanced subset of 6 of the 12 attacked images") {
		t.Errorf("terminal summary does not state the subset:\n%s", buf.String())
	}
	// Only the white-box stages change key.
	a, b := stageKeys(all), stageKeys(res)
	for name, key := range a {
		if wb := strings.HasPrefix(name, "whitebox-"); wb == (b[name] == key) {
			t.Errorf("stage %s: key changed %v, want %v", name, b[name] != key, wb)
		}
	}
}

// TestRunExactBackwardKeys checks that a baseline attacked through its
// exact gradient (Baseline.Backward) has white-box and sanity stages of
// their own, and that no other stage changes key.
func TestRunExactBackwardKeys(t *testing.T) {
	cfg := fakeConfig()
	cfg.WhiteBox, cfg.SanityBaselines, cfg.LambdaSweep, cfg.Attacks = true, true, nil, []string{AttackFGSM008}
	var keys [2]map[string]string
	for i, backward := range []string{"", BackwardExact} {
		f := newFakes()
		b := f.backend()
		baselines := b.Baselines
		b.Baselines = func(ctx context.Context, cfg Config, train *dataset.Set, dir string, rep progress.Reporter) ([]Baseline, []Missing, error) {
			bs, miss, err := baselines(ctx, cfg, train, dir, rep)
			bs[0].Backward = backward // Shrink
			return bs, miss, err
		}
		res, err := RunWith(context.Background(), cfg, b, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c := res.Tables[2].Caption; strings.Contains(c, "exact gradient where it has one (Shrink)") != (backward != "") {
			t.Errorf("backward %q: Table 4 caption %q", backward, c)
		}
		keys[i] = stageKeys(res)
	}
	for name, key := range keys[0] {
		// The attacks on Shrink depend on its backward pass; its noise and
		// transfer controls do not.
		attacked := strings.HasPrefix(name, "whitebox-") && strings.HasSuffix(name, "-shrink") &&
			!strings.HasPrefix(name, "whitebox-noise") && !strings.HasPrefix(name, "whitebox-transfer")
		if changed := keys[1][name] != key; changed != attacked {
			t.Errorf("stage %s: key changed %v, want %v", name, changed, attacked)
		}
	}
}
