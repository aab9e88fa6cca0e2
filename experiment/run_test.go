package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// The fakes below stand in for the real classifier, defense and attacks so
// that the pipeline's caching, resumption and bookkeeping are tested in
// milliseconds. Classes are images of constant grey levels plus noise.

const fakeClasses, fakeC, fakeH, fakeW = 3, 3, 8, 8

func fakeSet(name string, n int, seed uint64) *dataset.Set {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := dataset.NewSet(name, n, dataset.Shape{C: fakeC, H: fakeH, W: fakeW}, []string{"dark", "mid", "light"})
	per := fakeC * fakeH * fakeW
	for i := 0; i < n; i++ {
		l := i % fakeClasses
		s.Labels[i] = l
		for j := 0; j < per; j++ {
			v := 0.2 + 0.3*float64(l) + 0.08*rng.NormFloat64()
			s.Images.Data[i*per+j] = float32(math.Min(1, math.Max(0, v)))
		}
	}
	return s
}

// centroid is a nearest-class-mean classifier: logits_k = -||x-mu_k||^2/D.
type centroid struct{ Mu [][]float32 }

func (m *centroid) InputShape() (int, int, int) { return fakeC, fakeH, fakeW }
func (m *centroid) NumClasses() int             { return fakeClasses }
func (m *centroid) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	per := len(x.Data) / n
	out := tensor.New(n, fakeClasses)
	for i := 0; i < n; i++ {
		for k, mu := range m.Mu {
			var s float64
			for j, v := range x.Data[i*per : (i+1)*per] {
				d := float64(v - mu[j])
				s += d * d
			}
			out.Data[i*fakeClasses+k] = float32(-s / float64(per))
		}
	}
	return out, nil
}
func (m *centroid) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	logits, _ := m.Logits(ctx, x)
	g := tensor.New(logits.Shape...)
	seed(logits, g)
	n := x.Shape[0]
	per := len(x.Data) / n
	grad := tensor.New(x.Shape...)
	for i := 0; i < n; i++ {
		for k, mu := range m.Mu {
			gk := g.Data[i*fakeClasses+k]
			for j := 0; j < per; j++ {
				grad.Data[i*per+j] += gk * -2 * (x.Data[i*per+j] - mu[j]) / float32(per)
			}
		}
	}
	return logits, grad, nil
}

type fakeTrainer struct{ trained atomic.Int32 }

func (f *fakeTrainer) Train(ctx context.Context, spec ClassifierSpec, train *dataset.Set, rep progress.Reporter) (attack.Model, error) {
	f.trained.Add(1)
	per := fakeC * fakeH * fakeW
	m := &centroid{Mu: make([][]float32, fakeClasses)}
	count := make([]int, fakeClasses)
	for k := range m.Mu {
		m.Mu[k] = make([]float32, per)
	}
	for i, l := range train.Labels {
		count[l]++
		for j, v := range train.Image(i) {
			m.Mu[l][j] += v
		}
	}
	for k := range m.Mu {
		for j := range m.Mu[k] {
			m.Mu[k][j] /= float32(max(1, count[k]))
		}
	}
	return m, nil
}
func (f *fakeTrainer) Save(path string, m attack.Model) error {
	b, _ := json.Marshal(m)
	return os.WriteFile(path, b, 0o644)
}
func (f *fakeTrainer) Load(path string) (attack.Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &centroid{}
	return m, json.Unmarshal(b, m)
}

// shrink pulls pixels towards 0.5 by a factor: a stand-in for a projection.
type shrink struct {
	name string
	f    float32
}

func (s shrink) Name() string     { return s.name }
func (s shrink) Randomized() bool { return false }
func (s shrink) Apply(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y := x.Clone()
	for i, v := range y.Data {
		y.Data[i] = 0.5 + (v-0.5)*s.f
	}
	return y, nil
}

type failing struct{}

func (failing) Name() string     { return "Broken" }
func (failing) Randomized() bool { return false }
func (failing) Apply(context.Context, *tensor.Tensor) (*tensor.Tensor, error) {
	return nil, errors.New("synthetic transform failure")
}

type fakeDefense struct {
	built  atomic.Int32
	loaded atomic.Int32       // calls of Load
	cancel context.CancelFunc // when set, Build cancels the run instead
}

