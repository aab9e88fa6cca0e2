package report

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stl-defense/stl/experiment/metrics"
)

// hand is a hand-made accuracy: value and interval set directly, so that
// a test can put an interval's end exactly on a claim's edge.
func hand(v, lo, hi float64) metrics.Accuracy {
	return metrics.Accuracy{Correct: int(math.Round(100 * v)), N: 100, Value: v, Lo: lo, Hi: hi}
}

// point is an accuracy known exactly (a zero-width interval).
func point(v float64) metrics.Accuracy { return hand(v, v, v) }

func TestBoundDecide(t *testing.T) {
	atLeast, above := Bound{0.38, true}, Bound{0, false}
	for _, tc := range []struct {
		name string
		b    Bound
		iv   Interval
		want Status
	}{
		{"closed: lower end on the edge holds", atLeast, Interval{0.4, 0.38, 0.5}, Holds},
		{"closed: lower end just below straddles", atLeast, Interval{0.4, math.Nextafter(0.38, 0), 0.5}, Inconclusive},
		{"closed: upper end on the edge straddles", atLeast, Interval{0.3, 0.2, 0.38}, Inconclusive},
		{"closed: upper end just below does not hold", atLeast, Interval{0.3, 0.2, math.Nextafter(0.38, 0)}, DoesNotHold},
		{"closed: wholly inside", atLeast, Interval{0.9, 0.85, 0.95}, Holds},
		{"open: lower end on the edge straddles", above, Interval{0.05, 0, 0.1}, Inconclusive},
		{"open: lower end just above holds", above, Interval{0.05, math.SmallestNonzeroFloat64, 0.1}, Holds},
		{"open: upper end on the edge does not hold", above, Interval{-0.05, -0.1, 0}, DoesNotHold},
		{"open: upper end just above straddles", above, Interval{-0.05, -0.1, math.SmallestNonzeroFloat64}, Inconclusive},
		{"no interval", above, Interval{math.NaN(), math.NaN(), math.NaN()}, NotRun},
	} {
		if got := tc.b.Decide(tc.iv); got != tc.want {
			t.Errorf("%s: %v.Decide(%+v) = %q, want %q", tc.name, tc.b, tc.iv, got, tc.want)
		}
	}
}

func TestCombine(t *testing.T) {
	// Newcombe (1998), Table II, example (a): 56/70 - 48/80 = 0.2, method
	// 10 (hybrid score) 95% interval 0.0524 to 0.3339.
	iv := Combine([]Term{{"a", 1, metrics.NewAccuracy(56, 70)}, {"b", -1, metrics.NewAccuracy(48, 80)}})
	if math.Abs(iv.Value-0.2) > 1e-12 || math.Abs(iv.Lo-0.0524) > 5e-5 || math.Abs(iv.Hi-0.3339) > 5e-5 {
		t.Errorf("56/70 - 48/80: %+v, want 0.2 [0.0524, 0.3339]", iv)
	}
	// Exact arithmetic (3-4-5): 0.875 - 0.25 with half-widths 0.375 below
	// the first and 0.5 above the second gives a lower end of exactly 0.
	iv = Combine([]Term{{"a", 1, hand(0.875, 0.5, 1)}, {"b", -1, hand(0.25, 0.125, 0.75)}})
	if iv.Lo != 0 || iv.Value != 0.625 {
		t.Errorf("exact case: %+v, want lower end 0, value 0.625", iv)
	}
	// One positive term is its own interval.
	if iv := Combine([]Term{{"a", 1, hand(0.5, 0.25, 0.75)}}); iv != (Interval{0.5, 0.25, 0.75}) {
		t.Errorf("one term: %+v", iv)
	}
	// Four terms: the gap of Figure 5, (c1 - a1) - (c2 - a2).
	iv = Combine([]Term{{"c1", 1, hand(0.5, 0.25, 0.75)}, {"a1", -1, hand(0.25, 0, 0.5)}, {"c2", -1, hand(0.5, 0.25, 0.75)}, {"a2", 1, hand(0.25, 0, 0.5)}})
	if iv.Value != 0 || iv.Lo != -0.5 || iv.Hi != 0.5 {
		t.Errorf("four terms: %+v, want 0 [-0.5, 0.5]", iv)
	}
}

