package report

import (
	"encoding/csv"
	"io"
	"strconv"
)

// CSVHeader is the header of results.csv. The file is in long form, one
// number per line: section is "setting", "version", "data",
// "vanilla_model" (when the vanilla classifier was loaded, one line per
// field of VanillaModel under its JSON name), "accuracy", "attack",
// "quality", "stage" or "missing".
var CSVHeader = []string{"section", "table", "row", "column", "value", "lo", "hi", "correct", "n", "paper", "note"}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// WriteCSV writes every number of r to w in the long form of CSVHeader.
func WriteCSV(w io.Writer, r *Results) error {
	cw := csv.NewWriter(w)
	put := func(rec ...string) {
		for len(rec) < len(CSVHeader) {
			rec = append(rec, "")
		}
		cw.Write(rec)
	}
	put(CSVHeader...)
	for _, s := range r.Settings {
		put("setting", "", s.Key, "", s.Value)
	}
	for _, k := range sortedKeys(r.Versions) {
		put("version", "", k, "", r.Versions[k])
	}
	d := r.Data
	for _, kv := range []struct {
		k string
		v int
	}{{"train", d.Train}, {"test", d.Test}, {"classes", d.Classes}, {"channels", d.Channels}, {"height", d.Height}, {"width", d.Width},
		{"attack_subset", d.AttackSubset}, {"attack_subset_per_class_min", d.PerClassMin}, {"attack_subset_per_class_max", d.PerClassMax}} {
		put("data", "", kv.k, "", strconv.Itoa(kv.v))
	}
	put("data", "", "attack_subset_seed", "", strconv.FormatUint(d.AttackSubsetSeed, 10))
	if d.WhiteBoxSubset > 0 {
		put("data", "", "whitebox_subset", "", strconv.Itoa(d.WhiteBoxSubset))
		put("data", "", "whitebox_subset_per_class_min", "", strconv.Itoa(d.WhiteBoxPerClassMin))
		put("data", "", "whitebox_subset_per_class_max", "", strconv.Itoa(d.WhiteBoxPerClassMax))
	}
	put("data", "", "name", "", d.Name)
	if v := r.VanillaModel; v != nil {
		for _, kv := range [][2]string{{"dir", v.Dir}, {"weights_file", v.WeightsFile}, {"weights_sha256", v.WeightsSHA256}, {"arch", v.Arch},
			{"dataset", v.Dataset}, {"train_images", strconv.Itoa(v.TrainImages)}, {"epochs", strconv.Itoa(v.Epochs)},
			{"recorded_test_accuracy", ftoa(v.TestAccuracy)}, {"dropout", ftoa(v.Dropout)}, {"notes", v.Notes}} {
			put("vanilla_model", "", kv[0], "", kv[1])
		}
	}
	for _, t := range r.Tables {
		for _, row := range t.Rows {
			for j, c := range row.Cells {
				paper := ""
				if row.Paper != nil && row.Paper[j] != nil {
					paper = ftoa(*row.Paper[j])
				}
				if c.Acc == nil {
					put("accuracy", t.ID, row.Defense, t.Columns[j], "", "", "", "", "", paper, c.Missing)
					continue
				}
				a := c.Acc
				put("accuracy", t.ID, row.Defense, t.Columns[j], ftoa(a.Value), ftoa(a.Lo), ftoa(a.Hi), strconv.Itoa(a.Correct), strconv.Itoa(a.N), paper)
			}
		}
	}
	for _, a := range r.Attacks {
		put("attack", "", a.Name, "mean_l2", ftoa(a.MeanL2), "", "", "", strconv.Itoa(a.N), "", a.Budget)
		if e := a.Effective; e != nil {
			for _, m := range []struct {
				name string
				v    float64
			}{{"linf_mean", e.LInfMean}, {"linf_max", e.LInfMax}, {"l2_mean", e.L2Mean}, {"l2_max", e.L2Max}} {
				put("attack", "", a.Name, m.name, ftoa(m.v), "", "", "", strconv.Itoa(a.N))
			}
			if e.L2Z != nil {
				put("attack", "", a.Name, "l2z_mean", ftoa(e.L2Z[0]), "", "", "", strconv.Itoa(a.N))
				put("attack", "", a.Name, "l2z_max", ftoa(e.L2Z[1]), "", "", "", strconv.Itoa(a.N))
			}
		}
	}
	for _, q := range r.Quality {
		put("quality", q.Attack, q.Defense, "psnr_db", ftoa(q.PSNR))
		put("quality", q.Attack, q.Defense, "acc_clean", ftoa(q.Clean.Value), ftoa(q.Clean.Lo), ftoa(q.Clean.Hi), strconv.Itoa(q.Clean.Correct), strconv.Itoa(q.Clean.N))
		put("quality", q.Attack, q.Defense, "acc_adv", ftoa(q.Adv.Value), ftoa(q.Adv.Lo), ftoa(q.Adv.Hi), strconv.Itoa(q.Adv.Correct), strconv.Itoa(q.Adv.N))
	}
	for _, m := range r.Missing {
		put("missing", "", m.What, "", "", "", "", "", "", "", m.Why)
	}
	// The timing rows come last: everything above them is identical for
	// identical runs.
	for _, a := range r.Attacks {
		put("timing", "attack", a.Name, "seconds", ftoa(a.Seconds))
	}
	for _, s := range r.Stages {
		put("timing", "stage", s.Name, "seconds", ftoa(s.Seconds), "", "", "", "", "", "key="+s.Key+" cached="+strconv.FormatBool(s.Cached))
	}
	put("timing", "", "total", "seconds", ftoa(r.Seconds))
	cw.Flush()
	return cw.Error()
}
