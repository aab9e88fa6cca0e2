package report

import (
	"fmt"
	"math"

	"github.com/stl-defense/stl/experiment/metrics"
)

// Status is the decision on a claim of the paper, or on one comparison
// that makes up a claim.
type Status string

// Decisions. A claim is a set of values of a measured quantity (an
// accuracy, or a difference of accuracies); the quantity's 95% interval
// decides it: the claim holds when the whole interval lies inside that set,
// does not hold when the whole interval lies outside it, and is
// inconclusive when the interval straddles its edge. A claim whose data the
// run does not have is not run: it is never guessed.
const (
	Holds        Status = "holds"
	DoesNotHold  Status = "does not hold"
	Inconclusive Status = "inconclusive"
	NotRun       Status = "not run"
)

// Verdict is the decision on each claim of the paper from the results of
// one or more runs made under one attack protocol.
type Verdict struct {
	// Protocol is the attack protocol of the runs ("text" for runs that
	// do not record one).
	Protocol string       `json:"protocol"`
	Runs     []VerdictRun `json:"runs"`
	Claims   []Claim      `json:"claims"`
}

// VerdictRun identifies a run whose results a verdict uses.
type VerdictRun struct {
	// Label names the run in the verdict: its name, or the directory it
	// was read from when several runs are combined.
	Label        string `json:"label"`
	Name         string `json:"name"`
	Data         string `json:"data"`
	Height       int    `json:"height"`
	Width        int    `json:"width"`
	Train        int    `json:"train"`
	Test         int    `json:"test"`
	AttackSubset int    `json:"attack_subset"`
}

// Claim is one claim of the paper decided from our numbers.
type Claim struct {
	// ID is the claim's letter, "a" to "g" (ClaimIDs).
	ID string `json:"id"`
	// Statement says what the paper claims, Source where.
	Statement string `json:"claim"`
	Source    string `json:"source"`
	// Rule says how Status is decided from Evidence.
	Rule string `json:"rule"`
	// Run is the label of the run whose results decide the claim, empty
	// when the claim combines every run of the protocol.
	Run    string `json:"run,omitempty"`
	Status Status `json:"status"`
	// Why says what is missing when the claim is not run, and qualifies
	// the other decisions where needed.
	Why      string     `json:"why,omitempty"`
	Evidence []Evidence `json:"evidence,omitempty"`
}

// Evidence is one comparison that makes up a claim: a quantity (an
// accuracy, or a signed sum of accuracies) with its 95% interval, the set
// of values the claim needs, and the decision.
type Evidence struct {
	// What names the comparison, e.g. "FGSM-0.08: STL (cluster) - No
	// Defense".
	What string `json:"what"`
	// Terms are the accuracies the quantity sums, each with its sign;
	// empty for evidence that is another claim's decision (claim (f)).
	Terms []Term `json:"terms,omitempty"`
	// Estimate is the quantity with its 95% interval; nil when the
	// evidence is missing or is another claim's decision.
	Estimate *Interval `json:"estimate,omitempty"`
	// Need is the set of values the claim needs, e.g. "> 0", ">= 0.38".
	Need   string `json:"need,omitempty"`
	Status Status `json:"status"`
	// Missing says why the evidence is not run.
	Missing string `json:"missing,omitempty"`
}

// Term is an accuracy entering a quantity with the sign +1 or -1.
type Term struct {
	Label string           `json:"label"`
	Sign  float64          `json:"sign"`
	Acc   metrics.Accuracy `json:"accuracy"`
}

// Interval is an estimate with its 95% interval [Lo, Hi].
type Interval struct {
	Value float64 `json:"value"`
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
}

// Bound is the set of values a claim needs: the quantity above Value, or
// at least Value when Closed.
type Bound struct {
	Value  float64
	Closed bool
}

func (b Bound) String() string {
	if b.Closed {
		return fmt.Sprintf(">= %g", b.Value)
	}
	return fmt.Sprintf("> %g", b.Value)
}

// Decide returns the status of the claim "the quantity lies in b" from the
// quantity's 95% interval iv: Holds when [Lo, Hi] lies inside b, DoesNotHold
// when it lies wholly outside, Inconclusive when it straddles b's edge. At
// the edge itself, a closed bound (">= v") holds with Lo == v and an open one
// ("> v") does not hold with Hi == v.
func (b Bound) Decide(iv Interval) Status {
	switch {
	case math.IsNaN(iv.Lo) || math.IsNaN(iv.Hi):
		return NotRun
	case b.Closed && iv.Lo >= b.Value, !b.Closed && iv.Lo > b.Value:
		return Holds
	case b.Closed && iv.Hi < b.Value, !b.Closed && iv.Hi <= b.Value:
		return DoesNotHold
	}
	return Inconclusive
}

// Combine returns the 95% interval of the signed sum of the terms'
// accuracies by the method of variance estimates recovery (MOVER, Zou and
// Donner 2008) from each accuracy's Wilson interval; for a difference of two
// accuracies it is Newcombe's hybrid score interval (Newcombe 1998, method
// 10), which keeps close to nominal coverage at small n and near 0 and 1.
// It treats the accuracies as independent. Those of one run are measured on
// the same images, and their positive correlation makes the true interval
// narrower: the interval is conservative there, so a claim it decides is
// decided at least at the 95% level.
func Combine(terms []Term) Interval {
	var v, below, above float64
	for _, t := range terms {
		a := t.Acc
		v += t.Sign * a.Value
		down, up := a.Value-a.Lo, a.Hi-a.Value
		if t.Sign < 0 {
			down, up = up, down
		}
		below += down * down
		above += up * up
	}
	return Interval{Value: v, Lo: v - math.Sqrt(below), Hi: v + math.Sqrt(above)}
}

