package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/tensor"
)

func acc(c, n int) *metrics.Accuracy { a := metrics.NewAccuracy(c, n); return &a }

// synthetic returns results shaped like a real run, with made-up counts.
func synthetic() *Results {
	r := &Results{
		Name:     "synthetic",
		Created:  time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Versions: map[string]string{"go": "go1.26", "module": "(devel)"},
		Config:   json.RawMessage(`{"arch":"vgg-small","lambda":0.2}`),
		Settings: []Setting{{"arch", "vgg-small"}, {"lambda", "0.2"}, {"seed", "1"}},
		Data: Data{Name: "sample:cifar10", Train: 2000, Test: 500, Classes: 10, Channels: 3, Height: 32, Width: 32,
			AttackSubset: 200, PerClassMin: 20, PerClassMax: 20, AttackSubsetSeed: 1},
		Protocol: &Protocol{Name: "release", Round8: true, Doc: "as the released images"},
		Attacks: []Attack{
			{Name: "FGSM-0.08", Budget: "L-infinity 8/255", MeanL2: 0.0601, N: 200, Seconds: 1.5,
				Effective: &Effective{LInfMean: 8.0 / 255, LInfMax: 8.0 / 255, L2Mean: 0.0601, L2Max: 0.0712}},
			{Name: "FGSM-0.04", Budget: "normalized L2 0.04 on normalized tensors", MeanL2: 0.02, N: 200, Seconds: 1,
				Effective: &Effective{LInfMean: 2.0 / 255, LInfMax: 3.0 / 255, L2Mean: 0.02, L2Max: 0.03, L2Z: &[2]float64{0.04, 0.04}}},
			{Name: "CW", Budget: "L2 0.04", MeanL2: 0.031, N: 200, Seconds: 30},
		},
		Seconds: 600,
		Notes:   []string{"Trained on 2,000 images for 3 epochs: the numbers show the pipeline works, not the paper's accuracy."},
	}
	cols := PaperColumns
	mk := func(name string, counts ...int) Row {
		row := Row{Defense: name}
		for j := range cols {
			n := 200
			if j == 0 {
				n = 500
			}
			if counts[j] < 0 {
				row.Cells = append(row.Cells, Cell{Missing: "the attack failed: synthetic reason"})
				continue
			}
			row.Cells = append(row.Cells, Cell{Acc: acc(counts[j], n)})
		}
		return row
	}
	t1 := Table{ID: "table1", Title: "Table 1 form: retrained classifiers", Columns: cols, Rows: []Row{
		mk("No Defense", 400, 100, 120, 30, 20, 10),
		mk("STL", 380, 150, 160, 170, 175, -1),
		mk("STL (cluster)", 385, 151, 161, 171, 176, 177),
		mk("JPEG", 370, 120, 130, 140, 150, 150),
	}}
	t5 := t1
	t5.ID, t5.Title = "table5", "Table 5 form: vanilla classifier"
	t5.Rows = append([]Row(nil), t1.Rows...)
	AttachPaper(&t1, PaperTable1)
	AttachPaper(&t5, PaperTable5)
	r.Tables = []Table{t1, t5}
	r.Quality = []Quality{
		{"STL", "FGSM-0.08", 27.5, *acc(380, 500), *acc(150, 200)},
		{"STL (cluster)", "FGSM-0.08", 27.9, *acc(385, 500), *acc(151, 200)},
		{"JPEG", "FGSM-0.08", 25.1, *acc(370, 500), *acc(120, 200)},
	}
	r.Missing = []Missing{{"PixelDefend", "not implemented in this project"}}
	for i, lambda := range []float64{0.05, 0.2, 0.5} {
		r.Sweep = append(r.Sweep, SweepPoint{Defense: "STL (cluster)", Attack: "FGSM-0.08", Lambda: lambda,
			Clean: *acc(180-40*i, 200), Adv: *acc(100+10*i, 200), PSNR: 30 - 3*float64(i)})
	}
	r.Stages = []Stage{{"train-vanilla", strings.Repeat("a", 64), 120, false}, {"defense", strings.Repeat("b", 64), 200, true}}
	return r
}

func syntheticGrid() *Grid {
	mk := func(v float32) *tensor.Tensor {
		t := tensor.New(4, 3, 8, 8)
		for i := range t.Data {
			t.Data[i] = v
		}
		return t
	}
	red := mk(0)
	for k := 0; k < 4; k++ { // red channel 1: pure red images
		for i := 0; i < 64; i++ {
			red.Data[k*192+i] = 1
		}
	}
	return &Grid{Rows: []GridRow{{"adversarial", red}, {"STL", mk(0.5)}, {"clean", mk(1)}}, Scale: 2}
}

