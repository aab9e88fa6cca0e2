package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// TestBenchAttackSuite times the suite's attacks through a baseline: one
// row per gradient attack and route, Square with queries only; against a
// model directory and against an ONNX file.
func TestBenchAttackSuite(t *testing.T) {
	for _, model := range []string{savedClassifier(t), "../../nn/onnx/testdata/torch/activations/model.onnx"} {
		f := benchAttackFlags{model: model, data: dataset.DefaultSpec, images: 2, threads: 1, json: true,
			defense: "jpeg", routes: "bpda", apgdSteps: 2, queries: 3, eot: 1, suiteOnly: true}
		var out bytes.Buffer
		if err := runBenchAttack(context.Background(), f, &out, progress.Nop); err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		var rep benchAttackReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Model != model || !strings.HasPrefix(rep.Defense, "JPEG") || len(rep.Results) != 7 || rep.CPU == "" || rep.Threads != 1 {
			t.Fatalf("%s: model %q, defense %q, %d rows, cpu %q, %d threads", model, rep.Model, rep.Defense, len(rep.Results), rep.CPU, rep.Threads)
		}
		for _, r := range rep.Results {
			square := r.Route == ""
			if square && (r.ImagePasses != 0 || r.ForwardImages == 0) || !square && (r.Route != "bpda" || r.ImagePasses == 0) {
				t.Errorf("%s: %s (route %q): %d gradient and %d forward image-passes", model, r.Attack, r.Route, r.ImagePasses, r.ForwardImages)
			}
			if r.MaxLInf > 8.0/255+1e-6 {
				t.Errorf("%s: %s: L-inf %g above 8/255", model, r.Attack, r.MaxLInf)
			}
		}
	}
}

// TestBenchAttackRouteOptions checks that the exact routes' options reach
// the attacks of stl bench attack: each row records them, a model built
// with another --unroll-iterations computes another gradient, and the
// command defines the flags with stl evaluate's texts.
func TestBenchAttackRouteOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a defense and attacks through the unrolled route")
	}
	dir := t.TempDir()
	def, model := tinyDefense(t, dir), savedClassifier(t)
	flags := func(k int) benchAttackFlags {
		f := benchAttackFlags{model: model, data: dataset.DefaultSpec, images: 2, threads: 1, json: true,
			defense: def, routes: "unrolled", apgdSteps: 1, queries: 1, eot: 1, suiteOnly: true, cluster: "vote"}
		f.grad.Iterations = k
		if err := checkGradient(&f.grad, f.cluster); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var out bytes.Buffer
	if err := runBenchAttack(context.Background(), flags(3), &out, progress.Nop); err != nil {
		t.Fatal(err)
	}
	var rep benchAttackReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		var b bytes.Buffer
		if r.Route != "" {
			if err := json.Compact(&b, r.RouteSettings); err != nil {
				t.Fatal(err)
			}
		}
		if want := map[bool]string{true: `{"cluster":"vote","iterations":3}`, false: ""}[r.Route != ""]; b.String() != want {
			t.Errorf("%s (route %q): settings %s, want %s", r.Attack, r.Route, b.String(), want)
		}
	}
	// The gradient through the unrolled route with K = 1 and K = 30.
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	x := test.Head(1).Images
	clf, _, _, err := benchModel(flags(0))
	if err != nil {
		t.Fatal(err)
	}
	var grads [][]float32
	for _, k := range []int{1, 30} {
		s, err := benchSuiteTargets(context.Background(), flags(k), clf, progress.Nop)
		if err != nil {
			t.Fatal(err)
		}
		tg := s.targets[1]
		if tg.route != "unrolled" {
			t.Fatalf("target %q, want unrolled", tg.route)
		}
		_, g, err := tg.m.InputGrad(context.Background(), x, func(z, g *tensor.Tensor) { g.Data[0] = 1 })
		if err != nil {
			t.Fatal(err)
		}
		grads = append(grads, g.Data)
	}
	diff := 0.0
	for i := range grads[0] {
		diff = max(diff, math.Abs(float64(grads[0][i]-grads[1][i])))
	}
	if diff == 0 {
		t.Error("the unrolled gradient does not depend on --unroll-iterations")
	}
	// --warm: each suite attack cold, then warm, on the same images.
	f := flags(0)
	f.routes, f.warm, f.apgdSteps, f.queries = "bpda", true, 3, 6
	out.Reset()
	if err := runBenchAttack(context.Background(), f, &out, progress.Nop); err != nil {
		t.Fatal(err)
	}
	rep = benchAttackReport{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 14 {
		t.Fatalf("%d rows with --warm, want 7 attacks x (cold, warm)", len(rep.Results))
	}
	for i := 0; i < len(rep.Results); i += 2 {
		c, w := rep.Results[i], rep.Results[i+1]
		if c.Attack != w.Attack || c.Warm || !w.Warm || c.WarmStarts != 0 || c.Projections == 0 || w.Projections == 0 || c.ProjectionCPUSeconds <= 0 {
			t.Errorf("rows %d and %d: %+v then %+v, want the same attack cold then warm, with projections", i, i+1, c, w)
		}
		if w.Projections > 2 && w.WarmStarts == 0 {
			t.Errorf("%s: %d projections, none started warm", w.Attack, w.Projections)
		}
	}
	for _, name := range []string{"cg-tol", "cg-max-iter", "unroll-iterations", "cluster-gradient"} {
		b, e := subcommand(t, "bench", "attack").Flags().Lookup(name), subcommand(t, "evaluate").Flags().Lookup(name)
		if b == nil || e == nil || b.Usage != e.Usage || b.DefValue != e.DefValue {
			t.Errorf("--%s: bench attack %v, evaluate %v", name, b, e)
		}
	}
}

// subcommand returns the command of stl at path.
func subcommand(t *testing.T, path ...string) *cobra.Command {
	t.Helper()
	c, rest, err := rootCmd.Find(path)
	if err != nil || len(rest) != 0 {
		t.Fatalf("stl %v: %v (left %v)", path, err, rest)
	}
	return c
}
