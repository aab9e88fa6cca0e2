package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stl-defense/stl/experiment/evaluate"
	"github.com/stl-defense/stl/experiment/report"
)

// suiteConfig is the fake run with the white-box table and a small suite.
func suiteConfig() Config {
	cfg := fakeConfig()
	cfg.WhiteBox, cfg.LambdaSweep, cfg.WhiteBoxSteps = true, nil, 5
	cfg.WhiteBoxSuite = WhiteBoxSuiteSettings{Attacks: []string{evaluate.PGDCE, evaluate.APGDCW, evaluate.Square, evaluate.Transfer, evaluate.Noise},
		APGDSteps: 5, SquareQueries: 20, EvalDraws: 1}
	return cfg
}

func findTable(res *report.Results, id string) *report.Table {
	for i := range res.Tables {
		if res.Tables[i].ID == id {
			return &res.Tables[i]
		}
	}
	return nil
}

// cancelAfter cancels a context once the evaluation has finished n
// attacks, as an interruption in the middle of a suite stage.
type cancelAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Report(stage string, done, total int, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if stage == "evaluate" && done >= c.n && c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
}

// TestRunWhiteBoxSuite runs the suite on the fake run's white-box rows:
// its table (clean, one column per attack and route, the worst case),
// missing rows with their reason, the checks in the notes, every other
// stage's key unchanged, a second run reusing every stage, and an
// interrupted stage resuming attack by attack.
func TestRunWhiteBoxSuite(t *testing.T) {
	f := newFakes()
	plain := suiteConfig()
	plain.WhiteBoxSuite = WhiteBoxSuiteSettings{}
	before, err := RunWith(context.Background(), plain, f.backend(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if findTable(before, "table4-suite") != nil {
		t.Fatal("a run without the suite has its table")
	}

	cfg := suiteConfig()
	dir := t.TempDir()
	res := runToEnd(t, cfg, f.backend(), dir)
	tb := findTable(res, "table4-suite")
	if tb == nil {
		t.Fatal("no suite table")
	}
	wantCols := []string{"clean", "PGD-CE (bpda)", "APGD-CW (bpda)", "Square", "transfer from undefended", "random noise", "worst case"}
	if !slices.Equal(tb.Columns, wantCols) {
		t.Fatalf("columns %q, want %q", tb.Columns, wantCols)
	}
	for _, name := range []string{NoDefense, RowSTL, RowSTLCluster, "Shrink (vanilla classifier)"} {
		row := findRow(t, *tb, name)
		worst := row.Cells[len(row.Cells)-1].Acc
		if worst == nil || worst.N != 12 {
			t.Fatalf("%s: worst case %+v, want an accuracy on the 12 white-box images", name, row.Cells[len(row.Cells)-1])
		}
		for j, c := range row.Cells[:len(row.Cells)-1] {
			switch {
			case c.Acc == nil && !(name == NoDefense && tb.Columns[j] == "transfer from undefended"):
				t.Errorf("%s, %s: missing (%s)", name, tb.Columns[j], c.Missing)
			case c.Acc != nil && c.Acc.Value < worst.Value:
				t.Errorf("%s, %s: %.3f below the worst case %.3f", name, tb.Columns[j], c.Acc.Value, worst.Value)
			}
		}
	}
	// Through Shrink (a weak defense in front of the vanilla classifier),
	// the suite breaks images.
	if c := findRow(t, *tb, "Shrink (vanilla classifier)").Cells; !(c[len(c)-1].Acc.Value < c[0].Acc.Value) {
		t.Errorf("Shrink: worst case %v not below clean %v", c[len(c)-1].Acc, c[0].Acc)
	}
	if c := findRow(t, *tb, "Broken").Cells[0]; c.Acc != nil || !strings.Contains(c.Missing, "synthetic transform failure") {
		t.Errorf("Broken suite cell = %+v, want missing with the reason", c)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, "White-box suite, STL (cluster): ") }) {
		t.Errorf("no note on STL (cluster)'s checks in %q", res.Notes)
	}
	// Every stage of the run without the suite keeps its key.
	keys := stageKeys(res)
	for name, k := range stageKeys(before) {
		if keys[name] != k {
			t.Errorf("stage %s: key %s with the suite, %s without", name, keys[name], k)
		}
	}
	for name := range keys {
		if _, ok := stageKeys(before)[name]; !ok && !strings.HasPrefix(name, "whitebox-suite-") {
			t.Errorf("new stage %s", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointsDir, "whitebox-suite")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the suite's attacks are left in the checkpoints: %v", err)
	}

	// Again: every stage reused, the same tables.
	res2, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res2.Stages {
		if strings.HasPrefix(s.Name, "whitebox-suite-") && !s.Cached {
			t.Errorf("stage %s recomputed", s.Name)
		}
	}
	b1, _ := json.Marshal(res.Tables)
	b2, _ := json.Marshal(res2.Tables)
	if string(b1) != string(b2) {
		t.Error("second run gave different tables")
	}

	// Interrupted after a few attacks of the first suite stage, then
	// resumed: the same table, the finished attacks reloaded.
	dir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := RunWith(ctx, cfg, f.backend(), dir, &cancelAfter{n: 3, cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	kept, _ := os.ReadDir(filepath.Join(dir, CheckpointsDir, "whitebox-suite"))
	if len(kept) == 0 {
		t.Fatal("no finished attack kept by the interrupted stage")
	}
	res3, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := json.Marshal(findTable(res3, "table4-suite"))
	if b, _ := json.Marshal(tb); string(b) != string(b3) {
		t.Errorf("resumed suite table differs:\n%s\n%s", b, b3)
	}
}

func TestWhiteBoxSuiteSettings(t *testing.T) {
	b, err := json.Marshal(DefaultConfig())
	if err != nil || strings.Contains(string(b), "whitebox_suite") {
		t.Errorf("the default configuration encodes the suite: %s (%v)", b, err)
	}
	for _, c := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"none", func(c *Config) {}, true},
		{"all", func(c *Config) { c.WhiteBoxSuite.Attacks = []string{"all"} }, true},
		{"exact routes", func(c *Config) {
			c.WhiteBoxSuite = WhiteBoxSuiteSettings{Attacks: []string{"apgd-cw"}, Routes: []string{"bpda", "implicit", "unrolled"}, CGTol: 1e-4, CGMaxIter: 50, UnrollIterations: 20, ClusterGradient: "eot"}
		}, true},
		{"without whitebox", func(c *Config) { c.WhiteBox, c.WhiteBoxSuite.Attacks = false, []string{"pgd-ce"} }, false},
		{"settings without attacks", func(c *Config) { c.WhiteBoxSuite.APGDSteps = 10 }, false},
		{"unknown attack", func(c *Config) { c.WhiteBoxSuite.Attacks = []string{"fgsm"} }, false},
		{"attack twice", func(c *Config) { c.WhiteBoxSuite.Attacks = []string{"pgd-ce", "pgd-ce"} }, false},
		{"all and more", func(c *Config) { c.WhiteBoxSuite.Attacks = []string{"all", "pgd-ce"} }, false},
		{"unknown route", func(c *Config) {
			c.WhiteBoxSuite.Attacks, c.WhiteBoxSuite.Routes = []string{"pgd-ce"}, []string{"magic"}
		}, false},
		{"route twice", func(c *Config) {
			c.WhiteBoxSuite.Attacks, c.WhiteBoxSuite.Routes = []string{"pgd-ce"}, []string{"bpda", "bpda"}
		}, false},
		{"negative queries", func(c *Config) { c.WhiteBoxSuite.Attacks, c.WhiteBoxSuite.SquareQueries = []string{"square"}, -1 }, false},
		{"bad cg tolerance", func(c *Config) { c.WhiteBoxSuite.Attacks, c.WhiteBoxSuite.CGTol = []string{"pgd-ce"}, -1 }, false},
		{"bad cluster gradient", func(c *Config) { c.WhiteBoxSuite.Attacks, c.WhiteBoxSuite.ClusterGradient = []string{"pgd-ce"}, "all" }, false},
	} {
		cfg := DefaultConfig()
		cfg.WhiteBox = true
		c.edit(&cfg)
		err := cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		var ce *ConfigError
		if err != nil && (!errors.As(err, &ce) || ce.Field != "whitebox_suite") {
			t.Errorf("%s: %v is not a whitebox_suite ConfigError", c.name, err)
		}
	}
	for _, f := range []struct {
		text   string
		isJSON bool
	}{
		{"whitebox: true\nwhitebox_suite:\n  attacks: [apgd-cw, square]\n  routes: [bpda, implicit]\n  cg_tol: 0.0001\n  square_queries: 200\n", false},
		{`{"whitebox": true, "whitebox_suite": {"attacks": ["apgd-cw", "square"], "routes": ["bpda", "implicit"], "cg_tol": 0.0001, "square_queries": 200}}`, true},
	} {
		got, err := DecodeConfig(strings.NewReader(f.text), f.isJSON)
		want := WhiteBoxSuiteSettings{Attacks: []string{"apgd-cw", "square"}, Routes: []string{"bpda", "implicit"}, CGTol: 1e-4, SquareQueries: 200}
		if err != nil || !slices.Equal(got.WhiteBoxSuite.Attacks, want.Attacks) || !slices.Equal(got.WhiteBoxSuite.Routes, want.Routes) ||
			got.WhiteBoxSuite.CGTol != want.CGTol || got.WhiteBoxSuite.SquareQueries != want.SquareQueries {
			t.Errorf("decoded %+v, %v; want %+v", got.WhiteBoxSuite, err, want)
		}
	}
	if _, err := DecodeConfig(strings.NewReader("whitebox: true\nwhitebox_suite:\n  attack: [apgd-cw]\n"), false); err == nil {
		t.Error("a misspelt suite field accepted")
	}
	cfg := DefaultConfig()
	cfg.WhiteBoxSteps, cfg.EOTDraws, cfg.Seed = 3, 2, 7
	cfg.WhiteBoxSuite = WhiteBoxSuiteSettings{Attacks: []string{"all"}, APGDSteps: 40, SquareQueries: 500, SquareImages: 20, EvalDraws: 4}
	o := cfg.WhiteBoxSuite.options(cfg)
	if !slices.Equal(o.Attacks, evaluate.AttackNames) || o.PGDSteps != 3 || !slices.Equal(o.IterationSteps, []int{1}) || o.EOTDraws != 2 || o.Seed != 7 ||
		o.APGDSteps != 40 || o.SquareQueries != 500 || o.SquareImages != 20 || o.EvalDraws != 4 || len(o.Budgets) != 1 || o.Budgets[0].Eps != whiteBoxEps {
		t.Errorf("options %+v", o)
	}
}
