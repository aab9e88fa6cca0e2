//go:build !purego

// The pure-Go build runs the same code several times slower; its pipeline
// is covered by the fake-backend tests.

package experiment

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// TestRunRealBackendSmall runs the real pipeline (package nn, defense,
// attack, dataset) on a few dozen images of the shipped CIFAR-10 sample
// with minimal budgets: the wiring, not the accuracy, is under test. About
// 5 s of CPU; skipped with -short. The white-box table runs both losses.
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
	// Record the vanilla classifier's accuracy on the clean white-box
	// images as the No Defense attack (the one on the plain classifier,
	// not wrapped by Adaptive) of each loss starts.
	b := DefaultBackend()
	whiteBox := b.WhiteBox
	var mu sync.Mutex
	cleanCorrect := map[string]int{}
	b.WhiteBox = func(cfg Config, loss string) (Attacker, any, error) {
		a, settings, err := whiteBox(cfg, loss)
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
			if _, plain := m.(*nn.Classifier); plain {
				pred, err := predict(ctx, m, x)
				if err != nil {
					return nil, err
				}
				c, err := metrics.CountCorrect(pred, labels)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				cleanCorrect[loss] = c
				mu.Unlock()
			}
			return a(ctx, m, x, labels, rep)
		}, settings, nil
	}
	dir := t.TempDir()
	res, err := RunWith(context.Background(), cfg, b, dir, nil)
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
	// Table 4 has the CW-loss column, every cell an accuracy in [0, 1] on
	// the 5 images, and PGD with the CW loss leaves No Defense no more
	// accurate than on the clean images.
	t4 := res.Tables[2]
	if len(t4.Columns) != 3 || t4.Columns[1] != report.ColBPDACW || t4.Columns[2] != report.ColBPDAWorst {
		t.Fatalf("Table 4 columns %q, want the cross-entropy's and the CW loss's", t4.Columns)
	}
	for _, row := range t4.Rows {
		if c := row.Cells[1]; c.Acc == nil || c.Acc.N != 5 || !(c.Acc.Value >= 0 && c.Acc.Value <= 1) {
			t.Errorf("Table 4 %s CW loss: %+v, want an accuracy on 5 images", row.Defense, c)
		}
	}
	clean, ok := cleanCorrect[LossCW]
	if !ok || cleanCorrect[LossCE] != clean {
		t.Fatalf("clean white-box accuracy not recorded per loss: %v", cleanCorrect)
	}
	if cw := findRow(t, t4, NoDefense).Cells[1].Acc; cw == nil || cw.Correct > clean {
		t.Errorf("No Defense under the CW-loss PGD: %+v, want at most the %d of 5 correct on the clean images", cw, clean)
	}
	t.Logf("No Defense on the white-box images: clean %d/5, PGD (CE) %+v, PGD (CW loss) %+v", clean, findRow(t, t4, NoDefense).Cells[0].Acc, findRow(t, t4, NoDefense).Cells[1].Acc)
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
	res2, err := RunWith(context.Background(), cfg, b, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res2.Stages {
		if !s.Cached {
			t.Errorf("stage %s recomputed", s.Name)
		}
	}
}
