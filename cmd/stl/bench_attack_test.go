package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/progress"
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
