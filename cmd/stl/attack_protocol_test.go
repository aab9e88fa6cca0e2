package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// attackedClean returns the clean images a saved set was computed from
// (the sample's test images at its indices).
func attackedClean(t *testing.T, s *attack.Set) *tensor.Tensor {
	t.Helper()
	_, test, err := dataset.LoadContext(context.Background(), dataset.DefaultSpec, dataset.DefaultLoadOptions())
	if err != nil {
		t.Fatal(err)
	}
	return test.Subset(s.Meta.Indices).Images
}

// protocolFlags are stl attack's flags for a run of method at budget (0:
// the method's) on 6 test images of the sample in batches of 3, under
// protocol, into out.
func protocolFlags(model, out, method string, budget float64, protocol attack.Protocol, round8 bool) attackFlags {
	return attackFlags{Opts: experiment.AttackOptions{Model: model, Data: dataset.DefaultSpec, Split: "test", N: 6, SubsetSeed: 1,
		Batch: 3, EOT: 1, Out: out, Protocol: protocol, Round8: round8}, Method: method, Budget: budget}
}

// runSet runs stl attack with f and loads the set it saved.
func runSet(t *testing.T, f attackFlags) (*attack.Set, string) {
	t.Helper()
	var stdout bytes.Buffer
	if err := runAttack(context.Background(), f, &stdout, progress.Nop); err != nil {
		t.Fatal(err)
	}
	s, err := attack.LoadSet(f.Opts.Out)
	if err != nil {
		t.Fatal(err)
	}
	return s, stdout.String()
}

