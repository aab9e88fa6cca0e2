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
// (cluster) keeps stl of 400 FGSM-0.08 images against No Defense's 40,
// under the attack protocol named protocol ("": none recorded).
func writeRun(t *testing.T, dir, protocol string, px, stl int) {
	t.Helper()
	acc := func(c, n int) *metrics.Accuracy { a := metrics.NewAccuracy(c, n); return &a }
	row := func(name string, clean, adv int) report.Row {
		return report.Row{Defense: name, Cells: []report.Cell{{Acc: acc(clean, 1000)}, {Acc: acc(adv, 400)}}}
	}
	r := &report.Results{Name: filepath.Base(dir), Data: report.Data{Name: "hand", Train: 1000, Test: 1000, Classes: 10, Channels: 3, Height: px, Width: px, AttackSubset: 400},
		Tables: []report.Table{{ID: "table1", Title: "Table 1 form", Columns: []string{report.ColClean, report.ColFGSM008},
			Rows: []report.Row{row(report.RowNoDefense, 800, 40), row(report.RowSTL, 790, 300), row(report.RowSTLCluster, 795, stl)}}}}
	if protocol != "" {
		r.Protocol = &report.Protocol{Name: protocol, Round8: protocol == "release"}
	}
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

// verdictOf runs stl verdict on args into a new directory out and returns
// what it printed and the verdict.json it wrote.
func verdictOf(t *testing.T, out string, args ...string) (string, report.VerdictFile) {
	t.Helper()
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := runVerdict(args, out, &stdout); err != nil {
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
	return stdout.String(), vf
}

func TestVerdictCombinesResolutions(t *testing.T) {
	tmp := t.TempDir()
	run32, run64, out := filepath.Join(tmp, "c32"), filepath.Join(tmp, "c64"), filepath.Join(tmp, "out")
	writeRun(t, run32, "", 32, 300)
	writeRun(t, run64, "", 64, 50) // 50/400 against 40/400: inconclusive
	// A run directory and a results.json path are both accepted.
	stdout, vf := verdictOf(t, out, run32, filepath.Join(run64, report.FileJSON))
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
	if !strings.Contains(string(md), "| (f) Robustness holds across resolutions") || !strings.Contains(stdout, "(f) inconclusive") {
		t.Errorf("verdict.md or the summary lacks claim (f):\n%s\n%s", md, stdout)
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

// TestVerdictByProtocol runs stl verdict on a text run at 32 px and release
// runs at 64 and 32 px: the verdicts, the summary and the README tables
// are grouped by protocol in the order the protocols first appear; claim
// (f) is not decided across protocols (the text run's lone resolution
// leaves it not run, though a 64 px run exists under release) and is
// decided from the release runs' claim (a) at both resolutions.
func TestVerdictByProtocol(t *testing.T) {
	tmp := t.TempDir()
	text32, rel64, rel32, out := filepath.Join(tmp, "t32"), filepath.Join(tmp, "r64"), filepath.Join(tmp, "r32"), filepath.Join(tmp, "out")
	writeRun(t, text32, "text", 32, 300)
	writeRun(t, rel64, "release", 64, 280)
	writeRun(t, rel32, "release", 32, 50) // 50/400 against 40/400: inconclusive
	o, vf := verdictOf(t, out, text32, rel64, rel32)
	if len(vf.Verdicts) != 2 || vf.Verdicts[0].Protocol != "text" || vf.Verdicts[1].Protocol != "release" ||
		len(vf.Verdicts[0].Runs) != 1 || len(vf.Verdicts[1].Runs) != 2 {
		t.Fatalf("verdicts %+v, want text over one run, then release over two", vf.Verdicts)
	}
	status := func(v report.Verdict, id, run string) report.Status {
		for _, c := range v.Claims {
			if c.ID == id && c.Run == run {
				return c.Status
			}
		}
		return "missing"
	}
	for _, tc := range []struct {
		v       int
		id, run string
		want    report.Status
	}{
		{0, "a", text32, report.Holds}, {0, "f", "", report.NotRun},
		{1, "a", rel64, report.Holds}, {1, "a", rel32, report.Inconclusive}, {1, "f", "", report.Inconclusive},
	} {
		if got := status(vf.Verdicts[tc.v], tc.id, tc.run); got != tc.want {
			t.Errorf("protocol %s, claim (%s) %s: %q, want %q", vf.Verdicts[tc.v].Protocol, tc.id, tc.run, got, tc.want)
		}
	}

	text, release := strings.Index(o, "**Protocol text** ("+text32+": hand, 32 px)"), strings.Index(o, "**Protocol release** ("+rel64+": hand, 64 px; "+rel32+": hand, 32 px)")
	if text < 0 || release < text {
		t.Fatalf("README tables missing or out of protocol order:\n%s", o)
	}
	textTable, releaseTable := o[text:release], o[release:]
	for _, want := range []string{
		"| (a) STL (cluster) beats No Defense under every attack (Table 1) | FGSM-0.08: STL (cluster) - No Defense +0.650 [",
		"| (f) Robustness holds across resolutions: claim (a) at every resolution run | - | \"from 32 to 224\"",
	} {
		if !strings.Contains(textTable, want) {
			t.Errorf("the text table lacks %q:\n%s", want, textTable)
		}
	}
	for _, want := range []string{
		"| (a) STL (cluster) beats No Defense under every attack (Table 1) [" + rel32 + "] | FGSM-0.08: STL (cluster) - No Defense +0.025 [",
		"| (f) Robustness holds across resolutions: claim (a) at every resolution run | " + rel64 + " (64 px): holds; " + rel32 + " (32 px): inconclusive | ",
	} {
		if !strings.Contains(releaseTable, want) {
			t.Errorf("the release table lacks %q:\n%s", want, releaseTable)
		}
	}
	if strings.Contains(releaseTable, text32) || strings.Count(o, "| Claim | Our numbers (95% intervals) | Paper | Verdict |") != 2 {
		t.Errorf("the tables mix protocols:\n%s", o)
	}
}
