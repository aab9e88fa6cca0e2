package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
)

// writeRun writes the results.json of a run at side px whose STL
// (cluster) keeps stl of 400 FGSM-0.08 images against No Defense's 40.
func writeRun(t *testing.T, dir string, px, stl int) {
	t.Helper()
	acc := func(c, n int) *metrics.Accuracy { a := metrics.NewAccuracy(c, n); return &a }
	row := func(name string, clean, adv int) report.Row {
		return report.Row{Defense: name, Cells: []report.Cell{{Acc: acc(clean, 1000)}, {Acc: acc(adv, 400)}}}
	}
	r := &report.Results{Name: filepath.Base(dir), Data: report.Data{Name: "hand", Train: 1000, Test: 1000, Classes: 10, Channels: 3, Height: px, Width: px, AttackSubset: 400},
		Tables: []report.Table{{ID: "table1", Title: "Table 1 form", Columns: []string{report.ColClean, report.ColFGSM008},
			Rows: []report.Row{row(report.RowNoDefense, 800, 40), row(report.RowSTL, 790, 300), row(report.RowSTLCluster, 795, stl)}}}}
	r.Verdict = report.RunVerdict(r)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := report.WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, report.FileJSON), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerdictCombinesResolutions(t *testing.T) {
	tmp := t.TempDir()
	run32, run64, out := filepath.Join(tmp, "c32"), filepath.Join(tmp, "c64"), filepath.Join(tmp, "out")
	writeRun(t, run32, 32, 300)
	writeRun(t, run64, 64, 50) // 50/400 against 40/400: inconclusive
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	// A run directory and a results.json path are both accepted.
	if err := runVerdict([]string{run32, filepath.Join(run64, report.FileJSON)}, out, &stdout); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, report.FileVerdictJSON))
	if err != nil {
		t.Fatal(err)
	}
	var vf report.VerdictFile
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Verdicts) != 1 || vf.Verdicts[0].Protocol != "text" || len(vf.Verdicts[0].Runs) != 2 {
		t.Fatalf("verdicts %+v, want one for protocol text over two runs", vf.Verdicts)
	}
	got := map[string]report.Status{}
	for _, c := range vf.Verdicts[0].Claims {
		got[c.ID+" "+c.Run] = c.Status
	}
	for k, want := range map[string]report.Status{"a " + run32: report.Holds, "a " + run64: report.Inconclusive, "f ": report.Inconclusive} {
		if got[k] != want {
			t.Errorf("claim %q: %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, report.FileVerdictMarkdown))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| (f) Robustness holds across resolutions") || !strings.Contains(stdout.String(), "(f) inconclusive") {
		t.Errorf("verdict.md or the summary lacks claim (f):\n%s\n%s", md, stdout.String())
	}
}

func TestVerdictBadInput(t *testing.T) {
	tmp := t.TempDir()
	notRun := filepath.Join(tmp, "x.json")
	if err := os.WriteFile(notRun, []byte(`{"other": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		usage bool
	}{
		{[]string{filepath.Join(tmp, "nothing")}, true},
		{[]string{notRun}, false},
	} {
		err := runVerdict(tc.args, tmp, &bytes.Buffer{})
		var ue usageError
		if err == nil || errors.As(err, &ue) != tc.usage {
			t.Errorf("%v: error %v, want usage error %v", tc.args, err, tc.usage)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, report.FileVerdictJSON)); err == nil {
		t.Error("verdict.json written despite the errors")
	}
}
