package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// paperClaim is a claim as the compact verdict table states it: in a few
// words, with the paper's own numbers for it.
type paperClaim struct {
	short string // the claim in a few words
	paper string // the paper's numbers (CIFAR-10 and VGG-16 unless said)
}

// paperClaims holds, per claim ID (ClaimIDs), the compact table's words and
// the paper's numbers: Table 1 (No Defense 0.9298 / 0.5816 / 0.6523 /
// 0.1803 / 0.1760 / 0.0936, STL 0.9002 / 0.8515 / 0.8732 / 0.8754 /
// 0.8838 / 0.8880, STL (cluster) 0.9011 / 0.8567 / 0.8715 / 0.8803 /
// 0.8890 / 0.8904 for clean, FGSM-0.08, FGSM-0.04, BIM, DeepFool, CW),
// Table 2.A (ImageNet-10 at 64 px), Table 4, Table 5 at FGSM-0.08 (MagNet
// 0.6145, PixelDefend 0.6810, STL 0.7099, STL (cluster) 0.7103) and
// Figure 5, which gives no figures.
var paperClaims = map[string]paperClaim{
	ClaimBeatsNoDefense: {"STL (cluster) beats No Defense under every attack (Table 1)",
		"0.8567-0.8904 against 0.0936-0.6523; smallest gap +0.2192 (FGSM-0.04)"},
	ClaimCluster: {"STL (cluster) is at least STL in every column (Table 1)",
		"-0.0017 to +0.0052; below STL at FGSM-0.04 (0.8715 against 0.8732)"},
	ClaimTransforms: {"At FGSM-0.08, STL and STL (cluster) beat every other input transformation (Table 5)",
		"0.7099 and 0.7103 against MagNet 0.6145, PixelDefend 0.6810"},
	ClaimCleanAccuracy: {"Retrained clean accuracy within 3 points of the vanilla classifier's (Table 1)",
		"0.9002 and 0.9011 against 0.9298 (-0.0296, -0.0287)"},
	ClaimAdvTraining: {"STL + AT and STL (cluster) + AT reach 0.38 and 0.42 under BPDA, L-inf 0.031 (Table 4)",
		"0.38*, 0.42* (* with adversarial training)"},
	ClaimResolutions: {"Robustness holds across resolutions: claim (a) at every resolution run",
		"\"from 32 to 224\" (section 5.2); ImageNet-10 at 64 px, FGSM-0.08: 0.7514 against 0.2816 (Table 2.A)"},
	ClaimSweep: {"As lambda grows, clean accuracy falls and the clean-adversarial gap shrinks (Figure 5)",
		"a plot only (ImageNet-10, 64 px, FGSM-0.08, lambda 0 to 0.5)"},
}

// WriteVerdictReadme writes, per verdict of vs (one per protocol), a compact
// Markdown table for a README: each claim in a few words, our numbers (the
// comparison that decides it, with its 95% interval, and how many of its
// comparisons hold), the paper's numbers and the decision. verdict.md has
// every comparison and the decision rules.
func WriteVerdictReadme(w io.Writer, vs []Verdict) error {
	ew := &errWriter{w: w}
	p := func(format string, a ...any) { fmt.Fprintf(ew, format, a...) }
	for i := range vs {
		v := &vs[i]
		if i > 0 {
			p("\n")
		}
		p("**Protocol %s** (%s)\n\n", v.Protocol, v.runsShort())
		p("| Claim | Our numbers (95%% intervals) | Paper | Verdict |\n|---|---|---|---|\n")
		multi := len(v.Runs) > 1
		for _, c := range v.Claims {
			pc := paperClaims[c.ID]
			claim := fmt.Sprintf("(%s) %s", c.ID, pc.short)
			if multi && c.Run != "" {
				claim += " [" + c.Run + "]"
			}
			p("| %s | %s | %s | **%s** |\n", mdEscape(claim), mdEscape(c.ourNumbers()), mdEscape(pc.paper), c.Status)
		}
	}
	return ew.err
}

// runsShort names the runs of v with their data and resolution, e.g.
// "c32: cifar10, 32 px; c64: cifar10, 64 px".
func (v *Verdict) runsShort() string {
	var runs []string
	for _, r := range v.Runs {
		runs = append(runs, fmt.Sprintf("%s: %s, %s", r.Label, r.Data, resolution(Data{Height: r.Height, Width: r.Width})))
	}
	return strings.Join(runs, "; ")
}

// ourNumbers summarizes c's evidence in one cell: the comparison that
// decides it (decisive) with its 95% interval and, when there are several,
// how many hold; for claim (f), each run's decision of claim (a); "-" for
// a claim not run.
func (c *Claim) ourNumbers() string {
	if c.Status == NotRun || len(c.Evidence) == 0 {
		return "-"
	}
	if c.ID == ClaimResolutions {
		var each []string
		for _, e := range c.Evidence {
			each = append(each, fmt.Sprintf("%s: %s", strings.TrimSuffix(e.What, ": claim (a)"), e.Status))
		}
		return strings.Join(each, "; ")
	}
	e := c.decisive()
	s := e.What
	if iv := e.Estimate; iv != nil {
		if len(e.Terms) == 1 && e.Terms[0].Sign > 0 {
			s += fmt.Sprintf(" %.3f [%.3f, %.3f]", iv.Value, iv.Lo, iv.Hi)
		} else {
			s += fmt.Sprintf(" %s [%s, %s]", signed(iv.Value), signed(iv.Lo), signed(iv.Hi))
		}
	}
	if len(c.Evidence) > 1 {
		holds := 0
		for _, e := range c.Evidence {
			if e.Status == Holds {
				holds++
			}
		}
		s += fmt.Sprintf("; %d of %d hold", holds, len(c.Evidence))
	}
	return s
}

// decisive returns the comparison of c's evidence that decides it: the
// first whose status is c's when c does not hold or is inconclusive, else
// the one whose interval's lower end lies closest to what the claim needs.
func (c *Claim) decisive() Evidence {
	best, margin := c.Evidence[0], math.Inf(1)
	for _, e := range c.Evidence {
		if c.Status != Holds {
			if e.Status == c.Status {
				return e
			}
			continue
		}
		if e.Estimate == nil {
			continue
		}
		if m := e.Estimate.Lo - needValue(e.Need); m < margin {
			best, margin = e, m
		}
	}
	return best
}

// needValue is the number of a Bound's text ("> 0", ">= -0.03"); 0 when
// there is none.
func needValue(need string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimLeft(need, "<>=")), 64)
	if err != nil {
		return 0
	}
	return v
}
