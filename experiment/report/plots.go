package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"github.com/stl-defense/stl/experiment/metrics"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// render writes p as PNG and SVG of the given size.
func render(p *plot.Plot, w, h vg.Length) (pngData, svgData []byte, err error) {
	for _, f := range []struct {
		format string
		dst    *[]byte
	}{{"png", &pngData}, {"svg", &svgData}} {
		wt, err := p.WriterTo(w, h, f.format)
		if err != nil {
			return nil, nil, err
		}
		var buf bytes.Buffer
		if _, err := wt.WriteTo(&buf); err != nil {
			return nil, nil, err
		}
		*f.dst = buf.Bytes()
	}
	return pngData, svgData, nil
}

// AccuracyBars plots a table as grouped bars: one group per column, one
// bar per defense, with the Wilson 95% interval as an error bar. Missing
// cells are left out. It returns PNG and SVG encodings.
func AccuracyBars(t *Table) (pngData, svgData []byte, err error) {
	if len(t.Rows) == 0 || len(t.Columns) == 0 {
		return nil, nil, fmt.Errorf("report: table %s is empty", t.ID)
	}
	p := plot.New()
	p.Title.Text = t.Title
	p.Y.Label.Text = "accuracy"
	nr := len(t.Rows)
	// Head room above 1 for the legend.
	p.Y.Min, p.Y.Max = 0, 1+0.07*float64(nr)
	p.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25}, {Value: 0.5, Label: "0.5"}, {Value: 0.75}, {Value: 1, Label: "1"}})
	bw := vg.Points(math.Max(4, math.Min(14, 90/float64(nr))))
	for i, row := range t.Rows {
		vals := make(plotter.Values, len(t.Columns))
		errs := make(plotter.YErrors, len(t.Columns))
		xys := make(plotter.XYs, len(t.Columns))
		for j, c := range row.Cells {
			xys[j].X = float64(j)
			if c.Acc != nil {
				vals[j] = c.Acc.Value
				xys[j].Y = c.Acc.Value
				errs[j].Low, errs[j].High = c.Acc.Value-c.Acc.Lo, c.Acc.Hi-c.Acc.Value
			}
		}
		bars, err := plotter.NewBarChart(vals, bw)
		if err != nil {
			return nil, nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = seriesColor(i)
		bars.Offset = (vg.Length(i) - vg.Length(nr-1)/2) * bw
		p.Add(bars)
		p.Legend.Add(row.Defense, bars)
	}
	p.Legend.Top = true
	p.Legend.Left = false
	p.NominalX(t.Columns...)
	p.Add(plotter.NewGrid())
	return render(p, 8*vg.Inch, 4.5*vg.Inch)
}

// QualityPlot draws the paper's Figure 6 for one attack: for every defense
// a vertical segment at x = PSNR of T(x_adv) against x0 spanning the
// characteristic interval [min(a0, a_adv), max(a0, a_adv)] of the vanilla
// classifier's accuracies on T(x0) and T(x_adv). Top right is best: high
// PSNR, high and short interval. It returns PNG and SVG encodings.
func QualityPlot(points []Quality, attack string) (pngData, svgData []byte, err error) {
	p := plot.New()
	p.Title.Text = "PSNR vs. accuracy interval (" + attack + ")"
	p.X.Label.Text = "PSNR of T(x_adv) against x0 (dB)"
	p.Y.Label.Text = "accuracy of the vanilla classifier"
	p.Add(plotter.NewGrid())
	n := 0
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	var drawn []float64
	for _, q := range points {
		if q.Attack != attack {
			continue
		}
		lo, hi := math.Min(q.Clean.Value, q.Adv.Value), math.Max(q.Clean.Value, q.Adv.Value)
		x := spread(q.PSNR, drawn)
		drawn = append(drawn, x)
		xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
		ymin, ymax = math.Min(ymin, lo), math.Max(ymax, hi)
		seg := plotter.XYs{{X: x, Y: lo}, {X: x, Y: hi}}
		l, s, err := plotter.NewLinePoints(seg)
		if err != nil {
			return nil, nil, err
		}
		// Fourteen colours, then dashed lines; a different glyph for each.
		col := seriesColor(n)
		l.Color = col
		l.Width = vg.Points(3)
		l.Dashes = plotutil.Dashes(n / 14)
		s.Color = col
		s.Shape = plotutil.Shape(n)
		s.Radius = vg.Points(3.5)
		p.Add(l, s)
		p.Legend.Add(q.Defense, l, s)
		n++
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("report: no quality points for attack %q", attack)
	}
	// Margins around the points, and head room for the legend at top left.
	p.X.Min, p.X.Max = xmin-1, xmax+1
	p.Y.Min, p.Y.Max = math.Max(0, ymin-0.05), ymax+0.05+0.05*float64(n)
	p.Legend.Top = true
	p.Legend.Left = true
	return render(p, 6*vg.Inch, 4.5*vg.Inch)
}

