package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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

// Figures renders the figures of a report: the image grid when grid is not
// nil, one accuracy bar chart per table, and the Figure 6 plot for
// QualityAttack (or, when it is absent, the first attack with quality
// points). Names are relative to the report's directory.
func Figures(r *Results, grid *Grid) ([]Figure, map[string][]byte, error) {
	var figs []Figure
	files := map[string][]byte{}
	if grid != nil && len(grid.Rows) > 0 {
		var buf bytes.Buffer
		if err := grid.EncodePNG(&buf); err != nil {
			return nil, nil, err
		}
		name := DirFigures + "/grid.png"
		files[name] = buf.Bytes()
		figs = append(figs, Figure{Name: name, PNG: buf.Bytes(),
			Caption: "Rows: adversarial images, each defense's output for them, clean images (as the paper's Figures 3 and 4)."})
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
	return figs, files, nil
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Results) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Write validates r and writes report.md, report.html, results.json,
// results.csv and the figures (PNG and SVG) into dir, each file
// atomically. grid may be nil.
func Write(dir string, r *Results, grid *Grid) error {
	if err := r.Validate(); err != nil {
		return err
	}
	figs, files, err := Figures(r, grid)
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
