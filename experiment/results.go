package experiment

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/experiment/metrics"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/internal/buildinfo"
	"github.com/stl-defense/stl/tensor"
)

// isCIFAR10 reports whether the run's data is CIFAR-10 at 32x32, the
// setting of the paper's Tables 1 and 5.
func (r *runner) isCIFAR10() bool {
	s := r.train.Shape()
	return strings.Contains(strings.ToLower(r.cfg.Data), "cifar") && s.C == 3 && s.H == 32 && s.W == 32 && len(r.train.Classes) == 10
}

// sweepPoints evaluates the vanilla classifier on the lambda sweep's
// projections.
func (r *runner) sweepPoints(ctx context.Context) ([]report.SweepPoint, error) {
	a := r.sweepAttack()
	var pts []report.SweepPoint
	per := len(r.x0.Data) / r.x0.Shape[0]
	for _, s := range r.sweeps {
		p := report.SweepPoint{Defense: RowSTLCluster, Attack: a.name, Lambda: s.lambda}
		for _, set := range []struct {
			x   *tensor.Tensor
			dst *metrics.Accuracy
		}{{s.clean, &p.Clean}, {s.adv, &p.Adv}} {
			pred, err := predict(ctx, r.vanilla, set.x)
			if err != nil {
				return nil, err
			}
			c, err := metrics.CountCorrect(pred, r.y0)
			if err != nil {
				return nil, err
			}
			*set.dst = metrics.NewAccuracy(c, len(r.y0))
		}
		var err error
		if p.PSNR, err = metrics.MeanPSNR(s.adv.Data, r.x0.Data, per); err != nil {
			return nil, err
		}
		pts = append(pts, p)
	}
	return pts, nil
}

// lambdaGrid lays out Figure 5(a): the adversarial images, their
// projections at each lambda, and the clean images.
func (r *runner) lambdaGrid() *report.Grid {
	if len(r.sweeps) == 0 || r.cfg.GridImages == 0 {
		return nil
	}
	a := r.sweepAttack()
	n := min(r.cfg.GridImages, len(r.subset))
	g := &report.Grid{MaxColumns: n, Rows: []report.GridRow{{Name: "adversarial (" + a.name + ")", Images: head(a.x, n)}}}
	for _, s := range r.sweeps {
		g.Rows = append(g.Rows, report.GridRow{Name: fmt.Sprintf("lambda %g", s.lambda), Images: head(s.adv, n)})
	}
	g.Rows = append(g.Rows, report.GridRow{Name: "clean", Images: head(r.x0, n)})
	return g
}

// head returns a view of the first n images of x.
func head(x *tensor.Tensor, n int) *tensor.Tensor {
	per := len(x.Data) / x.Shape[0]
	return &tensor.Tensor{Shape: append([]int{n}, x.Shape[1:]...), Data: x.Data[:n*per]}
}

// results assembles the report.
func (r *runner) results(ctx context.Context) (*report.Results, report.Grids, error) {
	tables, quality, err := r.evaluate(ctx)
	if err != nil {
		return nil, report.Grids{}, err
	}
	sweep, err := r.sweepPoints(ctx)
	if err != nil {
		return nil, report.Grids{}, err
	}
	shape := r.train.Shape()
	lo, hi := perClass(r.y0, len(r.test.Classes))
	res := &report.Results{
		Name:     r.cfg.Name,
		Created:  time.Now().UTC(),
		Versions: versions(r.b.Versions),
		Data: report.Data{Name: r.cfg.Data, Train: r.train.Len(), Test: r.test.Len(), Classes: len(r.train.Classes),
			Channels: shape.C, Height: shape.H, Width: shape.W,
			AttackSubset: len(r.subset), PerClassMin: lo, PerClassMax: hi, AttackSubsetSeed: uint64(r.cfg.Seed)},
		Tables:       tables,
		Quality:      quality,
		Sweep:        sweep,
		VanillaModel: r.vanillaSrc,
	}
	p := r.cfg.protocol()
	res.Protocol = &report.Protocol{Name: p.String(), Round8: r.cfg.round8(), Doc: p.Doc()}
	if r.cfg.WhiteBox {
		res.Data.WhiteBoxSubset = len(r.wbY)
		res.Data.WhiteBoxPerClassMin, res.Data.WhiteBoxPerClassMax = perClass(r.wbY, len(r.test.Classes))
	}
	if res.Config, err = jsonRaw(r.cfg); err != nil {
		return nil, report.Grids{}, err
	}
	for _, kv := range r.cfg.Settings() {
		res.Settings = append(res.Settings, report.Setting{Key: kv[0], Value: kv[1]})
	}
	res.Settings = append(res.Settings, r.extra...)
	for _, a := range r.advs {
		if a.x == nil {
			res.Missing = append(res.Missing, report.Missing{What: "attack " + a.name, Why: a.missing})
			continue
		}
		eff, err := r.effective(a.x)
		if err != nil {
			return nil, report.Grids{}, fmt.Errorf("attack %s: %w", a.name, err)
		}
		res.Attacks = append(res.Attacks, report.Attack{Name: a.name, Budget: a.budget, MeanL2: a.info.MeanL2, Effective: eff, N: a.info.N, Seconds: a.info.Seconds})
	}
	for _, rw := range r.rows {
		if rw.missing != "" {
			res.Missing = append(res.Missing, report.Missing{What: rw.name, Why: rw.missing})
		} else if rw.model == nil && rw.modelMissing != "" && rw.name != NoDefense {
			res.Missing = append(res.Missing, report.Missing{What: rw.name + " in the Table 1 form", Why: rw.modelMissing})
		}
	}
	for _, rw := range r.atRows {
		if rw.model == nil && rw.modelMissing != "" {
			res.Missing = append(res.Missing, report.Missing{What: rw.name, Why: rw.modelMissing})
		}
	}
	for _, m := range r.missing {
		res.Missing = append(res.Missing, report.Missing{What: m.What, Why: m.Why})
	}
	for _, t := range r.store.Timings() {
		res.Stages = append(res.Stages, report.Stage{Name: t.Stage, Key: string(t.Key), Seconds: t.Seconds, Cached: t.Cached})
	}
	res.Seconds = time.Since(r.start).Seconds()
	res.Notes = r.notes()
	res.Verdict = report.RunVerdict(res)
	return res, report.Grids{Comparison: r.grid(), Lambda: r.lambdaGrid()}, nil
}

