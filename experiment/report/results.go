// Package report renders the results of an experiment run: report.md, a
// self-contained report.html (figures embedded as base64 PNG), results.json
// and results.csv with every number, the image grid of the paper's Figures 3
// and 4, accuracy bar charts and the PSNR-versus-accuracy-interval plot of
// the paper's Figure 6 (gonum/plot, PNG and SVG), and plain-text tables for
// the terminal.
//
// The package knows nothing about how results are computed: the pipeline of
// package experiment fills a Results value and calls Write. Tables in the
// paper's Table 1 and Table 5 forms can carry the paper's numbers next to
// ours (AttachPaper).
//
// The verdict (RunVerdict, Verdicts) decides each claim of the paper from
// the results of one or more runs by the 95% intervals of our numbers:
// Wilson intervals for accuracies, Newcombe's hybrid score interval (MOVER)
// for differences of them. It opens every report; `stl verdict` combines
// runs (verdict.md, verdict.json).
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
)

// Results is everything a run reports. It is what results.json holds.
//
// In results.json what changes between two identical runs (when, how long,
// which stages were reused) is kept in one section at the end, "timing"
// (see Timing): everything before it is byte-identical for identical runs.
type Results struct {
	Name    string    `json:"name"`
	Created time.Time `json:"-"` // in results.json: timing.created
	// Verdict decides the paper's claims from the tables and the lambda
	// sweep (RunVerdict); nil when not computed.
	Verdict *Verdict `json:"verdict,omitempty"`
	// Versions holds the module version, VCS revision, Go version, build
	// tags and the like.
	Versions map[string]string `json:"versions,omitempty"`
	// Config is the full configuration of the run, as JSON.
	Config json.RawMessage `json:"config,omitempty"`
	// Settings is Config flattened to key/value pairs, in display order.
	Settings []Setting `json:"settings,omitempty"`
	Data     Data      `json:"data"`
	// VanillaModel is set when the vanilla classifier was loaded from a
	// model directory instead of trained by the run.
	VanillaModel *VanillaModel `json:"vanilla_model,omitempty"`
	// Protocol is how the attack columns were computed (attack.Protocol)
	// and whether their images were rounded to 8 bits; every table says
	// it. nil in results written before protocols existed.
	Protocol *Protocol `json:"protocol,omitempty"`
	Attacks  []Attack  `json:"attacks,omitempty"`
	Tables   []Table   `json:"tables,omitempty"`
	// Quality holds the points of the Figure 6 plot.
	Quality []Quality `json:"quality,omitempty"`
	// Sweep holds the points of the Figure 5 study: the vanilla
	// classifier's accuracy on T(x0) and T(x_adv) at each lambda.
	Sweep []SweepPoint `json:"lambda_sweep,omitempty"`
	// Missing lists what the run could not compute and why.
	Missing []Missing `json:"missing,omitempty"`
	Stages  []Stage   `json:"-"` // in results.json: timing.stages
	// Seconds is the wall time of the whole run.
	Seconds float64  `json:"-"` // in results.json: timing.seconds
	Notes   []string `json:"notes,omitempty"`
}

// Timing is the section of results.json that differs between identical
// runs: when the run was made, how long it and each stage and attack took,
// and which stages were reused from an earlier run.
type Timing struct {
	Created time.Time `json:"created"`
	Seconds float64   `json:"seconds"`
	// Attacks holds each attack's wall time by attack name.
	Attacks map[string]float64 `json:"attack_seconds,omitempty"`
	Stages  []Stage            `json:"stages,omitempty"`
}

// Timing returns r's timing section.
func (r *Results) Timing() Timing {
	t := Timing{Created: r.Created, Seconds: r.Seconds, Stages: r.Stages}
	for _, a := range r.Attacks {
		if t.Attacks == nil {
			t.Attacks = map[string]float64{}
		}
		t.Attacks[a.Name] = a.Seconds
	}
	return t
}

// plainResults is Results without its JSON methods.
type plainResults Results