func TestPaperValues(t *testing.T) {
	tests := []struct {
		ref, defense, col string
		want              float64
		ok                bool
	}{
		{PaperTable1, "No Defense", ColClean, 0.9298, true},
		{PaperTable1, "STL (cluster)", ColCW, 0.8904, true},
		{PaperTable1, "STL", ColFGSM008, 0.8515, true},
		{PaperTable5, "STL (cluster)", ColDeepFool, 0.7959, true},
		{PaperTable5, "MagNet reformer", ColBIM, 0.4312, true},
		{PaperTable1, "JPEG", ColClean, 0, false},
		{PaperTable4, "STL (cluster)", ColBPDA, 0.42, true},
		{PaperTable4, "MagNet", ColBPDA, 0.10, true},
		{PaperTable4, "STL", ColClean, 0, false},
		{PaperTable4, "JPEG", ColBPDA, 0, false},
		{PaperTable4, "STL", ColBPDACW, 0.38, true},
		{PaperTable4, "MagNet (exact gradient)", ColBPDACW, 0.10, true},
		{PaperTable4, "STL (cluster)", ColBPDAWorst, 0.42, true},
		{PaperTable4, "STL + AT", ColBPDA, 0.38, true},
		{PaperTable4, "STL (cluster) + AT", ColBPDACW, 0.42, true},
		{PaperTable4, "AT alone", ColBPDA, 0, false},
		{PaperTable4, "STL", ColCW, 0, false}, // the CW attack, not the CW loss
		{PaperTable1, "STL", ColBPDACW, 0, false},
		{PaperTable1, "STL", "PGD", 0, false},
		{"Table 9", "STL", ColClean, 0, false},
	}
	for _, tc := range tests {
		got, ok := PaperValue(tc.ref, tc.defense, tc.col)
		if ok != tc.ok || got != tc.want {
			t.Errorf("PaperValue(%q, %q, %q) = %v, %v; want %v, %v", tc.ref, tc.defense, tc.col, got, ok, tc.want, tc.ok)
		}
	}
	r := synthetic()
	rows := r.Tables[0].Rows
	if rows[3].Paper != nil {
		t.Errorf("JPEG has paper values %v in Table 1", rows[3].Paper)
	}
	if p := rows[2].Paper[0]; p == nil || *p != 0.9011 {
		t.Errorf("STL (cluster) clean paper value = %v", p)
	}
}

func TestValidate(t *testing.T) {
	if err := synthetic().Validate(); err != nil {
		t.Fatalf("synthetic results: %v", err)
	}
	tests := []struct {
		name   string
		break_ func(r *Results)
	}{
		{"cells short", func(r *Results) { r.Tables[0].Rows[0].Cells = r.Tables[0].Rows[0].Cells[:2] }},
		{"no reason", func(r *Results) { r.Tables[0].Rows[0].Cells[1] = Cell{} }},
		{"bad accuracy", func(r *Results) { r.Tables[1].Rows[0].Cells[0].Acc = &metrics.Accuracy{Correct: 5, N: 3} }},
		{"NaN PSNR", func(r *Results) { r.Quality[0].PSNR = r.Quality[0].PSNR / 0 * 0 }},
		{"empty accuracy", func(r *Results) { r.Quality[0].Adv = metrics.NewAccuracy(0, 0) }},
		{"sweep lambda 0", func(r *Results) { r.Sweep[0].Lambda = 0 }},
	}
	for _, tc := range tests {
		r := synthetic()
		r.Tables[1].Rows = append([]Row(nil), r.Tables[1].Rows...)
		for i := range r.Tables[1].Rows {
			r.Tables[1].Rows[i].Cells = append([]Cell(nil), r.Tables[1].Rows[i].Cells...)
		}
		tc.break_(r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate accepted broken results", tc.name)
		}
	}
}