// directFGSM is FGSM at normalized L2 eps run on x0 against the model
// directly, in one call: what stl attack computed before protocols existed.
func directFGSM(t *testing.T, model string, x0 *tensor.Tensor, labels []int, eps float64) *tensor.Tensor {
	t.Helper()
	m, err := experiment.LoadModel(model, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, err := attack.NewFGSM(attack.FGSMOptions{Budget: attack.Budget{Norm: attack.L2Rel, Eps: eps}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Run(context.Background(), m, x0, labels)
	if err != nil {
		t.Fatal(err)
	}
	return r.Adv
}

// TestRunAttackProtocols runs stl attack under each protocol and checks,
// on every image of the saved set, the budget the protocol gives: the
// text's normalized L2 with the images of the attack itself (as before
// protocols existed), the release's L-infinity steps of exactly k/255
// before clipping (every value moves by k levels of the 8-bit clean image
// unless the step left [0,1], where it stops at 0 or 1) with 8-bit images,
// guo's normalized L2 on the classifier's normalized tensors, and --round8
// under the text protocol (the text's images, rounded); the protocol and
// rounding recorded in meta.json and printed; and meta.json's figures,
// those of the saved images.
func TestRunAttackProtocols(t *testing.T) {
	model := savedClassifier(t)
	for _, tc := range []struct {
		name     string
		protocol attack.Protocol
		method   string
		budget   float64
		round8   bool // --round8
		rounded  bool // the images are rounded
		print    string
		check    func(t *testing.T, s *attack.Set, x0 *tensor.Tensor)
	}{
		{"text", "", "fgsm", 0.08, false, false, "FGSM-0.08 on 6 images of sample:cifar10/test (test), model " + model + ", protocol text\n",
			func(t *testing.T, s *attack.Set, x0 *tensor.Tensor) {
				checkDissim(t, s.Meta.Dissim, 0.08)
				if !slices.Equal(s.Adv.Data, directFGSM(t, model, x0, s.Labels, 0.08).Data) {
					t.Error("the text protocol's images differ from FGSM's own")
				}
			}},
		{"release-fgsm-0.08", attack.ProtocolRelease, "fgsm", 0.08, false, true, "FGSM-linf0.03137254901960784 (8-bit) on 6 images", func(t *testing.T, s *attack.Set, x0 *tensor.Tensor) {
			checkLevelSteps(t, s.Adv, x0, 8, true)
		}},
		{"release-fgsm-0.04", attack.ProtocolRelease, "fgsm", 0.04, false, true, "protocol release with 8-bit rounding", func(t *testing.T, s *attack.Set, x0 *tensor.Tensor) {
			checkLevelSteps(t, s.Adv, x0, 4, true)
		}},
		{"release-bim", attack.ProtocolRelease, "bim", 0, false, true, "BIM-linf0.01568627450980392 (8-bit)", func(t *testing.T, s *attack.Set, x0 *tensor.Tensor) {
			checkLevelSteps(t, s.Adv, x0, 4, false)
			if s.Meta.Budget != (attack.Budget{Norm: attack.LInf, Eps: 4.0 / 255}) || s.Meta.Passes != 5*2 { // two batches of 3
				t.Errorf("budget %v, %d passes, want L-inf 4/255 in 5 steps per batch", s.Meta.Budget, s.Meta.Passes)
			}
		}},
		{"guo", attack.ProtocolGuo, "fgsm", 0.08, false, false, "protocol guo\n", func(t *testing.T, s *attack.Set, x0 *tensor.Tensor) {
			n := s.Meta.Budget.Normalization
			if s.Meta.Budget.Norm != attack.L2Z || s.Meta.Budget.Eps != 0.08 || n == nil || len(n.Mean) != 3 {
				t.Fatalf("budget %v, want l2z 0.08 in the classifier's normalization", s.Meta.Budget)
			}
			dz, err := attack.DissimilarityZ(s.Adv, x0, *n)
			if err != nil {
				t.Fatal(err)
			}
			checkDissim(t, dz, 0.08)
			if mean(dz) < 0.07 {
				t.Errorf("mean dissimilarity on normalized tensors %g, want about 0.08 (FGSM spends its budget before clipping)", mean(dz))
			}
			if d := mean(s.Meta.Dissim); math.Abs(d-0.08) < 0.01 {
				t.Errorf("mean dissimilarity on pixels %g: the budget looks measured on pixels", d)
			}
		}},
		{"text-round8", "", "fgsm", 0.04, true, true, "protocol text with 8-bit rounding", func(t *testing.T, s *attack.Set, x0 *tensor.Tensor) {
			want := directFGSM(t, model, x0, s.Labels, 0.04)
			if err := attack.Round8Within(want, x0, attack.Budget{Norm: attack.L2Rel, Eps: 0.04}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Adv.Data, want.Data) {
				t.Error("the images are not the text protocol's, rounded inside the budget")
			}
			checkDissim(t, s.Meta.Dissim, 0.04)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, stdout := runSet(t, protocolFlags(model, filepath.Join(t.TempDir(), "adv"), tc.method, tc.budget, tc.protocol, tc.round8))
			if !strings.Contains(stdout, tc.print) {
				t.Errorf("output lacks %q:\n%s", tc.print, stdout)
			}
			if s.Meta.Protocol != attack.Protocol(tc.protocol.String()) || s.Meta.Round8 != tc.rounded {
				t.Errorf("meta.json: protocol %q, round8 %v; want %q, %v", s.Meta.Protocol, s.Meta.Round8, tc.protocol.String(), tc.rounded)
			}
			x0 := attackedClean(t, s)
			if tc.rounded {
				check8Bit(t, s.Adv)
			}
			dissim, linf, err := attack.Distances(s.Adv, x0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range dissim {
				if math.Abs(dissim[i]-s.Meta.Dissim[i]) > 1e-12 || math.Abs(linf[i]-s.Meta.LInf[i]) > 1e-12 {
					t.Errorf("image %d: meta.json records %g, %g; the images give %g, %g", i, s.Meta.Dissim[i], s.Meta.LInf[i], dissim[i], linf[i])
				}
			}
			tc.check(t, s, x0)
		})
	}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func checkDissim(t *testing.T, d []float64, eps float64) {
	t.Helper()
	for i, v := range d {
		if v > eps*(1+1e-5) || v == 0 {
			t.Errorf("image %d: dissimilarity %g, want in (0, %g]", i, v, eps)
		}
	}
}

// check8Bit checks that every value of x is a multiple of 1/255 as
// attack.Round8 stores it.
func check8Bit(t *testing.T, x *tensor.Tensor) {
	t.Helper()
	r := x.Clone()
	attack.Round8(r.Data)
	for i := range r.Data {
		if r.Data[i] != x.Data[i] {
			t.Fatalf("value %d is %v, not 8-bit", i, x.Data[i])
		}
	}
}

// checkLevelSteps checks, on 8-bit clean images x0, that every value of
// adv moved by exactly k levels (exact) or by at most k levels (not
// exact, for iterated steps), stopping at 0 or 255 only when a step of k
// levels would have left [0,255], and that some value moved by k levels.
func checkLevelSteps(t *testing.T, adv, x0 *tensor.Tensor, k int, exact bool) {
	t.Helper()
	full := 0
	for i, v := range x0.Data {
		l0 := math.Round(255 * float64(v))
		if math.Abs(255*float64(v)-l0) > 1e-4 {
			t.Fatalf("clean value %d is %v, not 8-bit", i, v)
		}
		la := math.Round(255 * float64(adv.Data[i]))
		step := la - l0
		clipped := la == 0 && l0 < float64(k) || la == 255 && l0 > float64(255-k)
		switch {
		case math.Abs(step) == float64(k):
			full++
		case clipped:
		case !exact && math.Abs(step) < float64(k):
		default:
			t.Fatalf("value %d: 8-bit level %v -> %v, want a step of %d levels (or one clipped at 0 or 255)", i, l0, la, k)
		}
	}
	if full == 0 {
		t.Errorf("no value moved by %d levels", k)
	}
}

// cancelOnAttack cancels once the attack has finished n images.
type cancelOnAttack struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelOnAttack) Report(stage string, done, _ int, _ string) {
	if strings.HasPrefix(stage, "attack ") && done >= c.n {
		c.cancel()
	}
}

// TestAttackResumeProtocol interrupts stl attack under the release
// protocol after its first batch and checks that resuming under another
// protocol or rounding is a *ProtocolMismatchError naming both, that the
// interrupted run under its own flags completes, and that a record without
// batches to resume is no obstacle.
func TestAttackResumeProtocol(t *testing.T) {
	model := savedClassifier(t)
	f := protocolFlags(model, filepath.Join(t.TempDir(), "adv"), "fgsm", 0.08, attack.ProtocolRelease, false)
	f.Opts.N, f.Opts.Batch = 4, 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := runAttack(ctx, f, &bytes.Buffer{}, &cancelOnAttack{n: 2, cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	partial := filepath.Join(f.Opts.Out, ".partial")
	if batches, _ := filepath.Glob(filepath.Join(partial, "batch-*")); len(batches) != 1 {
		t.Fatalf("checkpointed batches %v, want 1", batches)
	}
	for _, other := range []struct {
		protocol attack.Protocol
		round8   bool
		want     string
	}{
		{"", false, "under protocol release with 8-bit rounding, and this run asks for protocol text without rounding"},
		{attack.ProtocolText, true, "asks for protocol text with 8-bit rounding"},
		{attack.ProtocolGuo, false, "asks for protocol guo without rounding"},
	} {
		g := f
		g.Opts.Protocol, g.Opts.Round8 = other.protocol, other.round8
		err := runAttack(context.Background(), g, &bytes.Buffer{}, progress.Nop)
		var pe *experiment.ProtocolMismatchError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), other.want) || !strings.Contains(err.Error(), "remove "+partial) {
			t.Errorf("resume under %s (round8 %v): %v, want a protocol mismatch saying %q", other.protocol, other.round8, err, other.want)
		}
	}
	// --round8 under release changes nothing: the same run resumes.
	g := f
	g.Opts.Round8 = true
	if err := runAttack(context.Background(), g, &bytes.Buffer{}, progress.Nop); err != nil {
		t.Fatalf("resume under the same protocol: %v", err)
	}
	s, err := attack.LoadSet(f.Opts.Out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Adv.Shape[0] != 4 || s.Meta.Protocol != attack.ProtocolRelease || !s.Meta.Round8 {
		t.Errorf("resumed set: %d images, protocol %q, round8 %v", s.Adv.Shape[0], s.Meta.Protocol, s.Meta.Round8)
	}
	checkLevelSteps(t, s.Adv, attackedClean(t, s), 8, true)
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoints left behind: %v", err)
	}

	// A protocol record without batches (an interrupted run that finished
	// none) does not stop a run under another protocol.
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, "protocol.json"), []byte(`{"protocol":"release","round8":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	f.Opts.Protocol = attack.ProtocolText
	if s, _ := runSet(t, f); s.Meta.Protocol != attack.ProtocolText || s.Meta.Round8 {
		t.Errorf("run over a record without batches: protocol %q, round8 %v", s.Meta.Protocol, s.Meta.Round8)
	}
}

// TestAttackProtocolComposes runs the protocols with the rest of stl
// attack: shards of one protocol merge into the unsharded set and shards
// of two do not; the strength search under release measures, and saves,
// rounded images; a universal perturbation under release is rounded, and
// one fitted on pixels is refused under guo.
func TestAttackProtocolComposes(t *testing.T) {
	model := savedClassifier(t)
	dir := t.TempDir()
	whole, _ := runSet(t, protocolFlags(model, filepath.Join(dir, "whole"), "fgsm", 0.08, attack.ProtocolRelease, false))
	var parts []string
	for i, p := range []attack.Protocol{attack.ProtocolRelease, attack.ProtocolRelease, ""} {
		f := protocolFlags(model, filepath.Join(dir, "part"+string(rune('0'+i))), "fgsm", 0.08, p, false)
		f.Opts.Shard = dataset.Shard{Index: i % 2, Count: 2}
		runSet(t, f)
		parts = append(parts, f.Opts.Out)
	}
	merged := filepath.Join(dir, "merged")
	if err := runMerge(context.Background(), &bytes.Buffer{}, merged, parts[:2]); err != nil {
		t.Fatal(err)
	}
	if s, err := attack.LoadSet(merged); err != nil || !slices.Equal(s.Adv.Data, whole.Adv.Data) || s.Meta.Protocol != attack.ProtocolRelease || !s.Meta.Round8 {
		t.Errorf("merged release shards: %v; equal to the whole run: %v", err, err == nil && slices.Equal(s.Adv.Data, whole.Adv.Data))
	}
	if err := runMerge(context.Background(), &bytes.Buffer{}, filepath.Join(dir, "mixed"), []string{parts[0], parts[2]}); err == nil || !strings.Contains(err.Error(), "protocol text without rounding, set 1 under release") {
		t.Errorf("merging a release and a text shard: %v", err)
	}

	f := protocolFlags(model, filepath.Join(dir, "search"), "deepfool", 0, attack.ProtocolRelease, false)
	f.Overshoot, f.Candidates = 0.02, 3
	f.Search = attack.SearchOptions{Target: 0.06, MaxProbes: 20}
	s, stdout := runSet(t, f)
	if !strings.Contains(stdout, "search: overshoot") || !s.Meta.Round8 {
		t.Errorf("search under release: budget %v, round8 %v\n%s", s.Meta.Budget, s.Meta.Round8, stdout)
	}
	check8Bit(t, s.Adv)
	m, err := experiment.LoadModel(model, 1)
	if err != nil {
		t.Fatal(err)
	}
	dz, err := attack.MeanDissimilarityZ(s.Adv, attackedClean(t, s), *m.Norm)
	if err != nil || math.Abs(dz-0.06) > 0.06*0.01*(1+1e-9) {
		t.Errorf("the saved, rounded images average %g on normalized tensors (%v), want 0.06 within 1%%", dz, err)
	}
	var found attack.SearchResult
	if js, err := os.ReadFile(filepath.Join(f.Opts.Out, experiment.SearchFile)); err != nil || json.Unmarshal(js, &found) != nil || math.Abs(found.Mean-dz) > 1e-12 {
		t.Errorf("search.json: average %g (%v), the saved images' %g: the probes did not measure the rounded images", found.Mean, err, dz)
	}

	f = protocolFlags(model, filepath.Join(dir, "uap"), methodUAP, 0, attack.ProtocolRelease, false)
	f.MaxIter, f.Candidates = 5, 3
	f.UAP = experiment.UAPJobOptions{FitImages: 6, FitSeed: 1, UAP: attack.UAPOptions{FoolingRate: 0.8, MaxPasses: 1, Seed: 1}}
	s, _ = runSet(t, f)
	if s.Meta.Protocol != attack.ProtocolRelease || !s.Meta.Round8 || s.Meta.Budget.Norm != attack.L2Rel {
		t.Errorf("UAP under release: protocol %q, round8 %v, budget %v", s.Meta.Protocol, s.Meta.Round8, s.Meta.Budget)
	}
	check8Bit(t, s.Adv)
	f.UAP.From, f.Opts.Out, f.Opts.Protocol = filepath.Join(dir, "uap"), filepath.Join(dir, "uap-guo"), attack.ProtocolGuo
	if err := runAttack(context.Background(), f, &bytes.Buffer{}, progress.Nop); err == nil || !strings.Contains(err.Error(), "fitted at l2=0.06") {
		t.Errorf("a perturbation fitted on pixels under guo: %v", err)
	}
}