// MarshalJSON writes r with its timing section last.
func (r Results) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		plainResults
		Timing Timing `json:"timing"`
	}{plainResults(r), r.Timing()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Results) UnmarshalJSON(b []byte) error {
	var v struct {
		plainResults
		Timing Timing `json:"timing"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = Results(v.plainResults)
	r.Created, r.Seconds, r.Stages = v.Timing.Created, v.Timing.Seconds, v.Timing.Stages
	for i := range r.Attacks {
		r.Attacks[i].Seconds = v.Timing.Attacks[r.Attacks[i].Name]
	}
	return nil
}

// VanillaModel describes a vanilla classifier loaded from a model
// directory (`stl run --vanilla DIR`): where from, its weights' SHA-256 and
// what the directory records about its training. Zero values mean not
// recorded.
type VanillaModel struct {
	Dir           string  `json:"dir"`
	WeightsFile   string  `json:"weights_file"`
	WeightsSHA256 string  `json:"weights_sha256"`
	Arch          string  `json:"arch"`
	Dataset       string  `json:"dataset,omitempty"`
	TrainImages   int     `json:"train_images,omitempty"`
	Epochs        int     `json:"epochs,omitempty"`
	TestAccuracy  float64 `json:"recorded_test_accuracy,omitempty"`
	Dropout       float64 `json:"dropout,omitempty"`
	Notes         string  `json:"notes,omitempty"`
}

// Setting is one hyperparameter or seed.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Data describes the data set and the test subset the attacks use.
type Data struct {
	Name     string `json:"name"`
	Train    int    `json:"train"`
	Test     int    `json:"test"`
	Classes  int    `json:"classes"`
	Channels int    `json:"channels"`
	Height   int    `json:"height"`
	Width    int    `json:"width"`
	// AttackSubset is the number of test images attacked, a class-balanced
	// seeded subset when smaller than Test, with between PerClassMin and
	// PerClassMax images per class.
	AttackSubset     int    `json:"attack_subset"`
	PerClassMin      int    `json:"attack_subset_per_class_min"`
	PerClassMax      int    `json:"attack_subset_per_class_max"`
	AttackSubsetSeed uint64 `json:"attack_subset_seed"`
	// WhiteBoxSubset is the number of attacked images the white-box table
	// and its sanity checks use: all AttackSubset of them, or a
	// class-balanced subset seeded with AttackSubsetSeed with between
	// WhiteBoxPerClassMin and WhiteBoxPerClassMax images per class. 0 when
	// the run has no white-box evaluation.
	WhiteBoxSubset      int `json:"whitebox_subset,omitempty"`
	WhiteBoxPerClassMin int `json:"whitebox_subset_per_class_min,omitempty"`
	WhiteBoxPerClassMax int `json:"whitebox_subset_per_class_max,omitempty"`
}

// WhiteBoxSubsetted reports whether the white-box evaluation uses fewer
// images than the other adversarial columns.
func (d Data) WhiteBoxSubsetted() bool {
	return d.WhiteBoxSubset > 0 && d.WhiteBoxSubset < d.AttackSubset
}

// Protocol is the attack protocol of a run.
type Protocol struct {
	// Name is the protocol's name: "text", "release".
	Name string `json:"name"`
	// Round8 reports whether every adversarial image was rounded to 8
	// bits before any defense or classifier saw it.
	Round8 bool `json:"round8"`
	// Doc describes the protocol in one sentence.
	Doc string `json:"doc"`
}

// Line is the sentence that states the protocol above each table.
func (p *Protocol) Line() string {
	if p == nil {
		return ""
	}
	r := "adversarial images kept in float32"
	if p.Round8 {
		r = "adversarial images rounded to 8 bits before any defense or classifier saw them"
	}
	return fmt.Sprintf("Attack protocol: %s, %s; %s.", p.Name, p.Doc, r)
}

// Attack describes one adversarial test set.
type Attack struct {
	Name string `json:"name"`
	// Budget is the attack's budget as configured, e.g. "L2 0.04".
	Budget string `json:"budget"`
	// MeanL2 is the measured mean normalized L2 dissimilarity
	// ||x_adv - x0|| / ||x0|| (paper, section 5.1).
	MeanL2 float64 `json:"mean_l2"`
	// Effective is what the adversarial images (as the defenses saw them,
	// after any 8-bit rounding) differ from the clean ones by, measured
	// over every attacked image. nil in results written before it existed.
	Effective *Effective `json:"effective,omitempty"`
	// N is the number of images attacked.
	N       int     `json:"n"`
	Seconds float64 `json:"-"` // in results.json: timing.attack_seconds
}

// Effective holds the per-image distances of an adversarial set from the
// clean images: the L-infinity distance max_j |x_adv,j - x0,j| (pixels in
// [0,1]) and the normalized L2 dissimilarity ||x_adv - x0||_2 / ||x0||_2,
// their means and maxima over the images.
type Effective struct {
	LInfMean float64 `json:"linf_mean"`
	LInfMax  float64 `json:"linf_max"`
	L2Mean   float64 `json:"l2_mean"`
	L2Max    float64 `json:"l2_max"`
	// L2Z holds the mean and max of the normalized L2 dissimilarity
	// measured on the classifier's normalized tensors (the guo
	// protocol's measure, attack.DissimilarityZ); nil under the other
	// protocols.
	L2Z *[2]float64 `json:"l2z,omitempty"`
}

// Table is one accuracy table: rows are defenses, columns the clean set
// and the attacks.
type Table struct {
	ID      string   `json:"id"`    // e.g. "table1"
	Title   string   `json:"title"` // e.g. "Table 1 form: ..."
	Caption string   `json:"caption,omitempty"`
	Columns []string `json:"columns"`
	Rows    []Row    `json:"rows"`
	// PaperRef names the paper table whose numbers Row.Paper holds, empty
	// when the table has no analogue in the paper.
	PaperRef string `json:"paper_ref,omitempty"`
}

// Row is one defense in a table.
type Row struct {
	Defense string `json:"defense"`
	Cells   []Cell `json:"cells"`
	// Paper holds the paper's number for each column, nil where the paper
	// has none.
	Paper []*float64 `json:"paper,omitempty"`
}

// Cell is one accuracy, or the reason it is missing.
type Cell struct {
	Acc     *metrics.Accuracy `json:"accuracy,omitempty"`
	Missing string            `json:"missing,omitempty"`
}

// Quality is one defense under one attack for the Figure 6 plot: the PSNR
// of T(x_adv) against x0, and the vanilla classifier's accuracy on T(x0)
// and T(x_adv).
type Quality struct {
	Defense string           `json:"defense"`
	Attack  string           `json:"attack"`
	PSNR    float64          `json:"psnr_db"`
	Clean   metrics.Accuracy `json:"acc_clean"`
	Adv     metrics.Accuracy `json:"acc_adv"`
}

// SweepPoint is one lambda of the Figure 5 study: a defense projecting
// with sparsity weight Lambda, the vanilla classifier's accuracy on the
// projected clean images T(x0) and adversarial images T(x_adv), and the
// PSNR of T(x_adv) against x0.
type SweepPoint struct {
	Defense string           `json:"defense"`
	Attack  string           `json:"attack"`
	Lambda  float64          `json:"lambda"`
	Clean   metrics.Accuracy `json:"acc_clean"`
	Adv     metrics.Accuracy `json:"acc_adv"`
	PSNR    float64          `json:"psnr_db"`
}

// Missing is something the run could not compute.
type Missing struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// Stage is the timing of one pipeline stage.
type Stage struct {
	Name    string  `json:"name"`
	Key     string  `json:"key"`
	Seconds float64 `json:"seconds"`
	Cached  bool    `json:"cached"`
}

// Validate checks that the results can be written: every table row has a
// cell per column, every accuracy is a finite proportion, every Quality
// point is finite.
func (r *Results) Validate() error {
	for _, t := range r.Tables {
		for _, row := range t.Rows {
			if len(row.Cells) != len(t.Columns) {
				return fmt.Errorf("report: table %s row %q: %d cells for %d columns", t.ID, row.Defense, len(row.Cells), len(t.Columns))
			}
			if row.Paper != nil && len(row.Paper) != len(t.Columns) {
				return fmt.Errorf("report: table %s row %q: %d paper values for %d columns", t.ID, row.Defense, len(row.Paper), len(t.Columns))
			}
			for j, c := range row.Cells {
				if c.Acc == nil {
					if c.Missing == "" {
						return fmt.Errorf("report: table %s row %q column %s: no accuracy and no reason", t.ID, row.Defense, t.Columns[j])
					}
					continue
				}
				if err := checkAcc(*c.Acc); err != nil {
					return fmt.Errorf("report: table %s row %q column %s: %w", t.ID, row.Defense, t.Columns[j], err)
				}
			}
		}
	}
	for _, q := range r.Quality {
		if math.IsNaN(q.PSNR) || math.IsInf(q.PSNR, 0) {
			return fmt.Errorf("report: quality point %s/%s: PSNR %v", q.Defense, q.Attack, q.PSNR)
		}
		if err := checkAcc(q.Clean); err != nil {
			return fmt.Errorf("report: quality point %s/%s: %w", q.Defense, q.Attack, err)
		}
		if err := checkAcc(q.Adv); err != nil {
			return fmt.Errorf("report: quality point %s/%s: %w", q.Defense, q.Attack, err)
		}
	}
	for _, p := range r.Sweep {
		if math.IsNaN(p.PSNR) || math.IsInf(p.PSNR, 0) || !(p.Lambda > 0) {
			return fmt.Errorf("report: sweep point %s lambda %v: PSNR %v", p.Defense, p.Lambda, p.PSNR)
		}
		if err := checkAcc(p.Clean); err != nil {
			return fmt.Errorf("report: sweep point lambda %v: %w", p.Lambda, err)
		}
		if err := checkAcc(p.Adv); err != nil {
			return fmt.Errorf("report: sweep point lambda %v: %w", p.Lambda, err)
		}
	}
	for _, a := range r.Attacks {
		if math.IsNaN(a.MeanL2) || math.IsInf(a.MeanL2, 0) {
			return fmt.Errorf("report: attack %s: mean L2 %v", a.Name, a.MeanL2)
		}
	}
	return nil
}

func checkAcc(a metrics.Accuracy) error {
	if a.N <= 0 || a.Correct < 0 || a.Correct > a.N || !(a.Lo <= a.Value && a.Value <= a.Hi) {
		return fmt.Errorf("invalid accuracy %+v", a)
	}
	return nil
}

// Standard column names of the paper's Tables 1, 2, 5 and 6: the clean
// images and the names of package attack's paper settings.
const (
	ColClean    = "Clean"
	ColFGSM008  = attack.PaperFGSM008
	ColFGSM004  = attack.PaperFGSM004
	ColBIM      = attack.PaperBIM
	ColDeepFool = attack.PaperDeepFool
	ColCW       = attack.PaperCW
)

// PaperColumns are the columns of the paper's CIFAR-10 tables, in order.
var PaperColumns = []string{ColClean, ColFGSM008, ColFGSM004, ColBIM, ColDeepFool, ColCW}

// Paper tables with CIFAR-10 analogues, by reference name.
const (
	// PaperTable1 is Table 1: CIFAR-10, VGG-16, each defense's classifier
	// retrained and tested on its transformed data.
	PaperTable1 = "Table 1 (CIFAR-10, VGG-16, retrained)"
	// PaperTable5 is Table 5: CIFAR-10, the attacked vanilla VGG-16 on
	// transformed clean and adversarial examples.
	PaperTable5 = "Table 5 (CIFAR-10, VGG-16, vanilla)"
	// PaperTable4 is Table 4: CIFAR-10, VGG-16, BPDA at L-infinity 0.031
	// (columns ColBPDA and ColBPDACW).
	PaperTable4 = "Table 4 (CIFAR-10, VGG-16, BPDA)"
)

// Columns of the white-box table, the paper's Table 4: PGD through BPDA
// (and EOT for randomized defenses) at L-infinity 0.031, ascending the
// cross-entropy (ColBPDA) or the Carlini-Wagner margin loss (ColBPDACW).
// The paper does not state its loss: its one figure per defense is
// attached to both columns.
const (
	ColBPDA   = "PGD (CE)"
	ColBPDACW = "PGD (CW loss)"
	// ColBPDAWorst counts an image as correct only if it is correct under
	// every loss: the per-image worst case, the stricter adaptive figure.
	ColBPDAWorst = "PGD (worst of losses)"
)

// paper4 holds the paper's Table 4 (section 5.3). The paper marks STL's
// numbers as combined with adversarial training: they stand beside the
// run's STL rows and, like for like, its adversarially trained ones.
var paper4 = map[string]float64{"STL": 0.38, "STL (cluster)": 0.42, "MagNet": 0.10, "PixelDefend": 0.09,
	"STL + AT": 0.38, "STL (cluster) + AT": 0.42}

// paper holds the numbers of the paper (Sun et al., CVPR 2019, section 5.2
// Table 1 and section 5.4 Table 5), columns in PaperColumns order.
var paper = map[string]map[string][6]float64{
	PaperTable1: {
		"No Defense":    {0.9298, 0.5816, 0.6523, 0.1803, 0.1760, 0.0936},
		"MagNet":        {0.9206, 0.7393, 0.8552, 0.7707, 0.8770, 0.8594},
		"PixelDefend":   {0.9041, 0.8316, 0.8799, 0.8515, 0.8827, 0.8845},
		"STL":           {0.9002, 0.8515, 0.8732, 0.8754, 0.8838, 0.8880},
		"STL (cluster)": {0.9011, 0.8567, 0.8715, 0.8803, 0.8890, 0.8904},
	},
	PaperTable5: {
		"No Defense":    {0.9298, 0.5816, 0.6523, 0.1803, 0.1760, 0.0936},
		"MagNet":        {0.9035, 0.6145, 0.6521, 0.4312, 0.6535, 0.4845},
		"PixelDefend":   {0.8526, 0.6810, 0.7329, 0.7729, 0.7414, 0.7579},
		"STL":           {0.8285, 0.7099, 0.7487, 0.7462, 0.7854, 0.7765},
		"STL (cluster)": {0.8360, 0.7103, 0.7547, 0.7531, 0.7959, 0.7906},
	},
}

// PaperValue returns the paper's number for a defense and column of the
// referenced paper table. Defense names are matched exactly, except that a
// name starting with "MagNet" matches the paper's MagNet row.
func PaperValue(ref, defense, column string) (float64, bool) {
	if ref == PaperTable4 {
		if len(defense) >= 6 && defense[:6] == "MagNet" {
			defense = "MagNet"
		}
		v, ok := paper4[defense]
		if !ok || (column != ColBPDA && column != ColBPDACW && column != ColBPDAWorst) {
			return 0, false
		}
		return v, true
	}
	t, ok := paper[ref]
	if !ok {
		return 0, false
	}
	row, ok := t[defense]
	if !ok && len(defense) >= 6 && defense[:6] == "MagNet" {
		row, ok = t["MagNet"]
	}
	if !ok {
		return 0, false
	}
	for j, c := range PaperColumns {
		if c == column {
			return row[j], true
		}
	}
	return 0, false
}

// AttachPaper sets t.PaperRef to ref and fills every row's Paper values
// from the paper's table ref where it has the defense and column.
func AttachPaper(t *Table, ref string) {
	t.PaperRef = ref
	for i := range t.Rows {
		row := &t.Rows[i]
		row.Paper = make([]*float64, len(t.Columns))
		any := false
		for j, c := range t.Columns {
			if v, ok := PaperValue(ref, row.Defense, c); ok {
				row.Paper[j] = &v
				any = true
			}
		}
		if !any {
			row.Paper = nil
		}
	}
}