// writeTo writes r with grids into a new temporary directory and returns
// it and a reader of its files.
func writeTo(t *testing.T, r *Results, grids Grids) (dir string, read func(name string) string) {
	t.Helper()
	dir = t.TempDir()
	if err := Write(dir, r, grids); err != nil {
		t.Fatal(err)
	}
	return dir, func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

func TestWrite(t *testing.T) {
	r := synthetic()
	dir, read := writeTo(t, r, Grids{Comparison: syntheticGrid(), Lambda: syntheticGrid()})
	// results.json round-trips every accuracy.
	var back Results
	if err := json.Unmarshal([]byte(read(FileJSON)), &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if got, want := back.Tables[0].Rows[2].Cells[5].Acc.Correct, 177; got != want {
		t.Errorf("results.json STL (cluster) CW correct = %d, want %d", got, want)
	}
	if back.Tables[0].Rows[1].Cells[5].Acc != nil || back.Tables[0].Rows[1].Cells[5].Missing == "" {
		t.Errorf("results.json lost the missing cell: %+v", back.Tables[0].Rows[1].Cells[5])
	}
	if back.Data.AttackSubset != 200 || back.Stages[1].Key != strings.Repeat("b", 64) {
		t.Errorf("results.json data/stages = %+v / %+v", back.Data, back.Stages)
	}
	// results.csv: one accuracy line per cell, parseable.
	recs, err := csv.NewReader(strings.NewReader(read(FileCSV))).ReadAll()
	if err != nil {
		t.Fatalf("results.csv: %v", err)
	}
	nacc, found := 0, false
	for _, rec := range recs {
		if rec[0] == "accuracy" {
			nacc++
			if rec[1] == "table1" && rec[2] == "STL (cluster)" && rec[3] == "CW" {
				found = rec[4] == "0.885" && rec[7] == "177" && rec[9] == "0.8904"
			}
		}
	}
	if nacc != 2*4*6 || !found {
		t.Errorf("results.csv: %d accuracy lines (want 48), STL (cluster) CW line right: %v", nacc, found)
	}
	md := read(FileMarkdown)
	for _, want := range []string{"| STL (cluster) |", "*(paper 0.8567)*", "**0.755**", "- STL, CW: missing, the attack failed: synthetic reason",
		"class-balanced subset of **200**", "PixelDefend", "figures/grid.png", "figures/psnr_interval.svg", "| lambda | 0.2 |", "| 0.5 | 0.500 [0.431, 0.569] | 0.600 [0.531, 0.665] | 24.00 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	html := read(FileHTML)
	if n := strings.Count(html, `src="data:image/png;base64,`); n != 6 {
		t.Errorf("report.html embeds %d PNGs, want 6 (two grids, two bar charts, Figures 5 and 6)", n)
	}
	if !strings.Contains(html, `<li class="missing">STL, CW: missing, the attack failed: synthetic reason</li>`) {
		t.Error("report.html does not say why STL's CW cell is missing")
	}
	if strings.Contains(html, `src="figures/`) || strings.Contains(html, "http://") {
		t.Error("report.html refers to external files")
	}
	for _, name := range []string{"grid.png", "lambda_grid.png", "accuracy_table1.png", "accuracy_table5.svg", "psnr_interval.png", "psnr_interval.svg", "lambda_sweep.png", "lambda_sweep.svg"} {
		b := read(filepath.Join(DirFigures, name))
		if strings.HasSuffix(name, ".png") {
			if _, err := png.Decode(strings.NewReader(b)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		} else if !strings.Contains(b, "<svg") {
			t.Errorf("%s is not SVG", name)
		}
	}
	// No temporary files left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestWriteRejectsInvalid(t *testing.T) {
	r := synthetic()
	r.Tables[0].Rows[0].Cells = nil
	dir := t.TempDir()
	if err := Write(dir, r, Grids{}); err == nil {
		t.Fatal("Write accepted invalid results")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Write of invalid results left %d files", len(ents))
	}
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, synthetic()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Table 1 form", "STL (cluster)  0.770 [0.731, 0.805]", "paper", "0.9011", "FGSM-0.08", "PixelDefend: not implemented", "class-balanced subset of 200"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	if err := WriteText(failWriter{}, synthetic()); err == nil {
		t.Error("WriteText hid a write error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestGrid(t *testing.T) {
	g := syntheticGrid()
	img, err := g.Image()
	if err != nil {
		t.Fatal(err)
	}
	// Find the first fully red pixel (row "adversarial") and check the
	// clean row below it is white at the same column.
	b := img.Bounds()
	found := false
	for x := b.Min.X; x < b.Max.X && !found; x++ {
		for y := b.Min.Y; y < b.Max.Y/3; y++ {
			if c := img.RGBAAt(x, y); c.R == 255 && c.G == 0 && c.B == 0 {
				found = true
				mid := img.RGBAAt(x, y+16+4) // next row: scale 2 x 8 px + gap 4
				if mid.R != 128 || mid.G != 128 || mid.B != 128 {
					t.Errorf("STL row pixel = %v, want grey 128", mid)
				}
				break
			}
		}
	}
	if !found {
		t.Error("no red pixel in the adversarial row")
	}
	bad := &Grid{Rows: []GridRow{{"a", tensor.New(2, 3, 8, 8)}, {"b", tensor.New(2, 3, 4, 4)}}}
	var se *tensor.ShapeError
	if _, err := bad.Image(); !errors.As(err, &se) {
		t.Errorf("mismatched rows: err = %v, want *tensor.ShapeError", err)
	}
	if _, err := (&Grid{}).Image(); err == nil {
		t.Error("empty grid accepted")
	}
	for _, tc := range []struct {
		x     float64
		drawn []float64
		want  float64
	}{
		{25, nil, 25},
		{25, []float64{27}, 25},
		{25, []float64{25.05}, 25.05 + spreadGap},
		{25, []float64{25, 25 + spreadGap}, 25 + 2*spreadGap},
	} {
		if got := spread(tc.x, tc.drawn); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("spread(%v, %v) = %v, want %v", tc.x, tc.drawn, got, tc.want)
		}
	}
	if _, _, err := QualityPlot(synthetic().Quality, "BIM"); err == nil {
		t.Error("QualityPlot with no points for the attack succeeded")
	}
}

func TestMissingNotes(t *testing.T) {
	c := func(why string) Cell {
		if why == "" {
			return Cell{Acc: acc(1, 2)}
		}
		return Cell{Missing: why}
	}
	tb := &Table{Columns: []string{"Clean", "A", "B"}, Rows: []Row{
		{Defense: "ok", Cells: []Cell{c(""), c(""), c("")}},
		{Defense: "all", Cells: []Cell{c("x"), c("x"), c("x")}},
		{Defense: "some", Cells: []Cell{c(""), c("y"), c("y")}},
		{Defense: "mixed", Cells: []Cell{c("p"), c(""), c("q")}},
	}}
	got := strings.Join(missingNotes(tb), "|")
	want := "all: missing, x|some, A, B: missing, y|mixed, Clean: missing, p|mixed, B: missing, q"
	if got != want {
		t.Errorf("missingNotes = %q\nwant %q", got, want)
	}
}

// TestVanillaModelAndWhiteBoxSubset checks that a loaded vanilla
// classifier and a white-box subset reach results.csv and the terminal
// summary, and that neither appears when absent.
func TestVanillaModelAndWhiteBoxSubset(t *testing.T) {
	r := synthetic()
	r.VanillaModel = &VanillaModel{Dir: "/models/v50", WeightsFile: "model.safetensors", WeightsSHA256: strings.Repeat("c", 64), Arch: "vgg-small",
		Dataset: "cifar10", TrainImages: 50000, Epochs: 50, TestAccuracy: 0.8912, Dropout: 0.3}
	r.Data.WhiteBoxSubset, r.Data.WhiteBoxPerClassMin, r.Data.WhiteBoxPerClassMax = 50, 5, 5
	for _, tc := range []struct {
		name string
		r    *Results
		want bool
	}{{"set", r, true}, {"absent", synthetic(), false}} {
		var csvBuf, text bytes.Buffer
		if err := WriteCSV(&csvBuf, tc.r); err != nil {
			t.Fatal(err)
		}
		if err := WriteText(&text, tc.r); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&csvBuf).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, rec := range recs {
			if rec[0] == "vanilla_model" || (rec[0] == "data" && strings.HasPrefix(rec[2], "whitebox")) {
				got[rec[0]+"/"+rec[2]] = rec[4]
			}
		}
		want := map[string]string{"vanilla_model/dir": "/models/v50", "vanilla_model/weights_sha256": strings.Repeat("c", 64), "vanilla_model/arch": "vgg-small",
			"vanilla_model/dataset": "cifar10", "vanilla_model/train_images": "50000", "vanilla_model/epochs": "50",
			"vanilla_model/recorded_test_accuracy": "0.8912", "vanilla_model/dropout": "0.3", "vanilla_model/weights_file": "model.safetensors",
			"data/whitebox_subset": "50", "data/whitebox_subset_per_class_min": "5", "data/whitebox_subset_per_class_max": "5"}
		for k, v := range want {
			if tc.want && got[k] != v {
				t.Errorf("%s: results.csv %s = %q, want %q", tc.name, k, got[k], v)
			}
		}
		if !tc.want && len(got) != 0 {
			t.Errorf("%s: results.csv has %v", tc.name, got)
		}
		out := text.String()
		for _, w := range []string{"Vanilla classifier loaded from /models/v50: vgg-small, 50 epochs on \"cifar10\" (50000 images), dropout 0.3, recorded test accuracy 0.8912; model.safetensors SHA-256 cccc",
			"The white-box table and its sanity checks use a class-balanced subset of 50 of the 200 attacked images (5-5 per class, seed 1)."} {
			if strings.Contains(out, w) != tc.want {
				t.Errorf("%s: terminal summary has %q: %v, want %v:\n%s", tc.name, w, !tc.want, tc.want, out)
			}
		}
	}
	// The subset is stated in report.md and report.html too.
	dir := t.TempDir()
	if err := Write(dir, r, Grids{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{FileMarkdown, FileHTML} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "class-balanced subset of <b>50</b> of the 200") && !strings.Contains(string(b), "class-balanced subset of **50** of the 200") {
			t.Errorf("%s does not state the white-box subset", f)
		}
	}
}

// TestWhiteBoxTwoLosses renders a Table 4 form with a column per loss:
// the paper's one figure per defense next to each, both columns in the
// markdown and the CSV, a missing CW-loss cell with its reason.
func TestWhiteBoxTwoLosses(t *testing.T) {
	r := synthetic()
	t4 := Table{ID: "table4", Title: "Table 4 form", Columns: []string{ColBPDA, ColBPDACW}, Rows: []Row{
		{Defense: "No Defense", Cells: []Cell{{Acc: acc(2, 100)}, {Acc: acc(0, 100)}}},
		{Defense: "STL (cluster)", Cells: []Cell{{Acc: acc(31, 100)}, {Acc: acc(27, 100)}}},
		{Defense: "JPEG (vanilla classifier)", Cells: []Cell{{Acc: acc(5, 100)}, {Missing: "the white-box attack failed: synthetic"}}},
	}}
	AttachPaper(&t4, PaperTable4)
	r.Tables = append(r.Tables, t4)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := t4.Rows[1].Paper; len(p) != 2 || p[0] == nil || p[1] == nil || *p[0] != 0.42 || *p[1] != 0.42 {
		t.Errorf("STL (cluster) paper values %v, want 0.42 in both columns", p)
	}
	if t4.Rows[0].Paper != nil || t4.Rows[2].Paper != nil {
		t.Error("paper values on rows the paper's Table 4 lacks")
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, r, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| Defense | PGD (CE) | PGD (CW loss) |",
		"| STL (cluster) | **0.310** [0.228, 0.406] *(paper 0.4200)* | **0.270** [0.193, 0.364] *(paper 0.4200)* |",
		"- JPEG (vanilla classifier), PGD (CW loss): missing, the white-box attack failed: synthetic"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, rec := range recs {
		if rec[0] == "accuracy" && rec[1] == "table4" {
			got[rec[2]+"/"+rec[3]] = rec
		}
	}
	if len(got) != 6 {
		t.Errorf("%d Table 4 lines in the CSV, want 6", len(got))
	}
	if rec := got["STL (cluster)/PGD (CW loss)"]; rec == nil || rec[4] != "0.27" || rec[7] != "27" || rec[9] != "0.42" {
		t.Errorf("CSV STL (cluster) CW loss = %q", rec)
	}
	if rec := got["JPEG (vanilla classifier)/PGD (CW loss)"]; rec == nil || rec[4] != "" || rec[10] != "the white-box attack failed: synthetic" {
		t.Errorf("CSV JPEG CW loss = %q", rec)
	}
}

// TestTimingSectionLast: two results that differ only in times give
// results.json and results.csv identical up to the timing section, which
// comes last, and results.json reads back to the same Results.
func TestTimingSectionLast(t *testing.T) {
	a, b := synthetic(), synthetic()
	b.Created = a.Created.Add(time.Hour)
	b.Seconds = a.Seconds + 17
	for i := range b.Attacks {
		b.Attacks[i].Seconds += 3
	}
	b.Stages = append(b.Stages, Stage{Name: "extra", Seconds: 1, Cached: true})
	var ja, jb, ca, cb bytes.Buffer
	for _, w := range []struct {
		r    *Results
		j, c *bytes.Buffer
	}{{a, &ja, &ca}, {b, &jb, &cb}} {
		if err := WriteJSON(w.j, w.r); err != nil {
			t.Fatal(err)
		}
		if err := WriteCSV(w.c, w.r); err != nil {
			t.Fatal(err)
		}
	}
	head := func(s, marker string) string {
		i := strings.Index(s, marker)
		if i < 0 {
			t.Fatalf("no %q in:\n%s", marker, s)
		}
		return s[:i]
	}
	if ha, hb := head(ja.String(), `"timing"`), head(jb.String(), `"timing"`); ha != hb {
		t.Errorf("results.json differs before its timing section")
	}
	if ha, hb := head(ca.String(), "\ntiming,"), head(cb.String(), "\ntiming,"); ha != hb {
		t.Errorf("results.csv differs before its timing rows")
	}
	if strings.Contains(strings.SplitN(ca.String(), "\ntiming,", 2)[1], "\naccuracy,") {
		t.Error("results.csv has rows after its timing rows")
	}
	var back Results
	if err := json.Unmarshal(ja.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !back.Created.Equal(a.Created) || back.Seconds != a.Seconds || len(back.Stages) != len(a.Stages) || len(a.Attacks) == 0 || back.Attacks[0].Seconds != a.Attacks[0].Seconds {
		t.Errorf("round trip lost the timing: %+v", back.Timing())
	}
}

// TestProtocolAndEffectiveNorms checks that every table of report.md and
// report.html states the attack protocol above it, that the attack table
// gives the measured L-infinity (with 255ths) and normalized L2 of each
// column, and that results.json and results.csv record both.
func TestProtocolAndEffectiveNorms(t *testing.T) {
	r := synthetic()
	r.Sweep = nil // tables besides: the accuracy tables, the attacks, the quality
	_, read := writeTo(t, r, Grids{})
	line := r.Protocol.Line()
	if !strings.Contains(line, "release") || !strings.Contains(line, "rounded to 8 bits") {
		t.Fatalf("protocol line %q", line)
	}
	md := read(FileMarkdown)
	tables := len(r.Tables) + 1 + 1 // accuracy tables, attacks, quality
	if n := strings.Count(md, line); n != tables {
		t.Errorf("report.md states the protocol %d times, want %d (once above each table)", n, tables)
	}
	// Each "## " section holding a table with adversarial columns opens
	// with the protocol line.
	for _, sec := range strings.Split(md, "\n## ")[1:] {
		title, body, _ := strings.Cut(sec, "\n\n")
		if strings.HasPrefix(title, "Table") || strings.HasPrefix(title, "Attacks") || strings.HasPrefix(title, "Quality") {
			if !strings.HasPrefix(body, line) {
				t.Errorf("section %q does not open with the protocol line", title)
			}
		}
	}
	for _, want := range []string{"| FGSM-0.08 | L-infinity 8/255 | 0.0314 (8.00/255) | 0.0314 (8.00/255) | 0.0601 | 0.0712 | 200 | 1.5 |",
		"| CW | L2 0.04 | — | — | 0.0310 | — | 200 | 30.0 |",
		"| 0.0200 (normalized tensors 0.0400) | 0.0300 (normalized tensors 0.0400) |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	html := read(FileHTML)
	if n := strings.Count(html, `<p class="protocol">`+line+`</p>`); n != tables {
		t.Errorf("report.html states the protocol %d times, want %d", n, tables)
	}
	var back Results
	if err := json.Unmarshal([]byte(read(FileJSON)), &back); err != nil {
		t.Fatal(err)
	}
	if back.Protocol == nil || *back.Protocol != *r.Protocol {
		t.Errorf("results.json protocol %+v, want %+v", back.Protocol, r.Protocol)
	}
	if e := back.Attacks[0].Effective; e == nil || *e != *r.Attacks[0].Effective {
		t.Errorf("results.json effective norms %+v, want %+v", e, r.Attacks[0].Effective)
	}
	if csv := read(FileCSV); !strings.Contains(csv, "attack,,FGSM-0.08,linf_max,0.03137") || !strings.Contains(csv, "attack,,FGSM-0.04,l2z_mean,0.04") {
		t.Error("results.csv lacks the measured L-infinity or the normalized-tensor L2")
	}
	// Results without a protocol (written before it existed) show none.
	r.Protocol = nil
	if r.Protocol.Line() != "" {
		t.Error("a nil protocol has a line")
	}
}