func (f *fakeDefense) Build(ctx context.Context, spec DefenseSpec, train *dataset.Set, dir string, rep progress.Reporter) error {
	if f.cancel != nil {
		f.cancel()
		return ctx.Err()
	}
	f.built.Add(1)
	return os.WriteFile(filepath.Join(dir, "lambda.json"), []byte(fmt.Sprint(spec.Lambda)), 0o644)
}

func (f *fakeDefense) Load(dir string) (LoadedDefense, error) {
	f.loaded.Add(1)
	b, err := os.ReadFile(filepath.Join(dir, "lambda.json"))
	if err != nil {
		return nil, err
	}
	var lambda float32
	fmt.Sscan(string(b), &lambda)
	return fakeLoaded(lambda), nil
}

// fakeLoaded is the fake defense learned with a lambda.
type fakeLoaded float32

func (f fakeLoaded) Transforms(l float64) (defense.Transform, defense.Transform, error) {
	lambda := float32(f)
	if l > 0 {
		lambda = float32(l)
	}
	return shrink{RowSTL, 1 - lambda}, shrink{RowSTLCluster, 1 - lambda/2}, nil
}

type fakes struct {
	trainer  *fakeTrainer
	defense  *fakeDefense
	attacked atomic.Int32
	train    *dataset.Set
}

func newFakes() *fakes {
	return &fakes{trainer: &fakeTrainer{}, defense: &fakeDefense{}, train: fakeSet("fake/train", 60, 1)}
}

func (f *fakes) backend() Backend {
	return Backend{
		Data: func(ctx context.Context, cfg Config) (*dataset.Set, *dataset.Set, error) {
			return f.train, fakeSet("fake/test", 30, 2), nil
		},
		Classifier: f.trainer,
		Defense:    f.defense,
		Attack:     f.attack,
		Baselines: func(ctx context.Context, cfg Config, train *dataset.Set, dir string, rep progress.Reporter) ([]Baseline, []Missing, error) {
			return []Baseline{
				{Name: "Shrink", Settings: 0.5, New: func(uint64) (defense.Transform, error) { return shrink{"Shrink", 0.5}, nil }},
				{Name: "Broken", Settings: 0, New: func(uint64) (defense.Transform, error) { return failing{}, nil }},
			}, []Missing{{"MagNet", "no reformer in the fake backend"}}, nil
		},
		WhiteBox: func(cfg Config, loss string) (Attacker, any, error) {
			if loss == LossCW {
				return f.signAttack(0.2), "fake pgd, cw loss", nil
			}
			a, _, _, err := f.backend0().Attack(AttackFGSM008, cfg, nil)
			return a, "fake pgd", err
		},
		PGD: func(cfg Config, eps float64, steps int) (Attacker, any, error) {
			return f.signAttack(float32(min(1, 10*eps))), map[string]any{"eps": eps, "steps": steps}, nil
		},
		Adaptive: func(t defense.Transform, m attack.Model, draws int) (attack.Model, error) {
			return bpda{t, m}, nil
		},
		Versions: map[string]string{"backend": "fake"},
	}
}

func (f *fakes) attack(name string, cfg Config, _ attack.Model) (Attacker, any, string, error) {
	if name == AttackCW {
		return nil, nil, "", errors.New("CW is not available in the fake backend")
	}
	eps := float32(0.3)
	if name == AttackFGSM004 {
		eps = 0.15
	}
	return f.signAttack(eps), map[string]float32{"eps": eps}, fmt.Sprintf("L-inf %g", eps), nil
}

// signAttack is a one-step sign attack at L-infinity eps on the fake model.
func (f *fakes) signAttack(eps float32) Attacker {
	return func(ctx context.Context, m attack.Model, x *tensor.Tensor, labels []int, rep progress.Reporter) (*tensor.Tensor, error) {
		f.attacked.Add(1)
		_, g, err := m.InputGrad(ctx, x, func(logits, g *tensor.Tensor) {
			for i, l := range labels {
				g.Data[i*fakeClasses+l] = -1 // ascend logit_{y+1} - logit_y
				g.Data[i*fakeClasses+(l+1)%fakeClasses] = 1
			}
		})
		if err != nil {
			return nil, err
		}
		adv := x.Clone()
		for i, v := range g.Data {
			switch {
			case v > 0:
				adv.Data[i] += eps
			case v < 0:
				adv.Data[i] -= eps
			}
		}
		tensor.Clip(adv.Data, 0, 1)
		return adv, nil
	}
}