// effective measures an adversarial set against the attacked clean
// images: the mean and maximum over the images of the L-infinity distance
// and of the normalized L2 dissimilarity (attack.Distances), and under the
// guo protocol of the dissimilarity on the vanilla classifier's
// normalized tensors (attack.DissimilarityZ).
func (r *runner) effective(adv *tensor.Tensor) (*report.Effective, error) {
	dissim, linf, err := attack.Distances(adv, r.x0)
	if err != nil {
		return nil, err
	}
	e := &report.Effective{}
	e.L2Mean, e.L2Max = meanMax(dissim)
	e.LInfMean, e.LInfMax = meanMax(linf)
	if r.cfg.protocol() == attack.ProtocolGuo {
		n, err := inputNormalization(r.vanilla)
		if err != nil {
			return nil, err
		}
		dz, err := attack.DissimilarityZ(adv, r.x0, *n)
		if err != nil {
			return nil, err
		}
		var z [2]float64
		z[0], z[1] = meanMax(dz)
		e.L2Z = &z
	}
	return e, nil
}

// meanMax returns the mean and the maximum of v (0, 0 when empty).
func meanMax(v []float64) (mean, hi float64) {
	for _, x := range v {
		mean += x
		hi = math.Max(hi, x)
	}
	return mean / math.Max(1, float64(len(v))), hi
}

// perClass returns the smallest and largest number of labels per class.
func perClass(labels []int, classes int) (lo, hi int) {
	counts := make([]int, classes)
	for _, l := range labels {
		counts[l]++
	}
	lo = len(labels)
	for _, c := range counts {
		lo, hi = min(lo, c), max(hi, c)
	}
	return lo, hi
}