func TestAllOf(t *testing.T) {
	for _, tc := range []struct {
		in   []Status
		want Status
	}{
		{nil, NotRun},
		{[]Status{NotRun, NotRun}, NotRun},
		{[]Status{Holds, Holds}, Holds},
		{[]Status{Holds, Inconclusive}, Inconclusive},
		{[]Status{Holds, NotRun}, Inconclusive},
		{[]Status{Holds, NotRun, DoesNotHold}, DoesNotHold},
		{[]Status{Inconclusive, DoesNotHold}, DoesNotHold},
	} {
		if got := AllOf(tc.in); got != tc.want {
			t.Errorf("AllOf(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// tbl is a hand-made table: rows by name, cells in column order, a nil
// cell missing.
func tbl(id string, cols []string, rows map[string][]*metrics.Accuracy, order ...string) Table {
	t := Table{ID: id, Title: id + " form", Columns: cols}
	for _, name := range order {
		row := Row{Defense: name}
		for _, a := range rows[name] {
			if a == nil {
				row.Cells = append(row.Cells, Cell{Missing: "synthetic reason"})
			} else {
				row.Cells = append(row.Cells, Cell{Acc: a})
			}
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func p(a metrics.Accuracy) *metrics.Accuracy { return &a }

// claimOf returns the claim id of r's own verdict.
func claimOf(t *testing.T, r *Results, id string) Claim {
	t.Helper()
	for _, c := range RunVerdict(r).Claims {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no claim %s", id)
	return Claim{}
}

func TestClaimsTable1(t *testing.T) {
	cols := []string{ColClean, ColFGSM008, ColCW}
	for _, tc := range []struct {
		name       string
		ndClean    *metrics.Accuracy   // No Defense's clean accuracy, default exactly 0.5
		cluster    []*metrics.Accuracy // STL (cluster) against nd
		stl        []*metrics.Accuracy // STL
		a, b, d    Status
		whyA, whyB string
	}{
		{name: "clear wins",
			cluster: []*metrics.Accuracy{p(point(0.5)), p(hand(0.95, 0.9, 1)), p(hand(0.95, 0.9, 1))},
			stl:     []*metrics.Accuracy{p(point(0.5)), p(hand(0.5, 0.4, 0.6)), p(hand(0.5, 0.4, 0.6))},
			a:       Holds, b: Holds, d: Holds},
		{name: "a lower end exactly 0: (a) straddles, (b) holds",
			// 0.875 - 0.25 - sqrt(0.375^2 + 0.5^2) = 0 exactly.
			cluster: []*metrics.Accuracy{p(point(0.5)), p(hand(0.875, 0.5, 1)), p(hand(0.95, 0.9, 1))},
			stl:     []*metrics.Accuracy{p(point(0.5)), p(hand(0.25, 0.125, 0.75)), p(hand(0.5, 0.4, 0.6))},
			a:       Inconclusive, b: Holds, d: Holds},
		{name: "an upper end exactly 0: (a) does not hold",
			// 0.09375 - 0.25 + sqrt((3/32)^2 + 0.125^2) = 0 exactly.
			cluster: []*metrics.Accuracy{p(point(0.5)), p(hand(0.09375, 0.05, 0.1875)), p(hand(0.95, 0.9, 1))},
			stl:     []*metrics.Accuracy{p(point(0.5)), p(hand(0.875, 0.5, 1)), p(hand(0.5, 0.4, 0.6))},
			a:       DoesNotHold, b: DoesNotHold, d: Holds},
		{name: "clean drop: 0.5 - 0.47 is just over 0.03 in floating point, and straddles",
			cluster: []*metrics.Accuracy{p(hand(0.5, 0.47, 0.55)), p(hand(0.95, 0.9, 1)), p(hand(0.95, 0.9, 1))},
			stl:     []*metrics.Accuracy{p(point(0.5)), p(hand(0.5, 0.4, 0.6)), p(hand(0.5, 0.4, 0.6))},
			a:       Holds, b: Inconclusive, d: Inconclusive},
		{name: "clean drop: a lower end of exactly -0.03 holds",
			// 0.2 - 0.17 is exactly the float64 nearest 0.03.
			ndClean: p(point(0.2)),
			cluster: []*metrics.Accuracy{p(hand(0.2, 0.17, 0.25)), p(hand(0.95, 0.9, 1)), p(hand(0.95, 0.9, 1))},
			stl:     []*metrics.Accuracy{p(hand(0.2, 0.17, 0.25)), p(hand(0.5, 0.4, 0.6)), p(hand(0.5, 0.4, 0.6))},
			a:       Holds, b: Inconclusive, d: Holds},
		{name: "clean drop of 10 points does not hold",
			cluster: []*metrics.Accuracy{p(hand(0.4, 0.38, 0.42)), p(hand(0.95, 0.9, 1)), p(hand(0.95, 0.9, 1))},
			stl:     []*metrics.Accuracy{p(point(0.5)), p(hand(0.5, 0.4, 0.6)), p(hand(0.5, 0.4, 0.6))},
			a:       Holds, b: DoesNotHold, d: DoesNotHold},
		{name: "a missing cell leaves (a) inconclusive",
			cluster: []*metrics.Accuracy{p(point(0.5)), p(hand(0.95, 0.9, 1)), nil},
			stl:     []*metrics.Accuracy{p(point(0.5)), p(hand(0.5, 0.4, 0.6)), p(hand(0.5, 0.4, 0.6))},
			a:       Inconclusive, b: Inconclusive, d: Holds, whyA: "1 of 2 comparisons not run", whyB: "1 of 3 comparisons not run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nd := []*metrics.Accuracy{p(point(0.5)), p(hand(0.25, 0.125, 0.75)), p(hand(0.25, 0.125, 0.75))}
			if tc.ndClean != nil {
				nd[0] = tc.ndClean
			}
			r := &Results{Name: "hand", Data: Data{Height: 32, Width: 32}, Tables: []Table{
				tbl(tableRetrained, cols, map[string][]*metrics.Accuracy{RowNoDefense: nd, RowSTL: tc.stl, RowSTLCluster: tc.cluster}, RowNoDefense, RowSTL, RowSTLCluster)}}
			for _, want := range []struct {
				id   string
				st   Status
				why  string
				want int // comparisons
			}{{ClaimBeatsNoDefense, tc.a, tc.whyA, 2}, {ClaimCluster, tc.b, tc.whyB, 3}, {ClaimCleanAccuracy, tc.d, "", 2}} {
				c := claimOf(t, r, want.id)
				if c.Status != want.st || c.Why != want.why || len(c.Evidence) != want.want {
					t.Errorf("claim (%s): %q (why %q, %d comparisons), want %q (why %q, %d)\n%s", want.id, c.Status, c.Why, len(c.Evidence), want.st, want.why, want.want, evidenceText(c))
				}
			}
		})
	}
}

func evidenceText(c Claim) string {
	var s []string
	for _, e := range c.Evidence {
		s = append(s, "  "+e.Text())
	}
	return strings.Join(s, "\n")
}

func TestClaimTransforms(t *testing.T) {
	cols := []string{ColClean, ColFGSM008}
	ours := []*metrics.Accuracy{p(point(0.5)), p(hand(0.875, 0.5, 0.9))}
	for _, tc := range []struct {
		name string
		jpeg *metrics.Accuracy // JPEG at FGSM-0.08; TVM is far below
		rows []string
		want Status
	}{
		{"every baseline below", p(hand(0.1, 0.05, 0.2)), []string{RowNoDefense, RowSTL, RowSTLCluster, "JPEG", "TVM", RowSTLAT}, Holds},
		{"a baseline on the edge", p(hand(0.25, 0.125, 0.75)), []string{RowNoDefense, RowSTL, RowSTLCluster, "JPEG", "TVM"}, Inconclusive},
		{"a baseline above", p(hand(0.875, 0.5, 1)), []string{RowNoDefense, RowSTL, RowSTLCluster, "JPEG", "TVM"}, Inconclusive},
		{"a baseline clearly above", p(hand(0.99, 0.98, 1)), []string{RowNoDefense, RowSTL, RowSTLCluster, "JPEG"}, DoesNotHold},
		{"a failed baseline", nil, []string{RowNoDefense, RowSTL, RowSTLCluster, "JPEG", "TVM"}, Inconclusive},
		{"no baselines", nil, []string{RowNoDefense, RowSTL, RowSTLCluster}, NotRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := map[string][]*metrics.Accuracy{
				RowNoDefense: {p(point(0.5)), p(point(0))}, RowSTL: ours, RowSTLCluster: ours, RowSTLAT: {p(point(0.5)), p(point(1))},
				"JPEG": {p(point(0.5)), tc.jpeg}, "TVM": {p(point(0.5)), p(hand(0.01, 0, 0.02))},
			}
			r := &Results{Name: "hand", Tables: []Table{tbl(tableVanilla, cols, rows, tc.rows...)}}
			c := claimOf(t, r, ClaimTransforms)
			baselines := 0
			for _, n := range tc.rows {
				if isBaseline(n) {
					baselines++
				}
			}
			if c.Status != tc.want || len(c.Evidence) != 2*baselines {
				t.Errorf("%q with %d comparisons, want %q with %d\n%s", c.Status, len(c.Evidence), tc.want, 2*baselines, evidenceText(c))
			}
		})
	}
}

func TestClaimAdvTraining(t *testing.T) {
	cols := []string{ColBPDA, ColBPDACW, ColBPDAWorst}
	for _, tc := range []struct {
		name string
		rows map[string][]*metrics.Accuracy
		cols []string
		want Status
	}{
		{"lower ends exactly on 0.38 and 0.42", map[string][]*metrics.Accuracy{
			// the CE column is far below: the worst-of-losses column decides.
			RowSTLAT:        {p(point(0.1)), p(point(0.5)), p(hand(0.45, 0.38, 0.5))},
			RowSTLClusterAT: {p(point(0.1)), p(point(0.5)), p(hand(0.45, 0.42, 0.5))}}, cols, Holds},
		{"an upper end exactly on 0.42", map[string][]*metrics.Accuracy{
			RowSTLAT:        {p(point(0.1)), p(point(0.5)), p(hand(0.45, 0.38, 0.5))},
			RowSTLClusterAT: {p(point(0.1)), p(point(0.5)), p(hand(0.40, 0.30, 0.42))}}, cols, Inconclusive},
		{"an upper end just below 0.38", map[string][]*metrics.Accuracy{
			RowSTLAT:        {p(point(0.1)), p(point(0.5)), p(hand(0.3, 0.2, math.Nextafter(0.38, 0)))},
			RowSTLClusterAT: {p(point(0.1)), p(point(0.5)), p(hand(0.45, 0.42, 0.5))}}, cols, DoesNotHold},
		{"the CE column when there is no worst case", map[string][]*metrics.Accuracy{
			RowSTLAT:        {p(point(0.5))},
			RowSTLClusterAT: {p(point(0.5))}}, []string{ColBPDA}, Holds},
		{"no adversarially trained rows", map[string][]*metrics.Accuracy{
			RowSTL: {p(point(0.5)), p(point(0.5)), p(point(0.5))}}, cols, NotRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var order []string
			for _, n := range []string{RowSTL, RowSTLAT, RowSTLClusterAT} {
				if tc.rows[n] != nil {
					order = append(order, n)
				}
			}
			r := &Results{Name: "hand", Tables: []Table{tbl(tableWhiteBox, tc.cols, tc.rows, order...)}}
			if c := claimOf(t, r, ClaimAdvTraining); c.Status != tc.want {
				t.Errorf("%q (%s), want %q\n%s", c.Status, c.Why, tc.want, evidenceText(c))
			}
		})
	}
	if c := claimOf(t, &Results{Name: "no table 4"}, ClaimAdvTraining); c.Status != NotRun || !strings.Contains(c.Why, "--whitebox") {
		t.Errorf("without a Table 4 form: %q (%s)", c.Status, c.Why)
	}
}

func TestClaimSweep(t *testing.T) {
	pt := func(lambda float64, clean, adv metrics.Accuracy) SweepPoint {
		return SweepPoint{Defense: RowSTLCluster, Attack: ColFGSM008, Lambda: lambda, Clean: clean, Adv: adv}
	}
	tight := func(v float64) metrics.Accuracy { return hand(v, v-0.01, v+0.01) }
	for _, tc := range []struct {
		name string
		pts  []SweepPoint
		want Status
	}{
		{"clean falls, gap shrinks (given out of order)", []SweepPoint{
			pt(0.5, tight(0.5), tight(0.45)), pt(0.05, tight(0.9), tight(0.2)), pt(0.2, tight(0.7), tight(0.4))}, Holds},
		{"a reversal of clean accuracy", []SweepPoint{
			pt(0.05, tight(0.9), tight(0.2)), pt(0.2, tight(0.6), tight(0.4)), pt(0.3, tight(0.7), tight(0.45)), pt(0.5, tight(0.5), tight(0.45))}, DoesNotHold},
		{"the gap widens", []SweepPoint{
			pt(0.05, tight(0.9), tight(0.8)), pt(0.5, tight(0.5), tight(0.1))}, DoesNotHold},
		{"wide intervals", []SweepPoint{
			pt(0.05, hand(0.6, 0.3, 0.9), hand(0.3, 0, 0.6)), pt(0.5, hand(0.5, 0.2, 0.8), hand(0.3, 0, 0.6))}, Inconclusive},
		{"one lambda", []SweepPoint{pt(0.2, tight(0.7), tight(0.4))}, NotRun},
		{"no sweep", nil, NotRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claimOf(t, &Results{Name: "hand", Sweep: tc.pts}, ClaimSweep)
			if c.Status != tc.want {
				t.Errorf("%q (%s), want %q\n%s", c.Status, c.Why, tc.want, evidenceText(c))
			}
			if c.Status != NotRun && len(c.Evidence) != 4 {
				t.Errorf("%d pieces of evidence, want 4 (two per trend)", len(c.Evidence))
			}
		})
	}
}

// handRun returns the results of a run at side px whose claim (a) has the
// status want (Holds, DoesNotHold or Inconclusive).
func handRun(name string, px int, protocol string, want Status) *Results {
	cluster := map[Status]metrics.Accuracy{Holds: hand(0.95, 0.9, 1), DoesNotHold: hand(0.09375, 0.05, 0.1875), Inconclusive: hand(0.875, 0.5, 1)}[want]
	rows := map[string][]*metrics.Accuracy{RowNoDefense: {p(point(0.5)), p(hand(0.25, 0.125, 0.75))}, RowSTLCluster: {p(point(0.5)), p(cluster)}}
	r := &Results{Name: name, Data: Data{Name: "hand", Height: px, Width: px, Train: 10, Test: 10},
		Tables: []Table{tbl(tableRetrained, []string{ColClean, ColFGSM008}, rows, RowNoDefense, RowSTLCluster)}}
	if protocol != "" {
		r.Protocol = &Protocol{Name: protocol, Round8: protocol == "release"}
	}
	return r
}

func TestProtocolName(t *testing.T) {
	for _, tc := range []struct {
		p    *Protocol
		want string
	}{
		{nil, "text"},
		{&Protocol{Name: "text"}, "text"},
		{&Protocol{Name: "text", Round8: true}, "text + round8"},
		{&Protocol{Name: "release", Round8: true}, "release"},
		{&Protocol{Name: "guo"}, "guo"},
	} {
		if got := (&Results{Protocol: tc.p}).ProtocolName(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestVerdictsResolutions(t *testing.T) {
	for _, tc := range []struct {
		name string
		runs []RunInput
		want []Status // claim (f) per protocol
	}{
		{"32 and 64 px both hold", []RunInput{{"a32", handRun("a", 32, "", Holds)}, {"a64", handRun("b", 64, "", Holds)}}, []Status{Holds}},
		{"64 px does not hold", []RunInput{{"a32", handRun("a", 32, "", Holds)}, {"a64", handRun("b", 64, "", DoesNotHold)}}, []Status{DoesNotHold}},
		{"64 px inconclusive", []RunInput{{"a32", handRun("a", 32, "", Holds)}, {"a64", handRun("b", 64, "", Inconclusive)}}, []Status{Inconclusive}},
		{"two runs at 32 px", []RunInput{{"a32", handRun("a", 32, "", Holds)}, {"b32", handRun("b", 32, "", Holds)}}, []Status{NotRun}},
		{"protocols apart", []RunInput{{"t32", handRun("a", 32, "", Holds)}, {"r64", handRun("b", 64, "release", Holds)}, {"t64", handRun("c", 64, "text", Holds)}},
			[]Status{Holds, NotRun}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := Verdicts(tc.runs)
			if len(vs) != len(tc.want) {
				t.Fatalf("%d verdicts, want %d", len(vs), len(tc.want))
			}
			for i, v := range vs {
				var f []Claim
				for _, c := range v.Claims {
					if c.ID == ClaimResolutions {
						f = append(f, c)
					}
				}
				if len(f) != 1 || f[0].Status != tc.want[i] || f[0].Run != "" {
					t.Errorf("protocol %s: claim (f) %+v, want one, %q", v.Protocol, f, tc.want[i])
				}
				// Every other claim once per run, in the order of ClaimIDs.
				if len(v.Claims) != (len(ClaimIDs)-1)*len(v.Runs)+1 {
					t.Errorf("protocol %s: %d claims for %d runs", v.Protocol, len(v.Claims), len(v.Runs))
				}
			}
			if len(vs) == 2 && (vs[0].Protocol != "text" || vs[1].Protocol != "release" || len(vs[0].Runs) != 2) {
				t.Errorf("protocols %s (%d runs), %s", vs[0].Protocol, len(vs[0].Runs), vs[1].Protocol)
			}
		})
	}
}

func TestRunVerdictInReports(t *testing.T) {
	r := synthetic()
	r.Verdict = RunVerdict(r)
	// Every claim once, in order; (e) and (f) need what the run lacks.
	var ids []string
	for _, c := range r.Verdict.Claims {
		ids = append(ids, c.ID)
		if (c.ID == ClaimAdvTraining || c.ID == ClaimResolutions) && c.Status != NotRun {
			t.Errorf("claim (%s): %q, want not run", c.ID, c.Status)
		}
		if c.Status == NotRun && c.Why == "" {
			t.Errorf("claim (%s) not run without a reason", c.ID)
		}
	}
	if strings.Join(ids, "") != strings.Join(ClaimIDs, "") || r.Verdict.Protocol != r.Protocol.Name {
		t.Errorf("claims %v under %s", ids, r.Verdict.Protocol)
	}
	// results.json: identical bytes for identical results, the verdict
	// read back as written.
	var a, b bytes.Buffer
	if err := WriteJSON(&a, r); err != nil {
		t.Fatal(err)
	}
	r2 := synthetic()
	r2.Verdict = RunVerdict(r2)
	if err := WriteJSON(&b, r2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("results.json differs between identical results")
	}
	var back Results
	if err := json.Unmarshal(a.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if j1, j2 := mustJSON(t, r.Verdict), mustJSON(t, back.Verdict); j1 != j2 {
		t.Errorf("verdict read back differs:\n%s\n%s", j1, j2)
	}
	// The verdict comes first in every report.
	var md, html, text bytes.Buffer
	if err := WriteMarkdown(&md, r, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(&html, r, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"report.md": md.String(), "report.html": html.String(), "text": text.String(), "results.json": a.String()} {
		v, tab := strings.Index(s, "erdict"), strings.Index(s, r.Tables[0].Title)
		if name == "results.json" {
			tab = strings.Index(s, `"tables"`)
		}
		if v < 0 || tab < 0 || v > tab {
			t.Errorf("%s: verdict at %d, first table at %d", name, v, tab)
		}
	}
	if !strings.Contains(md.String(), "| (a) Table 1 form: STL (cluster)") {
		t.Errorf("report.md has no claim (a) row:\n%s", md.String())
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEvidenceText(t *testing.T) {
	for _, tc := range []struct {
		e    Evidence
		want string
	}{
		{evidence("FGSM-0.08: A - B", Bound{0, false}, Term{"A", 1, hand(0.875, 0.5, 1)}, Term{"B", -1, hand(0.25, 0.125, 0.75)}),
			"FGSM-0.08: A - B: 0.875 - 0.250 = +0.625 [+0.000, +0.802], need > 0: inconclusive"},
		{evidence("PGD: STL + AT", Bound{0.38, true}, Term{"STL + AT", 1, hand(0.45, 0.38, 0.5)}),
			"PGD: STL + AT: 0.450 [0.380, 0.500], need >= 0.38: holds"},
		{missingEvidence("CW: A - B", "A, CW: the attack failed"), "CW: A - B: not run (A, CW: the attack failed)"},
		{Evidence{What: "run (32 px): claim (a)", Status: Holds}, "run (32 px): claim (a): holds"},
	} {
		if got := tc.e.Text(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