// backend0 is the backend without white-box pieces (to reuse its attack).
func (f *fakes) backend0() Backend { return Backend{Attack: f.attack} }

// bpda classifies T(x) and takes T's Jacobian as the identity.
type bpda struct {
	t defense.Transform
	m attack.Model
}

func (b bpda) InputShape() (int, int, int) { return b.m.InputShape() }
func (b bpda) NumClasses() int             { return b.m.NumClasses() }
func (b bpda) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y, err := b.t.Apply(ctx, x)
	if err != nil {
		return nil, err
	}
	return b.m.Logits(ctx, y)
}
func (b bpda) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	y, err := b.t.Apply(ctx, x)
	if err != nil {
		return nil, nil, err
	}
	return b.m.InputGrad(ctx, y, seed)
}

func fakeConfig() Config {
	c := DefaultConfig()
	c.Name = "fake"
	c.Data = "fake"
	c.AttackSubset = 12
	c.GridImages = 4
	return c
}

func findRow(t *testing.T, tb report.Table, name string) report.Row {
	t.Helper()
	for _, r := range tb.Rows {
		if r.Defense == name {
			return r
		}
	}
	t.Fatalf("table %s has no row %q", tb.ID, name)
	return report.Row{}
}

func TestRunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	f := newFakes()
	cfg := fakeConfig()
	rec := &recorder{}
	res, err := RunWith(context.Background(), cfg, f.backend(), dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	// The overall plan has exactly one entry per stage met.
	if rec.runTotal == 0 || rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d, want the last of the planned stages", rec.runLast, rec.runTotal)
	}
	// Vanilla + STL + STL (cluster) classifiers; Shrink and Broken are not
	// retrained by default.
	if n := f.trainer.trained.Load(); n != 3 {
		t.Errorf("trained %d classifiers, want 3", n)
	}
	if n := f.attacked.Load(); n != 4 {
		t.Errorf("ran %d attacks, want 4 (CW is unavailable)", n)
	}
	// Every transform stage and the lambda sweep share one loaded defense.
	if n := f.defense.loaded.Load(); n != 1 {
		t.Errorf("loaded the defense %d times, want 1", n)
	}
	if len(res.Tables) != 2 {
		t.Fatalf("%d tables", len(res.Tables))
	}
	t1, t5 := res.Tables[0], res.Tables[1]
	wantCols := []string{"Clean", "FGSM-0.08", "FGSM-0.04", "BIM", "DeepFool", "CW"}
	if strings.Join(t1.Columns, ",") != strings.Join(wantCols, ",") {
		t.Errorf("columns = %v", t1.Columns)
	}
	nd := findRow(t, t1, NoDefense)
	if a := nd.Cells[0].Acc; a == nil || a.N != 30 || a.Value < 0.9 {
		t.Errorf("No Defense clean = %+v, want ~1 on 30 images", a)
	}
	if a := nd.Cells[1].Acc; a == nil || a.N != 12 || a.Value > 0.5 {
		t.Errorf("No Defense FGSM-0.08 = %+v, want a successful attack on 12 images", a)
	}
	if c := nd.Cells[5]; c.Acc != nil || !strings.Contains(c.Missing, "not available") {
		t.Errorf("No Defense CW = %+v, want missing", c)
	}
	if r := findRow(t, t1, "Shrink"); r.Cells[0].Acc != nil || !strings.Contains(r.Cells[0].Missing, "retrain_baselines") {
		t.Errorf("Shrink in Table 1 = %+v, want missing (not retrained)", r.Cells[0])
	}
	if r := findRow(t, t5, "Shrink"); r.Cells[0].Acc == nil || r.Cells[1].Acc == nil {
		t.Errorf("Shrink in Table 5 = %+v, want accuracies", r.Cells)
	}
	if r := findRow(t, t5, "Broken"); r.Cells[0].Acc != nil || !strings.Contains(r.Cells[0].Missing, "synthetic transform failure") {
		t.Errorf("Broken = %+v, want missing with the reason", r.Cells[0])
	}
	for _, name := range []string{RowSTL, RowSTLCluster} {
		if r := findRow(t, t1, name); r.Cells[0].Acc == nil || r.Cells[2].Acc == nil {
			t.Errorf("%s in Table 1 = %+v", name, r.Cells)
		}
	}
	// Fake data is not CIFAR-10: no paper numbers.
	if t1.PaperRef != "" || nd.Paper != nil {
		t.Errorf("paper numbers attached to a non-CIFAR run")
	}
	missing := fmt.Sprint(res.Missing)
	for _, want := range []string{"MagNet", "attack CW", "Broken"} {
		if !strings.Contains(missing, want) {
			t.Errorf("Missing %s lacks %q", missing, want)
		}
	}
	if res.Data.AttackSubset != 12 || res.Data.PerClassMin != 4 || res.Data.PerClassMax != 4 {
		t.Errorf("attack subset = %+v, want 12 images, 4 per class", res.Data)
	}
	if len(res.Quality) == 0 || len(res.Attacks) != 4 {
		t.Errorf("quality points %d, attacks %d", len(res.Quality), len(res.Attacks))
	}
	for _, a := range res.Attacks {
		if a.MeanL2 <= 0 || a.N != 12 {
			t.Errorf("attack %+v: want a positive mean L2 over 12 images", a)
		}
	}
	settings := fmt.Sprint(res.Settings)
	for _, want := range []string{"{lambda 0.2}", "{attack FGSM-0.08 {\"eps\":0.3}}", "{baseline Shrink 0.5}"} {
		if !strings.Contains(settings, want) {
			t.Errorf("settings lack %s: %s", want, settings)
		}
	}
	if len(res.Sweep) != len(cfg.LambdaSweep) || res.Sweep[0].Lambda != 0.05 || res.Sweep[0].Attack != AttackFGSM008 {
		t.Errorf("lambda sweep = %+v", res.Sweep)
	}
	for _, p := range res.Sweep {
		if p.Clean.N != 12 || p.Adv.N != 12 {
			t.Errorf("sweep point %+v: want 12 images", p)
		}
	}
	for _, name := range []string{"report.md", "report.html", "results.json", "results.csv", "figures/grid.png", "figures/psnr_interval.svg", "figures/lambda_grid.png", "figures/lambda_sweep.svg"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}

	// Second run: everything is reused and the numbers are identical.
	res2, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.trainer.trained.Load() != 3 || f.attacked.Load() != 4 || f.defense.built.Load() != 1 {
		t.Errorf("second run recomputed: trained %d, attacked %d, built %d", f.trainer.trained.Load(), f.attacked.Load(), f.defense.built.Load())
	}
	// With every stage cached the defense is not even read.
	if n := f.defense.loaded.Load(); n != 1 {
		t.Errorf("the second run loaded the defense: %d loads in all, want 1", n)
	}
	for _, s := range res2.Stages {
		if !s.Cached {
			t.Errorf("stage %s recomputed in the second run", s.Name)
		}
	}
	b1, _ := json.Marshal(res.Tables)
	b2, _ := json.Marshal(res2.Tables)
	if string(b1) != string(b2) {
		t.Error("second run gave different tables")
	}
	// The verdict is decided from the run's own results, the same again.
	if res.Verdict == nil || len(res.Verdict.Claims) != len(report.ClaimIDs) {
		t.Errorf("verdict %+v, want one entry per claim", res.Verdict)
	}
	v1, _ := json.Marshal(res.Verdict)
	v2, _ := json.Marshal(res2.Verdict)
	if string(v1) != string(v2) {
		t.Error("second run gave a different verdict")
	}

	// A changed lambda rebuilds the defense and what depends on it only.
	cfg.Lambda = 0.4
	res3, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.defense.built.Load() != 2 {
		t.Errorf("defense built %d times, want 2", f.defense.built.Load())
	}
	if f.trainer.trained.Load() != 5 || f.attacked.Load() != 4 {
		t.Errorf("after lambda change: trained %d (want 3+2 retrained), attacked %d (want 4)", f.trainer.trained.Load(), f.attacked.Load())
	}
	for _, s := range res3.Stages {
		dependsOnSTL := strings.Contains(s.Name, "stl") || strings.HasPrefix(s.Name, "sweep") || s.Name == stageDefense
		if s.Cached == dependsOnSTL {
			t.Errorf("after lambda change: stage %s cached=%v", s.Name, s.Cached)
		}
	}
}