// exactBackward names, for the white-box captions, the rows attacked
// through their exact gradient rather than the identity.
func (r *runner) exactBackward() string {
	var names []string
	for _, rw := range r.rows {
		if rw.backward == BackwardExact {
			names = append(names, rw.name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " or its exact gradient where it has one (" + strings.Join(names, ", ") + ")"
}

// whiteBoxScope is appended to the white-box tables' captions: the images
// they are measured on, when a subset of the attacked ones.
func (r *runner) whiteBoxScope() string {
	if len(r.wbY) >= len(r.y0) {
		return ""
	}
	return fmt.Sprintf(" Measured on a class-balanced subset of %d of the %d attacked images (whitebox_subset).", len(r.wbY), len(r.y0))
}

// notes says what the numbers mean at the run's size.
func (r *runner) notes() []string {
	var notes []string
	if v := r.vanillaSrc; v != nil {
		n := fmt.Sprintf("The vanilla classifier was not trained by this run: it was loaded from %s, which records: %s", v.Dir, strings.TrimSuffix(report.VanillaSummary(v), "."))
		n += ". Its clean accuracy in the tables is measured on this run's test set."
		if r.cfg.outsideVanilla() {
			n += " It is not a model directory of stl train classifier, so the run retrained no classifier on the defenses' images: the defenses' Table 1 rows are empty, and every defense is evaluated in front of this classifier (the Table 5 form, and the white-box rows)."
		} else {
			n += " The retrained classifiers are trained by the run (" + r.cfg.Arch + fmt.Sprintf(", %d epochs).", r.cfg.retrainEpochs())
		}
		notes = append(notes, n)
	}
	if r.train.Len() < 10000 {
		training := fmt.Sprintf("%d epochs (vanilla) and %d epochs (retrained), %s", r.cfg.Epochs, r.cfg.retrainEpochs(), r.cfg.Arch)
		switch {
		case r.vanillaSrc != nil && r.cfg.outsideVanilla():
			training = "a loaded vanilla classifier, none retrained"
		case r.vanillaSrc != nil:
			training = fmt.Sprintf("a loaded vanilla classifier and %d epochs (retrained), %s", r.cfg.retrainEpochs(), r.cfg.Arch)
		}
		notes = append(notes, fmt.Sprintf(
			"Small-scale run: %d training images, %s. The paper trains VGG-16 to convergence on its full data (50,000 CIFAR-10 images; 8,000 per class on ImageNet-10), "+
				"so absolute accuracies here are far lower than the paper's and the intervals are wide; what the run shows is that the pipeline works end to end "+
				"and how the defenses compare under the same conditions. Run on the full data (--data DIR, more epochs) for numbers comparable with the paper.",
			r.train.Len(), training))
	}
	if len(r.subset) < r.test.Len() {
		notes = append(notes, fmt.Sprintf(
			"Adversarial columns are measured on a class-balanced subset of %d of the %d test images (seed %d) to bound the cost of the attacks; the Clean column uses every test image. "+
				"Every accuracy carries its Wilson 95%% interval.", len(r.subset), r.test.Len(), r.cfg.Seed))
	}
	if r.cfg.WhiteBox && len(r.wbY) < len(r.y0) {
		lo, hi := perClass(r.wbY, len(r.test.Classes))
		notes = append(notes, fmt.Sprintf(
			"The white-box table and its sanity checks use a class-balanced subset of %d of the %d attacked images (%d to %d per class, seed %d) to bound their cost; "+
				"their Wilson 95%% intervals are over those %d images (up to +-%.2f), wider than the other adversarial columns' (up to +-%.2f).",
			len(r.wbY), len(r.y0), lo, hi, r.cfg.Seed, len(r.wbY), wilsonHalfWidth(len(r.wbY)), wilsonHalfWidth(len(r.y0))))
	}
	if r.stl != nil {
		notes = append(notes, "STL and STL (cluster): "+r.cfg.ApplyOptions.Describe()+".")
	}
	notes = append(notes, r.sanityNotes...)
	notes = append(notes, r.suiteNotes()...)
	if r.atNote != "" {
		notes = append(notes, r.atNote)
	}
	if r.isCIFAR10() {
		notes = append(notes, "Paper numbers (italics) are from Sun et al., CVPR 2019, Tables 1 and 5 (CIFAR-10, VGG-16); our classifier is "+r.cfg.Arch+".")
	}
	return notes
}

// grid lays out the qualitative comparison of Figures 3 and 4 on the
// FGSM-0.08 set (the paper's setting) or the first available one.
func (r *runner) grid() *report.Grid {
	if r.cfg.GridImages == 0 {
		return nil
	}
	a := r.sweepAttack()
	if a == nil {
		return nil
	}
	n := min(r.cfg.GridImages, len(r.subset))
	g := &report.Grid{MaxColumns: n, Rows: []report.GridRow{{Name: "adversarial (" + a.name + ")", Images: head(a.x, n)}}}
	for _, rw := range r.rows[1:] {
		if y, ok := rw.adv[a.name]; ok {
			g.Rows = append(g.Rows, report.GridRow{Name: rw.name, Images: head(y, n)})
		}
	}
	g.Rows = append(g.Rows, report.GridRow{Name: "clean", Images: head(r.x0, n)})
	return g
}

// versions returns the build's versions, its numerical kernels and the CPU
// (package buildinfo), merged with extra.
func versions(extra map[string]string) map[string]string {
	v := buildinfo.Map()
	v["go"], v["os/arch"] = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		v["module"] = bi.Main.Path + " " + bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "-tags", "vcs.revision", "vcs.modified", "CGO_ENABLED":
				v[s.Key] = s.Value
			}
		}
		for _, d := range bi.Deps {
			if strings.HasPrefix(d.Path, "gonum.org/") || strings.HasPrefix(d.Path, "github.com/spf13/cobra") {
				v[d.Path] = d.Version
			}
		}
	}
	for k, val := range extra {
		v[k] = val
	}
	return v
}

// wilsonHalfWidth is the half-width of the Wilson 95% interval of n trials
// at accuracy 0.5, its widest.
func wilsonHalfWidth(n int) float64 {
	if n < 2 {
		return 0.5
	}
	lo, hi := metrics.Wilson(n/2, 2*(n/2), metrics.Z95)
	return (hi - lo) / 2
}