// evidence returns the evidence that the signed sum of terms lies in b.
func evidence(what string, b Bound, terms ...Term) Evidence {
	iv := Combine(terms)
	if len(terms) == 1 && terms[0].Sign > 0 {
		a := terms[0].Acc
		iv = Interval{a.Value, a.Lo, a.Hi}
	}
	return Evidence{What: what, Terms: terms, Estimate: &iv, Need: b.String(), Status: b.Decide(iv)}
}

// missingEvidence is evidence the run does not have, and why.
func missingEvidence(what, why string) Evidence {
	return Evidence{What: what, Status: NotRun, Missing: why}
}

// AllOf returns the status of a claim made of every part: DoesNotHold when
// a part does not hold, Holds when every part holds, NotRun when there are
// no parts or none was run, Inconclusive otherwise. Holds needs every part
// at 95% (an intersection-union test: the claim's level is 95% without a
// correction); DoesNotHold takes one part at 95%, so with k parts a
// spurious DoesNotHold has a chance of up to k x 5%.
func AllOf(parts []Status) Status {
	holds, run := 0, 0
	for _, s := range parts {
		switch s {
		case DoesNotHold:
			return DoesNotHold
		case Holds:
			holds++
		}
		if s != NotRun {
			run++
		}
	}
	switch {
	case run == 0:
		return NotRun
	case holds == len(parts):
		return Holds
	}
	return Inconclusive
}

// decideAll sets c's status from its evidence (AllOf), and says why when
// evidence is missing.
func (c *Claim) decideAll() {
	st := make([]Status, len(c.Evidence))
	missing := 0
	for i, e := range c.Evidence {
		st[i] = e.Status
		if e.Status == NotRun {
			missing++
		}
	}
	c.Status = AllOf(st)
	switch {
	case len(c.Evidence) == 0:
		c.Status = NotRun
	case missing == len(c.Evidence) && c.Why == "":
		c.Why = c.Evidence[0].Missing
	case missing > 0 && c.Why == "":
		c.Why = fmt.Sprintf("%d of %d comparisons not run", missing, len(c.Evidence))
	}
}

// ProtocolName returns the attack protocol of r as the verdict groups runs:
// the name of its Protocol, "text" for results written before protocols
// existed (they measured budgets as the paper's text states them),
// followed by " + round8" when the adversarial images were rounded to 8
// bits under a protocol other than "release", which always rounds.
func (r *Results) ProtocolName() string {
	if r.Protocol == nil || r.Protocol.Name == "" {
		return "text"
	}
	p := r.Protocol.Name
	if r.Protocol.Round8 && p != "release" {
		p += " + round8"
	}
	return p
}

// RunInput is a run's results with the label a verdict gives it.
type RunInput struct {
	Label   string
	Results *Results
}

// RunVerdict returns the verdict on the paper's claims that r's own results
// decide, labelled with the run's name. Claims that need other runs (claim
// (f): several resolutions) are not run.
func RunVerdict(r *Results) *Verdict {
	v := Verdicts([]RunInput{{Label: r.Name, Results: r}})
	return &v[0]
}

// Verdicts returns one verdict per attack protocol of the runs, in the order
// the protocols first appear: the claims decided by each run's own results,
// one entry per run, and claim (f), which compares the runs of the protocol
// made at different resolutions.
func Verdicts(runs []RunInput) []Verdict {
	var out []Verdict
	index := map[string]int{}
	byProto := [][]RunInput{}
	for _, in := range runs {
		p := in.Results.ProtocolName()
		i, ok := index[p]
		if !ok {
			i = len(out)
			index[p] = i
			out = append(out, Verdict{Protocol: p})
			byProto = append(byProto, nil)
		}
		byProto[i] = append(byProto[i], in)
	}
	for i := range out {
		out[i].Runs, out[i].Claims = decideClaims(byProto[i])
	}
	return out
}

// decideClaims decides every claim for the runs of one protocol.
func decideClaims(runs []RunInput) ([]VerdictRun, []Claim) {
	var vr []VerdictRun
	perRun := make([]map[string]Claim, len(runs))
	for i, in := range runs {
		r := in.Results
		vr = append(vr, VerdictRun{Label: in.Label, Name: r.Name, Data: r.Data.Name, Height: r.Data.Height, Width: r.Data.Width,
			Train: r.Data.Train, Test: r.Data.Test, AttackSubset: r.Data.AttackSubset})
		perRun[i] = map[string]Claim{}
		for _, def := range runClaims {
			c := def.decide(r)
			c.ID, c.Run = def.id, in.Label
			perRun[i][def.id] = c
		}
	}
	var claims []Claim
	for _, id := range ClaimIDs {
		if id == ClaimResolutions {
			claims = append(claims, resolutionClaim(runs, perRun))
			continue
		}
		for i := range runs {
			claims = append(claims, perRun[i][id])
		}
	}
	return vr, claims
}
