package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// predictLines runs stl predict --json and decodes its lines: the images'
// and the summary.
func predictLines(t *testing.T, o predictOptions) ([]map[string]any, map[string]any) {
	t.Helper()
	o.json = true
	var stdout, stderr bytes.Buffer
	if err := runPredict(context.Background(), &stdout, &stderr, o); err != nil {
		t.Fatalf("predict: %v\n%s", err, stderr.String())
	}
	var rows []map[string]any
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rows = append(rows, v)
	}
	if len(rows) == 0 {
		t.Fatal("no output")
	}
	return rows[:len(rows)-1], rows[len(rows)-1]
}

func TestPredictCommand(t *testing.T) {
	dir := t.TempDir()
	model := savedClassifier(t)
	def := tinyDefense(t, dir)
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare.npy")
	if err := npy.WriteFile(bare, test.Head(3).Images); err != nil {
		t.Fatal(err)
	}

	// A data set's labelled test images, no defense.
	rows, sum := predictLines(t, predictOptions{model: model, data: dataset.DefaultSpec, split: "test", limit: 5, batch: 2})
	if len(rows) != 5 || sum["images"] != 5.0 {
		t.Fatalf("%d rows, summary %v", len(rows), sum)
	}
	correct := 0.0
	for i, r := range rows {
		logits, _ := r["logits"].([]any)
		if r["index"] != float64(i) || len(logits) != 10 || r["label"] != float64(test.Labels[i]) {
			t.Errorf("row %d: %v", i, r)
		}
		best, arg := math.Inf(-1), -1
		for k, v := range logits {
			if v.(float64) > best {
				best, arg = v.(float64), k
			}
		}
		if r["predicted"] != float64(arg) {
			t.Errorf("row %d: predicted %v, the largest logit is %d", i, r["predicted"], arg)
		}
		if r["correct"] == true {
			correct++
		}
	}
	if sum["correct"] != correct || sum["accuracy"] != correct/5 {
		t.Errorf("summary %v, %g correct", sum, correct)
	}

	// A bare .npy (no labels) through the saved defense.
	rows, sum = predictLines(t, predictOptions{model: model, in: bare, split: "test", defense: def, batch: 2})
	if len(rows) != 3 || sum["accuracy"] != nil || sum["defense"] != "STL (cluster)" {
		t.Errorf("%d rows, summary %v", len(rows), sum)
	}
	if _, ok := rows[0]["label"]; ok {
		t.Errorf("row without a label: %v", rows[0])
	}

	// The text form.
	var stdout, stderr bytes.Buffer
	o := predictOptions{model: model, split: "test", limit: 4, batch: 4, defense: "jpeg"}
	if err := runPredict(context.Background(), &stdout, &stderr, o); err != nil {
		t.Fatal(err)
	}
	if out := stdout.String(); strings.Count(out, "\n") != 5 || !strings.Contains(out, "4 images classified by "+model+" through JPEG") ||
		!strings.Contains(out, "accuracy") || !strings.Contains(out, "label ") {
		t.Errorf("text output:\n%s", out)
	}
	if !strings.Contains(stderr.String(), "using the embedded sample") {
		t.Errorf("stderr does not name the default data: %q", stderr.String())
	}
}

func TestPredictBadInput(t *testing.T) {
	dir := t.TempDir()
	model := savedClassifier(t)
	small := filepath.Join(dir, "small.npy")
	if err := npy.WriteFile(small, tensor.New(2, 3, 16, 16)); err != nil {
		t.Fatal(err)
	}
	nan := tensor.New(2, 3, 32, 32)
	nan.Data[3*32*32+5] = float32(math.NaN())
	nanFile := filepath.Join(dir, "nan.npy")
	if err := npy.WriteFile(nanFile, nan); err != nil {
		t.Fatal(err)
	}
	big := tensor.New(1, 3, 32, 32)
	big.Data[7] = 255
	bigFile := filepath.Join(dir, "bytes.npy")
	if err := npy.WriteFile(bigFile, big); err != nil {
		t.Fatal(err)
	}
	ok := predictOptions{model: model, split: "test", batch: 8}
	with := func(f func(*predictOptions)) predictOptions { o := ok; f(&o); return o }
	for _, tc := range []struct {
		name  string
		o     predictOptions
		want  string
		usage bool
	}{
		{"no model", with(func(o *predictOptions) { o.model = "" }), "--model is required", true},
		{"data and in", with(func(o *predictOptions) { o.data, o.in = "sample:cifar10", small }), "exclude each other", true},
		{"split", with(func(o *predictOptions) { o.split = "val" }), `--split "val"`, true},
		{"split with in", with(func(o *predictOptions) { o.in, o.split = small, "train" }), "--split applies to --data only", true},
		{"limit", with(func(o *predictOptions) { o.limit = -1 }), "--limit -1", true},
		{"batch", with(func(o *predictOptions) { o.batch = 0 }), "--batch 0", true},
		{"universal alone", with(func(o *predictOptions) { o.universal = true }), "--universal needs --defense", true},
		{"absent model", with(func(o *predictOptions) { o.model = filepath.Join(dir, "absent") }), "no such file", false},
		{"unknown defense", with(func(o *predictOptions) { o.defense = "no-such" }), "neither a defense directory nor a baseline", false},
		{"wrong size", with(func(o *predictOptions) { o.in = small }), "takes 3x32x32 images, the input holds 3x16x16", false},
		{"NaN", with(func(o *predictOptions) { o.in = nanFile }), "image 1", false},
		{"8-bit values", with(func(o *predictOptions) { o.in = bigFile }), "outside [0, 1]", false},
		{"unknown input form", with(func(o *predictOptions) { o.in = filepath.Join(dir, "x.txt") }), "no such file", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			checkCommandError(t, runPredict(context.Background(), &stdout, &stderr, tc.o), tc.want, tc.usage)
		})
	}
}

// checkCommandError checks that err contains want and is a usage error
// exactly when usage is set.
func checkCommandError(t *testing.T, err error, want string, usage bool) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	var ue usageError
	if errors.As(err, &ue) != usage {
		t.Errorf("usage error %v, want %v", errors.As(err, &ue), usage)
	}
}
