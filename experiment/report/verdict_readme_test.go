package report

import (
	"bytes"
	"strings"
	"testing"
)

// TestVerdictReadme checks the compact table: every claim has its words
// and the paper's numbers; a claim's cell shows the comparison that
// decides it (the failing one, the inconclusive one, or the holding one
// closest to what it needs) with how many hold; (f) shows each run's
// decision; a claim not run shows "-"; runs are named per row when
// several share the protocol.
func TestVerdictReadme(t *testing.T) {
	for _, id := range ClaimIDs {
		if pc := paperClaims[id]; pc.short == "" || pc.paper == "" {
			t.Errorf("claim (%s): no words or paper numbers for the table", id)
		}
	}
	iv := func(v, lo, hi float64) *Interval { return &Interval{v, lo, hi} }
	diff := []Term{{Sign: 1}, {Sign: -1}}
	ev := func(what string, st Status, need string, e *Interval) Evidence {
		return Evidence{What: what, Terms: diff, Estimate: e, Need: need, Status: st}
	}
	for _, tc := range []struct {
		name string
		c    Claim
		want string
	}{
		{"does not hold: the failing comparison", Claim{ID: "a", Status: DoesNotHold, Evidence: []Evidence{
			ev("FGSM-0.08: x", Holds, "> 0", iv(0.2, 0.1, 0.3)), ev("BIM: x", DoesNotHold, "> 0", iv(-0.2, -0.3, -0.1))}},
			"BIM: x -0.200 [-0.300, -0.100]; 1 of 2 hold"},
		{"inconclusive: the straddling comparison", Claim{ID: "a", Status: Inconclusive, Evidence: []Evidence{
			ev("FGSM-0.08: x", Holds, "> 0", iv(0.2, 0.1, 0.3)), ev("CW: x", Inconclusive, "> 0", iv(0.01, -0.02, 0.04))}},
			"CW: x +0.010 [-0.020, +0.040]; 1 of 2 hold"},
		{"holds: the closest to its bound", Claim{ID: "e", Status: Holds, Evidence: []Evidence{
			{What: "BPDA: STL + AT", Terms: []Term{{Sign: 1}}, Estimate: iv(0.5, 0.45, 0.55), Need: ">= 0.38", Status: Holds},
			{What: "BPDA: STL (cluster) + AT", Terms: []Term{{Sign: 1}}, Estimate: iv(0.48, 0.44, 0.52), Need: ">= 0.42", Status: Holds}}},
			"BPDA: STL (cluster) + AT 0.480 [0.440, 0.520]; 2 of 2 hold"},
		{"one comparison", Claim{ID: "d", Status: Holds, Evidence: []Evidence{ev("Clean: x", Holds, ">= -0.03", iv(-0.01, -0.02, 0))}},
			"Clean: x -0.010 [-0.020, +0.000]"},
		{"resolutions", Claim{ID: "f", Status: Inconclusive, Evidence: []Evidence{
			{What: "c32 (32 px): claim (a)", Status: Holds}, {What: "c64 (64 px): claim (a)", Status: Inconclusive}}},
			"c32 (32 px): holds; c64 (64 px): inconclusive"},
		{"not run", Claim{ID: "g", Status: NotRun, Why: "needs the sweep"}, "-"},
	} {
		if got := tc.c.ourNumbers(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}

	v := Verdict{Protocol: "release", Runs: []VerdictRun{{Label: "c32", Data: "cifar10", Height: 32, Width: 32}, {Label: "c64", Data: "cifar10", Height: 64, Width: 64}},
		Claims: []Claim{{ID: "a", Run: "c32", Status: Holds, Evidence: []Evidence{ev("FGSM-0.08: x | y", Holds, "> 0", iv(0.2, 0.1, 0.3))}}, {ID: "f", Status: NotRun}}}
	var b bytes.Buffer
	if err := WriteVerdictReadme(&b, []Verdict{v}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"**Protocol release** (c32: cifar10, 32 px; c64: cifar10, 64 px)\n\n| Claim | Our numbers (95% intervals) | Paper | Verdict |\n|---|---|---|---|\n",
		"| (a) STL (cluster) beats No Defense under every attack (Table 1) [c32] | FGSM-0.08: x \\| y +0.200 [+0.100, +0.300] | 0.8567-0.8904 against 0.0936-0.6523; smallest gap +0.2192 (FGSM-0.04) | **holds** |\n",
		"| (f) Robustness holds across resolutions: claim (a) at every resolution run | - | ",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
