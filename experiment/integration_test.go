//go:build !purego

// The pure-Go build runs the same code several times slower; its pipeline
// is covered by the fake-backend tests.

package experiment

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestRunRealBackendSmall runs the real pipeline (package nn, defense,
// attack, dataset) on a few dozen images of the shipped CIFAR-10 sample
// with minimal budgets: the wiring, not the accuracy, is under test. About
// 5 s of CPU; skipped with -short.
func TestRunRealBackendSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("trains real models; skipped with -short")
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.Limit, cfg.TestLimit, cfg.Epochs = "small", 40, 20, 1
	cfg.AttackSubset, cfg.Attacks, cfg.Baselines = 10, []string{AttackFGSM008}, []string{"jpeg", "magnet"}
	cfg.DictImages, cfg.DictIterations, cfg.DAEEpochs, cfg.GridImages = 8, 2, 1, 4
	cfg.LambdaSweep, cfg.WhiteBox, cfg.WhiteBoxSteps = []float64{0.1, 0.4}, true, 2
	// The sanity checks on the baselines (MagNet through its exact
	// gradient) on a white-box subset of 5 of the 10 attacked images.
	cfg.SanityBaselines, cfg.WhiteBoxSubset = true, 5
	dir := t.TempDir()
	res, err := Run(context.Background(), cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t1, t5 := res.Tables[0], res.Tables[1]
	for _, name := range []string{NoDefense, RowSTL, RowSTLCluster} {
		for _, c := range findRow(t, t1, name).Cells {
			if c.Acc == nil {
				t.Errorf("Table 1 %s: missing cell: %s", name, c.Missing)
			}
		}
	}
	if c := findRow(t, t5, "JPEG").Cells[1]; c.Acc == nil || c.Acc.N != 10 {
		t.Errorf("Table 5 JPEG FGSM-0.08 = %+v", c)
	}
	// Tables 1, 5, 4 and the three white-box sanity tables.
	if len(res.Tables) != 6 || len(res.Sweep) != 2 {
		t.Fatalf("%d tables and %d sweep points, want 6 and 2", len(res.Tables), len(res.Sweep))
	}
	for _, tb := range res.Tables[3:] {
		for _, row := range tb.Rows {
			for j, c := range row.Cells {
				if c.Acc == nil && !(tb.ID == "whitebox-controls" && row.Defense == NoDefense && j == 2) {
					t.Errorf("%s %s column %d: %s", tb.ID, row.Defense, j, c.Missing)
				}
			}
		}
	}
	for _, tb := range res.Tables[2:] {
		if len(tb.Rows) != 5 {
			t.Errorf("%s: %d rows, want No Defense, STL, STL (cluster), JPEG and MagNet", tb.ID, len(tb.Rows))
		}
		for _, row := range tb.Rows {
			if c := row.Cells[0]; c.Acc == nil || c.Acc.N != 5 {
				t.Errorf("%s %s: %+v, want an accuracy on the white-box subset of 5", tb.ID, row.Defense, c)
			}
		}
	}
	if res.Data.WhiteBoxSubset != 5 {
		t.Errorf("white-box subset %d, want 5", res.Data.WhiteBoxSubset)
	}
	if t1.PaperRef == "" {
		t.Error("no paper numbers on a CIFAR-10 run")
	}
	for _, f := range []string{"report.html", "figures/grid.png", "stages/defense/stage.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointsDir)); !os.IsNotExist(err) {
		t.Errorf("checkpoints left after a finished run: %v", err)
	}
	// Everything is reused the second time.
	res2, err := Run(context.Background(), cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res2.Stages {
		if !s.Cached {
			t.Errorf("stage %s recomputed", s.Name)
		}
	}
}