func TestRunResumesAfterInterrupt(t *testing.T) {
	dir := t.TempDir()
	f := newFakes()
	ctx, cancel := context.WithCancel(context.Background())
	f.defense.cancel = cancel // interrupt while the defense is built
	_, err := RunWith(ctx, fakeConfig(), f.backend(), dir, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v, want context.Canceled", err)
	}
	if f.trainer.trained.Load() != 1 || f.attacked.Load() != 4 {
		t.Fatalf("before the interrupt: trained %d, attacked %d", f.trainer.trained.Load(), f.attacked.Load())
	}
	if _, err := os.Stat(filepath.Join(dir, "report.md")); err == nil {
		t.Error("an interrupted run wrote a report")
	}
	f.defense.cancel = nil
	if _, err := RunWith(context.Background(), fakeConfig(), f.backend(), dir, nil); err != nil {
		t.Fatal(err)
	}
	// The vanilla classifier and the attacks were reused.
	if f.trainer.trained.Load() != 3 || f.attacked.Load() != 4 || f.defense.built.Load() != 1 {
		t.Errorf("after resuming: trained %d (want 3), attacked %d (want 4), built %d (want 1)",
			f.trainer.trained.Load(), f.attacked.Load(), f.defense.built.Load())
	}
}

func TestRunChangedDataRecomputes(t *testing.T) {
	dir := t.TempDir()
	f := newFakes()
	if _, err := RunWith(context.Background(), fakeConfig(), f.backend(), dir, nil); err != nil {
		t.Fatal(err)
	}
	// Same configuration, one pixel changed: nothing may be reused.
	f.train = fakeSet("fake/train", 60, 1)
	f.train.Images.Data[0] += 0.01
	if _, err := RunWith(context.Background(), fakeConfig(), f.backend(), dir, nil); err != nil {
		t.Fatal(err)
	}
	if f.trainer.trained.Load() != 6 || f.defense.built.Load() != 2 {
		t.Errorf("after a data change: trained %d (want 6), built %d (want 2)", f.trainer.trained.Load(), f.defense.built.Load())
	}
}

