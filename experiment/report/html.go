package report

import (
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"

	"github.com/stl-defense/stl/experiment/metrics"
)

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"cell": func(c Cell) template.HTML {
		if c.Acc == nil {
			return template.HTML(`<span class="missing" title="` + template.HTMLEscapeString(c.Missing) + `">—</span>`)
		}
		return template.HTML(fmt.Sprintf(`<b>%.3f</b> <span class="ci">[%.3f, %.3f]</span>`, c.Acc.Value, c.Acc.Lo, c.Acc.Hi))
	},
	"paper": func(row Row, j int) string {
		if row.Paper == nil || row.Paper[j] == nil {
			return ""
		}
		return fmt.Sprintf("paper %.4f", *row.Paper[j])
	},
	"png": func(b []byte) template.URL {
		return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(b))
	},
	"secs":          fmtSeconds,
	"short":         short,
	"keys":          sortedKeys,
	"f2":            func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"f3":            func(v float64) string { return fmt.Sprintf("%.3f", v) },
	"f4":            func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"f1":            func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"subset":        func(d Data) bool { return d.AttackSubset > 0 && d.AttackSubset < d.Test },
	"utc":           func(r *Results) string { return r.Created.UTC().Format("2006-01-02 15:04 UTC") },
	"lines":         func(s string) []string { return strings.Split(s, "\n") },
	"missing":       func(t Table) []string { return missingNotes(&t) },
	"acc":           func(a metrics.Accuracy) Cell { return Cell{Acc: &a} },
	"effective":     func(a Attack) [4]string { return effectiveCells(a) },
	"effectiveNote": func() string { return effectiveNote },
	"vintro":        func() string { return verdictIntro },
	"vruns":         func(v *Verdict) string { return v.runsText() },
	"vcounts":       func(v *Verdict) string { return v.counts() },
	"vrules":        func(v *Verdict) []Claim { return firstOfEach(v.Claims) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>stl run: {{.R.Name}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.ci{color:#666;font-size:.85em}
.paper{color:#a05000;font-size:.85em;font-style:italic;display:block}
.missing{color:#b00}
.protocol{color:#444;font-size:.9em;border-left:4px solid #8ab;padding-left:.6em}
.verdict td:nth-child(2){white-space:nowrap}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.5em 1em;margin:.5em 0}
img{max-width:100%;border:1px solid #ddd}
figure{margin:1.5em 0}
code{background:#f3f3f3;padding:0 .2em}
</style></head><body>
<h1>stl run: {{.R.Name}}</h1>
<p>Created {{utc .R}}; wall time {{secs .R.Seconds}}.</p>
<p>Data: <b>{{.R.Data.Name}}</b>, {{.R.Data.Train}} training and {{.R.Data.Test}} test images of {{.R.Data.Channels}}x{{.R.Data.Height}}x{{.R.Data.Width}}, {{.R.Data.Classes}} classes.
{{if subset .R.Data}}Adversarial columns use a class-balanced subset of <b>{{.R.Data.AttackSubset}}</b> test images ({{.R.Data.PerClassMin}} to {{.R.Data.PerClassMax}} per class, seed {{.R.Data.AttackSubsetSeed}}); the clean column uses all {{.R.Data.Test}}.{{end}}
{{if .R.Data.WhiteBoxSubsetted}}The white-box table and its sanity checks use a class-balanced subset of <b>{{.R.Data.WhiteBoxSubset}}</b> of the {{.R.Data.AttackSubset}} attacked images ({{.R.Data.WhiteBoxPerClassMin}} to {{.R.Data.WhiteBoxPerClassMax}} per class, seed {{.R.Data.AttackSubsetSeed}}).{{end}}</p>
{{with .R.Verdict}}<h2>Verdict on the paper's claims (protocol {{.Protocol}})</h2>
<p>{{vintro}}</p><p>Runs: {{vruns .}}. Decisions: {{vcounts .}}.</p>
<table class="verdict"><tr><th>Claim</th><th>Verdict</th><th>Our numbers (95% intervals)</th></tr>
{{range .Claims}}<tr><td>({{.ID}}) {{.Statement}}</td><td><b>{{.Status}}</b></td><td>{{with .Why}}{{.}}<br>{{end}}{{if ne .Status "not run"}}{{range .Evidence}}{{.Text}}<br>{{end}}{{end}}</td></tr>
{{end}}</table>
<ul>{{range vrules .}}<li>({{.ID}}) {{.Source}}. {{.Rule}}</li>{{end}}</ul>
{{end}}
{{range .R.Notes}}<div class="note">{{.}}</div>
{{end}}
{{$line := .R.Protocol.Line}}{{range .R.Tables}}{{$t := .}}<h2>{{.Title}}</h2>
{{with $line}}<p class="protocol">{{.}}</p>{{end}}
{{if .Caption}}<p>{{.Caption}}</p>{{end}}
<table><tr><th>Defense</th>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}{{$row := .}}<tr><td>{{.Defense}}</td>{{range $j, $c := .Cells}}<td>{{cell $c}}{{with paper $row $j}}<span class="paper">{{.}}</span>{{end}}</td>{{end}}</tr>
{{end}}</table>
<p class="ci">Accuracy in bold, Wilson 95% interval in brackets{{if .PaperRef}}; in italics the paper's {{.PaperRef}}{{end}}.</p>
{{with missing $t}}<ul>{{range .}}<li class="missing">{{.}}</li>{{end}}</ul>{{end}}
{{end}}
{{if .R.Attacks}}<h2>Attacks on the vanilla classifier</h2>
{{with $line}}<p class="protocol">{{.}}</p>{{end}}
<table><tr><th>Attack</th><th>Budget</th><th>L-inf mean</th><th>L-inf max</th><th>Normalized L2 mean</th><th>Normalized L2 max</th><th>Images</th><th>Seconds</th></tr>
{{range .R.Attacks}}<tr><td>{{.Name}}</td><td>{{.Budget}}</td>{{range effective .}}<td>{{.}}</td>{{end}}<td>{{.N}}</td><td>{{f1 .Seconds}}</td></tr>
{{end}}</table><p class="ci">{{effectiveNote}}</p>{{end}}
{{if .R.Quality}}<h2>Quality and robustness (Figure 6 form)</h2>
{{with $line}}<p class="protocol">{{.}}</p>{{end}}
<table><tr><th>Defense</th><th>Attack</th><th>PSNR (dB)</th><th>Acc T(x0)</th><th>Acc T(x_adv)</th></tr>
{{range .R.Quality}}<tr><td>{{.Defense}}</td><td>{{.Attack}}</td><td>{{f2 .PSNR}}</td><td>{{f3 .Clean.Value}}</td><td>{{f3 .Adv.Value}}</td></tr>
{{end}}</table>{{end}}
{{if .R.Sweep}}<h2>Lambda sweep (Figure 5 form)</h2>
{{with $line}}<p class="protocol">{{.}}</p>{{end}}
<table><tr><th>lambda</th><th>Acc T(x0)</th><th>Acc T(x_adv)</th><th>PSNR (dB)</th></tr>
{{range .R.Sweep}}<tr><td>{{.Lambda}}</td><td>{{cell (acc .Clean)}}</td><td>{{cell (acc .Adv)}}</td><td>{{f2 .PSNR}}</td></tr>
{{end}}</table>{{end}}
{{range .Figs}}<figure><img src="{{png .PNG}}" alt="{{.Caption}}"><figcaption>{{.Caption}}</figcaption></figure>
{{end}}
{{if .R.Missing}}<h2>Missing</h2><ul>{{range .R.Missing}}<li><b>{{.What}}</b>: {{.Why}}</li>{{end}}</ul>{{end}}
{{if .R.Settings}}<h2>Settings</h2><table><tr><th>Setting</th><th>Value</th></tr>
{{range .R.Settings}}<tr><td>{{.Key}}</td><td><code>{{.Value}}</code></td></tr>
{{end}}</table>{{end}}
{{if .R.Versions}}<h2>Versions</h2><ul>{{$v := .R.Versions}}{{range keys .R.Versions}}<li>{{.}}: <code>{{index $v .}}</code></li>{{end}}</ul>{{end}}
{{if .R.Stages}}<h2>Stages</h2><table><tr><th>Stage</th><th>Seconds</th><th>Reused</th><th>Key</th></tr>
{{range .R.Stages}}<tr><td>{{.Name}}</td><td>{{f1 .Seconds}}</td><td>{{if .Cached}}yes{{end}}</td><td><code>{{short .Key}}</code></td></tr>
{{end}}</table><p>A reused stage shows the time it took when it was computed.</p>{{end}}
</body></html>
`))

// WriteHTML writes a self-contained report.html: the same content as
// report.md with every figure embedded as a base64 PNG, so the file can be
// mailed or opened anywhere without its directory.
func WriteHTML(w io.Writer, r *Results, figs []Figure) error {
	return htmlTmpl.Execute(w, struct {
		R    *Results
		Figs []Figure
	}{r, figs})
}
