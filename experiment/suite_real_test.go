//go:build !purego

package experiment

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/experiment/evaluate"
)

// TestRunRealBackendSuite runs the white-box suite with the real pipeline
// on a small run of the shipped sample, through bpda and the implicit
// route: STL and STL (cluster) are attacked through both (the implicit
// route reaching the run's own STL transforms: their gradient probe
// measured images), JPEG through bpda only. The wiring is under
// test, not the accuracies. Skipped with -short.
func TestRunRealBackendSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("trains real models (about 35 s of CPU); skipped with -short")
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.Limit, cfg.TestLimit, cfg.Epochs = "small-suite", 200, 40, 3
	cfg.AttackSubset, cfg.Attacks, cfg.Baselines = 20, []string{AttackFGSM008}, []string{"jpeg"}
	cfg.DictImages, cfg.DictIterations, cfg.DAEEpochs, cfg.GridImages = 8, 2, 1, 4
	cfg.LambdaSweep, cfg.WhiteBox, cfg.WhiteBoxSteps, cfg.WhiteBoxSubset = nil, true, 2, 10
	cfg.WhiteBoxLosses, cfg.EOTDraws = []string{LossCE}, 1
	cfg.WhiteBoxSuite = WhiteBoxSuiteSettings{Attacks: []string{evaluate.PGDCE, evaluate.APGDCW, evaluate.Noise},
		Routes: []string{"bpda", "implicit"}, APGDSteps: 2, EvalDraws: 1, CGMaxIter: 50}
	dir := t.TempDir()
	res, err := RunWith(context.Background(), cfg, DefaultBackend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tb := findTable(res, "table4-suite")
	if tb == nil {
		t.Fatal("no suite table")
	}
	for _, name := range []string{NoDefense, RowSTL, RowSTLCluster, "JPEG (vanilla classifier)"} {
		row := findRow(t, *tb, name)
		for j, c := range row.Cells {
			col := tb.Columns[j]
			noRoute := strings.Contains(col, "(implicit)") && strings.Contains(name, "vanilla classifier")
			switch {
			case noRoute && (c.Acc != nil || !strings.Contains(c.Missing, "no implicit route")):
				t.Errorf("%s, %s: %+v, want missing: no implicit route", name, col, c)
			case !noRoute && c.Acc == nil && !(name == NoDefense && col == "transfer from undefended"):
				t.Errorf("%s, %s: missing (%s)", name, col, c.Missing)
			case c.Acc != nil && c.Acc.N != 10:
				t.Errorf("%s, %s: %d images, want 10", name, col, c.Acc.N)
			}
		}
	}
	for _, stage := range []string{"whitebox-suite-stl", "whitebox-suite-stl-cluster"} {
		rep, err := readSuiteReport(filepath.Join(dir, StagesDir, stage, "report.json"), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range rep.Gradients {
			t.Logf("%s: gradient probe %s: %d images, median norm %g", stage, g.Route, g.Images, g.MedianNorm)
			if g.Route == "implicit" && (g.Images == 0 || g.MedianNorm == 0) {
				t.Errorf("%s: the implicit route measured %d images, median gradient norm %g", stage, g.Images, g.MedianNorm)
			}
		}
		if len(rep.Gradients) != 2 || string(rep.RouteSettings["implicit"]) == "" {
			t.Errorf("%s: routes %v, settings %s", stage, rep.Routes, rep.RouteSettings)
		}
	}
}
