package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/internal/safefile"
)

// Files written by Write, relative to its directory.
const (
	FileMarkdown = "report.md"
	FileHTML     = "report.html"
	FileJSON     = "results.json"
	FileCSV      = "results.csv"
	DirFigures   = "figures"
)

// QualityAttack is the attack the Figure 6 plot uses, as in the paper.
const QualityAttack = ColFGSM008

// Grids are the image figures of a report; either may be nil.
type Grids struct {
	// Comparison is the grid of the paper's Figures 3 and 4: adversarial
	// images, each defense's output, clean images.
	Comparison *Grid
	// Lambda is the grid of Figure 5(a): the projections of a few examples
	// at each lambda of the sweep.
	Lambda *Grid
}

// Figures renders the figures of a report: the image grids, one accuracy
// bar chart per table, the Figure 6 plot for QualityAttack (or, when it is
// absent, the first attack with quality points) and the Figure 5 plot when
// there is a lambda sweep. Names are relative to the report's directory.
func Figures(r *Results, g Grids) ([]Figure, map[string][]byte, error) {
	var figs []Figure
	files := map[string][]byte{}
	for _, gr := range []struct {
		grid    *Grid
		name    string
		caption string
	}{
		{g.Comparison, "grid.png", "Rows: adversarial images, each defense's output for them, clean images (as the paper's Figures 3 and 4)."},
		{g.Lambda, "lambda_grid.png", "Projections at each lambda of the sweep (as the paper's Figure 5(a)); the last row is the clean image."},
	} {
		if gr.grid == nil || len(gr.grid.Rows) == 0 {
			continue
		}
		var buf bytes.Buffer
		if err := gr.grid.EncodePNG(&buf); err != nil {
			return nil, nil, err
		}
		name := DirFigures + "/" + gr.name
		files[name] = buf.Bytes()
		figs = append(figs, Figure{Name: name, PNG: buf.Bytes(), Caption: gr.caption})
	}
	for _, t := range r.Tables {
		pngData, svgData, err := AccuracyBars(&t)
		if err != nil {
			return nil, nil, err
		}
		base := DirFigures + "/accuracy_" + t.ID
		files[base+".png"], files[base+".svg"] = pngData, svgData
		figs = append(figs, Figure{Name: base + ".png", SVG: base + ".svg", PNG: pngData,
			Caption: t.Title + ": accuracy per attack and defense, Wilson 95% intervals in the tables."})
	}
	if len(r.Quality) > 0 {
		attack := r.Quality[0].Attack
		for _, q := range r.Quality {
			if q.Attack == QualityAttack {
				attack = QualityAttack
			}
		}
		pngData, svgData, err := QualityPlot(r.Quality, attack)
		if err != nil {
			return nil, nil, err
		}
		base := DirFigures + "/psnr_interval"
		files[base+".png"], files[base+".svg"] = pngData, svgData
		figs = append(figs, Figure{Name: base + ".png", SVG: base + ".svg", PNG: pngData,
			Caption: "Figure 6 form (" + attack + "): PSNR of T(x_adv) against x0 versus the interval [min(a0, a_adv), max(a0, a_adv)] of the vanilla classifier's accuracies; top right is best. Segments closer than 0.12 dB are drawn side by side; the table gives exact values."})
	}
	if len(r.Sweep) > 0 {
		pngData, svgData, err := SweepPlot(r.Sweep)
		if err != nil {
			return nil, nil, err
		}
		base := DirFigures + "/lambda_sweep"
		files[base+".png"], files[base+".svg"] = pngData, svgData
		figs = append(figs, Figure{Name: base + ".png", SVG: base + ".svg", PNG: pngData,
			Caption: "Figure 5(b) form: the vanilla classifier's accuracy on T(x0) and T(x_adv) against lambda, with Wilson 95% intervals. A larger lambda gives blurrier projections; the gap between the two accuracies shrinks."})
	}
	return figs, files, nil
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Results) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResults reads a results.json written by Write. A file that is not
// one, or whose tables do not validate, is an error naming path.
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	if r.Name == "" && len(r.Tables) == 0 {
		return nil, fmt.Errorf("report: %s: not the results.json of a run (no name, no tables)", path)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &r, nil
}

// Write validates r and writes report.md, report.html, results.json,
// results.csv and the figures (PNG and SVG) into dir, each file
// atomically.
func Write(dir string, r *Results, g Grids) error {
	if err := r.Validate(); err != nil {
		return err
	}
	figs, files, err := Figures(r, g)
	if err != nil {
		return fmt.Errorf("report: figures: %w", err)
	}
	for name, data := range files {
		if err := safefile.WriteBytes(filepath.Join(dir, filepath.FromSlash(name)), data); err != nil {
			return err
		}
	}
	writers := []struct {
		name string
		fill func(io.Writer) error
	}{
		{FileJSON, func(w io.Writer) error { return WriteJSON(w, r) }},
		{FileCSV, func(w io.Writer) error { return WriteCSV(w, r) }},
		{FileMarkdown, func(w io.Writer) error { return WriteMarkdown(w, r, figs) }},
		{FileHTML, func(w io.Writer) error { return WriteHTML(w, r, figs) }},
	}
	for _, f := range writers {
		if err := safefile.Write(filepath.Join(dir, f.name), f.fill); err != nil {
			return fmt.Errorf("report: %s: %w", f.name, err)
		}
	}
	return nil
}
