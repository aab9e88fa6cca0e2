package attack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// eightBit returns the fixture's test images rounded to 8 bits, with some
// pixels moved to the edges of [0,1] (0, 1, 3/255, 253/255) so that the
// release steps clip there.
func eightBit(f *fixture) *tensor.Tensor {
	x := f.x.Clone()
	Round8(x.Data)
	edges := []float32{0, 1, 3.0 / 255, 253.0 / 255}
	for j := 0; j < len(x.Data); j += 7 {
		x.Data[j] = edges[(j/7)%len(edges)]
	}
	return x
}

// releaseAttack builds the paper's column name under ProtocolRelease with
// the default options, and returns them.
func releaseAttack(t *testing.T, name string) (Attack, any) {
	t.Helper()
	s, err := ProtocolRelease.Setting(name)
	if err != nil {
		t.Fatal(err)
	}
	a, opts, err := s.New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return a, opts
}

// TestReleaseFGSMSteps checks that under the release protocol FGSM-0.08 and
// FGSM-0.04 move every pixel by exactly k/255 (k = 8, 4) along the sign of
// the gradient before clipping, that clipping only ever moves a pixel back
// into [0,1] (to 0 or 1, where x0 +- k/255 left it), and that on 8-bit
// images the rounded result differs from x0 by exactly k levels on every
// unclipped pixel.
func TestReleaseFGSMSteps(t *testing.T) {
	f := getFixture(t)
	x0 := eightBit(f)
	ctx := context.Background()
	_, g, err := f.m.InputGrad(ctx, x0, crossEntropySeed(f.labels, fixK, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		k    int
	}{{PaperFGSM008, 8}, {PaperFGSM004, 4}} {
		a, _ := releaseAttack(t, tc.name)
		r, err := a.Run(ctx, f.m, x0, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		step := float64(tc.k) / 255
		adv := r.Adv.Clone()
		Round8(adv.Data)
		clipped := 0
		for j, v := range x0.Data {
			sign := 0.0
			if g.Data[j] > 0 {
				sign = 1
			} else if g.Data[j] < 0 {
				sign = -1
			}
			want := float64(v) + sign*step // the step before clipping
			got := float64(r.Adv.Data[j])
			lv, la := math.Round(float64(v)*255), math.Round(float64(adv.Data[j])*255)
			switch {
			case want < 0 || want > 1:
				// Clipped: onto the edge of [0,1] the step crossed.
				clipped++
				edge := math.Max(0, math.Min(1, want))
				if got != edge {
					t.Fatalf("%s pixel %d: x0 %v + %v clipped to %v, want %v", tc.name, j, v, sign*step, got, edge)
				}
			default:
				// float32 arithmetic: within one ulp of the exact sum.
				if math.Abs(got-want) > 6e-8 {
					t.Fatalf("%s pixel %d: moved by %.9g, want exactly %v/255 * %v", tc.name, j, got-float64(v), tc.k, sign)
				}
				if la-lv != sign*float64(tc.k) {
					t.Fatalf("%s pixel %d: 8-bit levels %v -> %v, want a step of %v", tc.name, j, lv, la, sign*float64(tc.k))
				}
			}
		}
		if clipped == 0 {
			t.Errorf("%s: no pixel clipped; the test images should exercise clipping", tc.name)
		}
		if m := maxAbs(r.LInf); math.Abs(m-step) > 6e-8 {
			t.Errorf("%s: L-infinity %v, want %v", tc.name, m, step)
		}
	}
}

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// TestReleaseBIM checks BIM under the release protocol: L-infinity 4/255 in
// Kurakin et al.'s 5 steps of 1/255.
func TestReleaseBIM(t *testing.T) {
	f := getFixture(t)
	x0 := eightBit(f)
	a, opts := releaseAttack(t, PaperBIM)
	o := opts.(BIMOptions)
	if o.Budget != (Budget{Norm: LInf, Eps: 4.0 / 255}) || o.Steps != 5 || math.Abs(o.StepFrac*o.Budget.Eps-1.0/255) > 1e-15 {
		t.Fatalf("release BIM options %+v, want L-inf 4/255, 5 steps of 1/255", o)
	}
	r, err := a.Run(context.Background(), f.m, x0, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	if r.Passes != 5 {
		t.Errorf("passes %d, want 5", r.Passes)
	}
	if m := maxAbs(r.LInf); m > 4.0/255 || m < 3.99/255 {
		t.Errorf("L-infinity %v, want at most and about 4/255", m)
	}
}

func TestKurakinSteps(t *testing.T) {
	for _, tc := range []struct {
		eps   float64
		steps int
		frac  float64
	}{
		{4.0 / 255, 5, 0.25},       // min(8, 5)
		{8.0 / 255, 10, 0.125},     // min(12, 10)
		{16.0 / 255, 20, 1.0 / 16}, // min(20, 20)
		{32.0 / 255, 36, 1.0 / 32}, // min(36, 40)
		{2.0 / 255, 3, 0.5},        // min(6, 2.5) rounded up
	} {
		steps, frac := KurakinSteps(tc.eps)
		if steps != tc.steps || math.Abs(frac-tc.frac) > 1e-12 {
			t.Errorf("KurakinSteps(%v/255) = %d, %v; want %d, %v", tc.eps*255, steps, frac, tc.steps, tc.frac)
		}
	}
}

// TestRound8 checks that rounding to 8 bits is idempotent, moves no value
// in [0,1] by more than 0.5/255, lands on k/255 exactly as float32 holds
// it, clips values outside [0,1] and keeps NaN.
func TestRound8(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	x := make([]float32, 10000)
	for i := range x {
		x[i] = rng.Float32()
	}
	x = append(x, 0, 1, 0.5/255, 1.5/255, 254.5/255, math.Nextafter32(1, 0))
	orig := append([]float32(nil), x...)
	Round8(x)
	for i, v := range x {
		if d := math.Abs(float64(v) - float64(orig[i])); d > 0.5/255+1e-7 {
			t.Fatalf("%v rounded to %v: moved %v > 0.5/255", orig[i], v, d)
		}
		k := math.Round(float64(v) * 255)
		if v != float32(k/255) {
			t.Fatalf("%v rounded to %v, not a float32 k/255", orig[i], v)
		}
	}
	again := append([]float32(nil), x...)
	Round8(again)
	for i := range x {
		if again[i] != x[i] {
			t.Fatalf("not idempotent: %v -> %v -> %v", orig[i], x[i], again[i])
		}
	}
	edge := []float32{-0.2, 1.3, float32(math.NaN()), float32(math.Inf(1))}
	Round8(edge)
	if edge[0] != 0 || edge[1] != 1 || !math.IsNaN(float64(edge[2])) || edge[3] != 1 {
		t.Errorf("out-of-range values rounded to %v, want 0, 1, NaN, 1", edge)
	}
}

// TestProtocols checks the settings each protocol gives the paper's
// columns.
func TestProtocols(t *testing.T) {
	text, err := ProtocolText.Settings()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range PaperSettings() {
		if text[i] != s {
			t.Errorf("text %s = %+v, want the paper's %+v", s.Name, text[i], s)
		}
	}
	release := map[string]Budget{
		PaperFGSM008: {Norm: LInf, Eps: 8.0 / 255}, PaperFGSM004: {Norm: LInf, Eps: 4.0 / 255}, PaperBIM: {Norm: LInf, Eps: 4.0 / 255},
		PaperDeepFool: {Norm: L2Rel, Eps: 0.04}, PaperCW: {Norm: L2Rel, Eps: 0.04}, PaperBPDA: {Norm: LInf, Eps: 0.031},
	}
	for name, b := range release {
		s, err := ProtocolRelease.Setting(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Budget != b {
			t.Errorf("release %s: budget %v, want %v", name, s.Budget, b)
		}
	}
	if !ProtocolRelease.Round8() || ProtocolText.Round8() || Protocol("").Round8() {
		t.Error("only release rounds")
	}
	for _, tc := range []struct {
		in   string
		want Protocol
		ok   bool
	}{{"", ProtocolText, true}, {"text", ProtocolText, true}, {"release", ProtocolRelease, true}, {"Release", "", false}, {"paper", "", false}} {
		p, err := ParseProtocol(tc.in)
		var ue *UnknownError
		if tc.ok != (err == nil) || p != tc.want || (!tc.ok && !errors.As(err, &ue)) {
			t.Errorf("ParseProtocol(%q) = %q, %v", tc.in, p, err)
		}
	}
	if _, err := Protocol("nope").Settings(); err == nil {
		t.Error("unknown protocol accepted")
	}
	for _, name := range ProtocolNames() {
		if Protocol(name).Doc() == "" || Protocol(name).Short() == "" {
			t.Errorf("%s: no documentation line", name)
		}
	}
	// A setting's steps apply only to methods that have them.
	s := Setting{Name: "x", Method: "fgsm", Budget: Budget{Norm: LInf, Eps: 0.1}, Steps: 3}
	if _, _, err := s.New(DefaultConfig()); err == nil {
		t.Error("steps accepted for FGSM")
	}
}

// TestProtocolApply checks how each protocol reads a method at a budget
// (what stl attack takes): the paper's columns as Setting gives them, other
// budgets kept, normalized L2 on normalized tensors under guo, and FGSM and
// BIM at other normalized L2 budgets refused under release.
func TestProtocolApply(t *testing.T) {
	l2 := func(e float64) Budget { return Budget{Norm: L2Rel, Eps: e} }
	linf := func(e float64) Budget { return Budget{Norm: LInf, Eps: e} }
	for _, tc := range []struct {
		p      Protocol
		method string
		in     Budget
		want   Budget
		steps  int    // 0: the method's own
		name   string // the column's, or the method's when not one
		err    string // the error wanted, "" for none
	}{
		{"", "fgsm", l2(0.08), l2(0.08), 0, PaperFGSM008, ""},
		{ProtocolText, "fgsm", l2(0.06), l2(0.06), 0, "fgsm", ""},
		{ProtocolText, "bim", l2(0.04), l2(0.04), 0, PaperBIM, ""},
		{ProtocolRelease, "fgsm", l2(0.08), linf(8.0 / 255), 0, PaperFGSM008, ""},
		{ProtocolRelease, "fgsm", l2(0.04), linf(4.0 / 255), 0, PaperFGSM004, ""},
		{ProtocolRelease, "bim", l2(0.04), linf(4.0 / 255), 5, PaperBIM, ""},
		{ProtocolRelease, "deepfool", l2(0.04), l2(0.04), 0, PaperDeepFool, ""},
		{ProtocolRelease, "cw", l2(0.06), l2(0.06), 0, "cw", ""},
		{ProtocolRelease, "uap", l2(0.06), l2(0.06), 0, "uap", ""},
		{ProtocolRelease, "pgd", linf(0.031), linf(0.031), 0, PaperBPDA, ""},
		{ProtocolRelease, "fgsm", linf(0.05), linf(0.05), 0, "fgsm", ""},
		{ProtocolRelease, "fgsm", l2(0.06), Budget{}, 0, "", "0.08 (FGSM-0.08: L-infinity 8/255) or 0.04 (FGSM-0.04: L-infinity 4/255)"},
		{ProtocolRelease, "bim", l2(0.08), Budget{}, 0, "", "0.04 (BIM: L-infinity 4/255)"},
		{ProtocolGuo, "fgsm", l2(0.08), Budget{Norm: L2Z, Eps: 0.08}, 0, PaperFGSM008, ""},
		{ProtocolGuo, "cw", l2(0.06), Budget{Norm: L2Z, Eps: 0.06}, 0, "cw", ""},
		{ProtocolGuo, "uap", l2(0.06), Budget{Norm: L2Z, Eps: 0.06}, 0, "uap", ""},
		{ProtocolGuo, "fgsm", Budget{Norm: L2Z, Eps: 0.05}, Budget{Norm: L2Z, Eps: 0.05}, 0, "fgsm", ""},
		{ProtocolGuo, "pgd", linf(0.031), linf(0.031), 0, PaperBPDA, ""},
		{"nope", "fgsm", l2(0.04), Budget{}, 0, "", "unknown attack protocol"},
	} {
		what := fmt.Sprintf("%s %s at %v", tc.p, tc.method, tc.in)
		s, err := tc.p.Apply(Setting{Name: tc.method, Method: tc.method, Budget: tc.in})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one saying %q", what, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		if s.Budget != tc.want || s.Steps != tc.steps || s.Name != tc.name || s.Method != tc.method {
			t.Errorf("%s: %+v, want budget %v, %d steps, name %q", what, s, tc.want, tc.steps, tc.name)
		}
	}
}
