package experiment

import (
	"math"
	"strings"
	"testing"

	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/tensor"
)

// checkSanity checks the white-box sanity tables and notes of a fake run
// with WhiteBox on.
func checkSanity(t *testing.T, res *report.Results, cfg Config) {
	t.Helper()
	byID := map[string]report.Table{}
	for _, tb := range res.Tables {
		byID[tb.ID] = tb
	}
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
		if len(tb.Rows) != len(sanityRows) {
			t.Errorf("%s: %d rows, want %d (%v)", id, len(tb.Rows), len(sanityRows), sanityRows)
		}
	}
	for _, name := range sanityRows {
		for _, id := range []string{"whitebox-iterations", "whitebox-epsilon"} {
			for j, c := range findRow(t, byID[id], name).Cells {
				if c.Acc == nil || c.Acc.N != cfg.AttackSubset {
					t.Errorf("%s %s column %d = %+v, want an accuracy on %d images", id, name, j, c, cfg.AttackSubset)
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
	}
	// The attack at the Table 4 setting is the Table 4 cell itself.
	t4 := findRow(t, byID["table4"], RowSTL).Cells[0].Acc
	it := findRow(t, byID["whitebox-iterations"], RowSTL).Cells
	if a := it[len(it)-1].Acc; a == nil || t4 == nil || *a != *t4 {
		t.Errorf("STL at %d iterations = %+v, want Table 4's %+v", cfg.WhiteBoxSteps, a, t4)
	}
	// The fake attack at 10*eps clipped to 1 saturates the image: accuracy
	// on No Defense at the largest budget is far below the noise control.
	e := findRow(t, byID["whitebox-epsilon"], NoDefense).Cells
	if e[len(e)-1].Acc.Value > 0.5 {
		t.Errorf("No Defense at eps %g: %+v, want a successful attack", SanityEps[len(SanityEps)-1], e[len(e)-1].Acc)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, name := range sanityRows {
		if !strings.Contains(notes, "White-box sanity checks, "+name+": iterations: ") {
			t.Errorf("no sanity note for %s in %q", name, notes)
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