// spreadGap is the smallest horizontal distance, in dB, between two
// segments of the Figure 6 plot; closer points are moved apart by it so
// that one does not hide the other (the tables keep the exact values).
const spreadGap = 0.12

// spread returns x, moved right by multiples of spreadGap until it is at
// least spreadGap away from every x already drawn.
func spread(x float64, drawn []float64) float64 {
	for moved := true; moved; {
		moved = false
		for _, d := range drawn {
			if math.Abs(x-d) < spreadGap {
				x = d + spreadGap
				moved = true
			}
		}
	}
	return x
}

// seriesColor returns gonum's seven soft colours, then its seven dark ones.
func seriesColor(i int) color.Color {
	if i < len(plotutil.SoftColors) {
		return plotutil.SoftColors[i]
	}
	return plotutil.DarkColors[(i-len(plotutil.SoftColors))%len(plotutil.DarkColors)]
}

// SweepPlot draws the paper's Figure 5(b): the vanilla classifier's
// accuracy on T(x0) and on T(x_adv) against the sparsity weight lambda,
// with Wilson 95% intervals as error bars. It returns PNG and SVG
// encodings.
func SweepPlot(points []SweepPoint) (pngData, svgData []byte, err error) {
	if len(points) == 0 {
		return nil, nil, fmt.Errorf("report: no lambda sweep points")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Accuracy against lambda (%s, %s)", points[0].Defense, points[0].Attack)
	p.X.Label.Text = "lambda"
	p.Y.Label.Text = "accuracy of the vanilla classifier"
	p.Add(plotter.NewGrid())
	for i, series := range []struct {
		name string
		acc  func(SweepPoint) metrics.Accuracy
	}{
		{"Acc(T(x0))", func(q SweepPoint) metrics.Accuracy { return q.Clean }},
		{"Acc(T(x_adv))", func(q SweepPoint) metrics.Accuracy { return q.Adv }},
	} {
		pts := make(errPoints, len(points))
		for j, q := range points {
			a := series.acc(q)
			pts[j] = errPoint{x: q.Lambda, y: a.Value, lo: a.Value - a.Lo, hi: a.Hi - a.Value}
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, nil, err
		}
		l.Color, s.Color, s.Shape = seriesColor(i), seriesColor(i), plotutil.Shape(i)
		l.Width = vg.Points(2)
		e, err := plotter.NewYErrorBars(pts)
		if err != nil {
			return nil, nil, err
		}
		e.Color = seriesColor(i)
		p.Add(l, s, e)
		p.Legend.Add(series.name, l, s)
	}
	p.Y.Min, p.Y.Max = 0, 1.1
	p.Legend.Top = true
	return render(p, 6*vg.Inch, 4*vg.Inch)
}

// errPoint is a point with an asymmetric vertical error.
type errPoint struct{ x, y, lo, hi float64 }

type errPoints []errPoint

func (e errPoints) Len() int                        { return len(e) }
func (e errPoints) XY(i int) (float64, float64)     { return e[i].x, e[i].y }
func (e errPoints) YError(i int) (float64, float64) { return e[i].lo, e[i].hi }