func TestRunMissingPieces(t *testing.T) {
	f := newFakes()
	b := f.backend()
	b.Defense, b.DefenseMissing = nil, "the STL backend is not wired"
	b.Attack, b.Baselines = nil, nil
	cfg := fakeConfig()
	rec := &recorder{}
	res, err := RunWith(context.Background(), cfg, b, t.TempDir(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.runTotal == 0 || rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d", rec.runLast, rec.runTotal)
	}
	r := findRow(t, res.Tables[0], RowSTLCluster)
	if r.Cells[0].Acc != nil || r.Cells[0].Missing != "the STL backend is not wired" {
		t.Errorf("STL (cluster) = %+v", r.Cells[0])
	}
	if nd := findRow(t, res.Tables[1], NoDefense); nd.Cells[0].Acc == nil || nd.Cells[1].Acc != nil {
		t.Errorf("No Defense = %+v: want clean accuracy and missing attacks", nd.Cells)
	}
	b.Classifier = nil
	if _, err := RunWith(context.Background(), cfg, b, t.TempDir(), nil); err == nil {
		t.Error("RunWith without a classifier trainer succeeded")
	}
	cfg.Epochs = 0
	var ce *ConfigError
	if _, err := RunWith(context.Background(), cfg, f.backend(), t.TempDir(), nil); !errors.As(err, &ce) {
		t.Errorf("invalid config: err = %v", err)
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{"STL (cluster)": "stl-cluster", "FGSM-0.08": "fgsm-0-08", "JPEG": "jpeg", "Crop-Ens": "crop-ens"} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

// recorder keeps the overall progress reports.
type recorder struct {
	mu                sync.Mutex
	runLast, runTotal int
}

func (r *recorder) Report(stage string, done, total int, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stage == "stl run" {
		r.runLast, r.runTotal = done, total
	}
}

// runToEnd runs cfg with b in dir and checks that the overall progress
// ended at its total.
func runToEnd(t *testing.T, cfg Config, b Backend, dir string) *report.Results {
	t.Helper()
	rec := &recorder{}
	res, err := RunWith(context.Background(), cfg, b, dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d", rec.runLast, rec.runTotal)
	}
	return res
}

func TestRunWhiteBox(t *testing.T) {
	f := newFakes()
	cfg := fakeConfig()
	cfg.WhiteBox = true
	dir := t.TempDir()
	res := runToEnd(t, cfg, f.backend(), dir)
	if len(res.Tables) != 6 || res.Tables[2].ID != "table4" {
		t.Fatalf("tables = %d, want Tables 1, 5, 4 and the 3 sanity tables", len(res.Tables))
	}
	t4 := res.Tables[2]
	if c := findRow(t, t4, NoDefense).Cells[0]; c.Acc == nil || c.Acc.N != 12 || c.Acc.Value > 0.5 {
		t.Errorf("No Defense under white-box attack = %+v, want a successful attack on 12 images", c)
	}
	if c := findRow(t, t4, RowSTL).Cells[0]; c.Acc == nil {
		t.Errorf("STL white-box cell missing: %s", c.Missing)
	}
	if c := findRow(t, t4, "Shrink (vanilla classifier)").Cells[0]; c.Acc == nil {
		t.Errorf("Shrink white-box cell missing: %s", c.Missing)
	}
	if c := findRow(t, t4, "Broken").Cells[0]; c.Acc != nil || !strings.Contains(c.Missing, "synthetic transform failure") {
		t.Errorf("Broken white-box cell = %+v, want missing with the reason", c)
	}
	checkCWColumn(t, res, 12)
	checkSanity(t, res, cfg)
	n := f.attacked.Load()
	res2, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.attacked.Load() != n {
		t.Errorf("second run attacked again (%d -> %d)", n, f.attacked.Load())
	}
	b1, _ := json.Marshal(res.Tables)
	b2, _ := json.Marshal(res2.Tables)
	if string(b1) != string(b2) {
		t.Error("second run gave different tables")
	}
}

// checkCWColumn checks the Table 4 form of a white-box run with both
// losses: a CW-loss column after the cross-entropy's, an accuracy in
// [0, 1] on n images in every row that has a cross-entropy one, and No
// Defense no more accurate under the CW-loss attack than the vanilla
// classifier on the same clean images (the Figure 6 points' clean
// accuracy, measured on the attacked images, which are the white-box
// images when n is their number).
func checkCWColumn(t *testing.T, res *report.Results, n int) {
	t.Helper()
	var t4 *report.Table
	for i := range res.Tables {
		if res.Tables[i].ID == "table4" {
			t4 = &res.Tables[i]
		}
	}
	if t4 == nil {
		t.Fatal("no Table 4 form")
	}
	if strings.Join(t4.Columns, "|") != report.ColBPDA+"|"+report.ColBPDACW+"|"+report.ColBPDAWorst {
		t.Fatalf("Table 4 columns %q, want %q, %q and %q", t4.Columns, report.ColBPDA, report.ColBPDACW, report.ColBPDAWorst)
	}
	for _, row := range t4.Rows {
		ce, cw, worst := row.Cells[0], row.Cells[1], row.Cells[2]
		if (ce.Acc == nil) != (cw.Acc == nil) || (cw.Acc == nil) != (worst.Acc == nil) {
			t.Errorf("%s: cross-entropy %+v, CW loss %+v, worst %+v", row.Defense, ce, cw, worst)
		}
		// The images correct under both losses are at most those correct
		// under either, and at least what the two counts force to overlap.
		if worst.Acc != nil {
			w, a, b := worst.Acc.Correct, ce.Acc.Correct, cw.Acc.Correct
			if w > min(a, b) || w < a+b-n || worst.Acc.N != n {
				t.Errorf("%s: worst of losses %d of %d, with %d (CE) and %d (CW) correct", row.Defense, w, worst.Acc.N, a, b)
			}
		}
		if cw.Acc == nil {
			if cw.Missing == "" {
				t.Errorf("%s: CW-loss cell missing without a reason", row.Defense)
			}
			continue
		}
		if a := cw.Acc; a.N != n || !(a.Value >= 0 && a.Value <= 1) {
			t.Errorf("%s: CW-loss accuracy %+v, want a proportion on %d images", row.Defense, a, n)
		}
	}
	cw := findRow(t, *t4, NoDefense).Cells[1].Acc
	for _, q := range res.Quality {
		if q.Defense == NoDefense && q.Clean.N == n && cw != nil && cw.Correct > q.Clean.Correct {
			t.Errorf("No Defense under the CW-loss attack: %d of %d correct, more than the %d correct on the clean images", cw.Correct, n, q.Clean.Correct)
		}
	}
}

// TestRunWhiteBoxAddsCWLoss: a run made with the cross-entropy alone, run
// again with both losses, reuses every stage it had and computes only the
// CW-loss white-box stages, whose names are those of the cross-entropy
// ones with "cw-" after "whitebox-".
func TestRunWhiteBoxAddsCWLoss(t *testing.T) {
	f := newFakes()
	cfg := fakeConfig()
	cfg.WhiteBox, cfg.LambdaSweep, cfg.Attacks = true, nil, []string{AttackFGSM008}
	cfg.WhiteBoxLosses = []string{LossCE}
	dir := t.TempDir()
	ceOnly, err := RunWith(context.Background(), cfg, f.backend(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cols := ceOnly.Tables[2].Columns; len(cols) != 1 || cols[0] != report.ColBPDA {
		t.Errorf("Table 4 columns with the cross-entropy alone: %q", cols)
	}
	cfg.WhiteBoxLosses = []string{LossCE, LossCW}
	rec := &recorder{}
	both, err := RunWith(context.Background(), cfg, f.backend(), dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.runLast != rec.runTotal {
		t.Errorf("overall progress ended at %d of %d", rec.runLast, rec.runTotal)
	}
	before := stageKeys(ceOnly)
	computed := 0
	for _, s := range both.Stages {
		if key, ok := before[s.Name]; ok {
			if key != s.Key || !s.Cached {
				t.Errorf("stage %s: key %s cached %v, want the earlier run's %s reused", s.Name, s.Key, s.Cached, key)
			}
			continue
		}
		computed++
		if !strings.HasPrefix(s.Name, "whitebox-cw-") || s.Cached {
			t.Errorf("new stage %s (cached %v): want only CW-loss white-box stages computed", s.Name, s.Cached)
		}
		if _, ok := before["whitebox-"+strings.TrimPrefix(s.Name, "whitebox-cw-")]; !ok {
			t.Errorf("CW-loss stage %s has no cross-entropy counterpart", s.Name)
		}
	}
	// No Defense, STL, STL (cluster) and Shrink; Broken fails.
	if computed != 4 {
		t.Errorf("computed %d CW-loss stages, want 4", computed)
	}
	ce1, ce2 := ceOnly.Tables[2], both.Tables[2]
	for i, row := range ce1.Rows {
		if a, b := row.Cells[0], ce2.Rows[i].Cells[0]; (a.Acc == nil) != (b.Acc == nil) || (a.Acc != nil && *a.Acc != *b.Acc) {
			t.Errorf("%s: cross-entropy cell %+v, then %+v", row.Defense, a, b)
		}
	}
	checkCWColumn(t, both, 12)
}

func TestRunRetrainBaselines(t *testing.T) {
	f := newFakes()
	cfg := fakeConfig()
	cfg.RetrainBaselines = true
	res, err := RunWith(context.Background(), cfg, f.backend(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := findRow(t, res.Tables[0], "Shrink"); r.Cells[0].Acc == nil || r.Cells[1].Acc == nil {
		t.Errorf("Shrink in Table 1 with retrain_baselines = %+v", r.Cells)
	}
	// Vanilla, STL, STL (cluster) and Shrink; Broken fails before.
	if n := f.trainer.trained.Load(); n != 4 {
		t.Errorf("trained %d classifiers, want 4", n)
	}
}
