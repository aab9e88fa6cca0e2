package attack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// fast options keep the slow attacks quick in the table tests.
func fastCW(b Budget) CWOptions {
	o := DefaultCWOptions()
	o.Budget, o.BinarySteps, o.MaxIter = b, 4, 100
	return o
}

// attacksFor returns every attack at budget b, PGD with both losses.
func attacksFor(t *testing.T, b Budget) []Attack {
	t.Helper()
	var out []Attack
	add := func(a Attack, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	add(NewFGSM(FGSMOptions{Budget: b}))
	bo := DefaultBIMOptions()
	bo.Budget = b
	add(NewBIM(bo))
	po := DefaultPGDOptions()
	po.Budget = b
	add(NewPGD(po))
	po.Loss = LossCW
	add(NewPGD(po))
	do := DefaultDeepFoolOptions()
	do.Budget = b
	add(NewDeepFool(do))
	add(NewCW(fastCW(b)))
	return out
}

// saturated returns the fixture's images with contrast raised so that many
// pixels sit at 0 or 1 and clipping bites.
func saturated(f *fixture) *tensor.Tensor {
	x := f.x.Clone()
	for i, v := range x.Data {
		x.Data[i] = float32(math.Min(1, math.Max(0, float64(v-0.5)*6+0.5)))
	}
	return x
}

func TestBudgetsHold(t *testing.T) {
	f := getFixture(t)
	inputs := []struct {
		name string
		x    *tensor.Tensor
	}{{"interior", f.x}, {"saturated", saturated(f)}}
	budgets := []Budget{{Norm: L2Rel, Eps: 0.04}, {Norm: L2Rel, Eps: 0.5}, {Norm: LInf, Eps: 0.031}, {Norm: LInf, Eps: 0.3}}
	for _, in := range inputs {
		for _, b := range budgets {
			for _, a := range attacksFor(t, b) {
				t.Run(fmt.Sprintf("%s/%s", in.name, a.Name()), func(t *testing.T) {
					r, err := a.Run(context.Background(), f.m, in.x, f.labels)
					if err != nil {
						t.Fatal(err)
					}
					if !tensor.SameShape(r.Adv, in.x) {
						t.Fatalf("adv shape %v, want %v", r.Adv.Shape, in.x.Shape)
					}
					for j, v := range r.Adv.Data {
						if !(v >= 0 && v <= 1) {
							t.Fatalf("adv pixel %d = %v outside [0,1]", j, v)
						}
					}
					dis, linf, err := Distances(r.Adv, in.x)
					if err != nil {
						t.Fatal(err)
					}
					_, isFGSM := a.(*FGSM)
					for i := range dis {
						if dis[i] != r.Dissim[i] || linf[i] != r.LInf[i] {
							t.Fatalf("image %d: reported (%g, %g), measured (%g, %g)", i, r.Dissim[i], r.LInf[i], dis[i], linf[i])
						}
						got := dis[i]
						if b.Norm == LInf {
							got = linf[i]
						}
						limit := b.Eps
						if isFGSM {
							limit *= 1 + 1e-5 // exact up to float32 rounding
						}
						if got > limit {
							t.Fatalf("image %d: %s distance %.9g exceeds budget %g", i, b.Norm, got, b.Eps)
						}
						if isFGSM && in.name == "interior" && b.Eps < 0.1 && math.Abs(got-b.Eps) > 1e-5*b.Eps+1e-7 {
							t.Errorf("image %d: FGSM spent %.9g, want exactly %g", i, got, b.Eps)
						}
					}
				})
			}
		}
	}
}

func TestFGSMMatchesDefinition(t *testing.T) {
	f := getFixture(t)
	b := Budget{Norm: LInf, Eps: 0.02}
	a, err := NewFGSM(FGSMOptions{Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.Run(context.Background(), f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := f.m.InputGrad(context.Background(), f.x, crossEntropySeed(f.labels, fixK, false))
	if err != nil {
		t.Fatal(err)
	}
	for j, v := range f.x.Data {
		want := v
		if g.Data[j] > 0 {
			want += 0.02
		} else if g.Data[j] < 0 {
			want -= 0.02
		}
		if r.Adv.Data[j] != want {
			t.Fatalf("pixel %d: %v, want x0 + eps*sign(grad) = %v", j, r.Adv.Data[j], want)
		}
	}
	if r.Passes != 1 {
		t.Errorf("Passes = %d, want 1", r.Passes)
	}
}

func TestTargeted(t *testing.T) {
	f := getFixture(t)
	targets := make([]int, len(f.labels))
	for i, y := range f.labels {
		targets[i] = (y + 1) % fixK
	}
	po := DefaultPGDOptions()
	po.Budget, po.Targeted = Budget{Norm: L2Rel, Eps: 0.08}, true
	pgd, err := NewPGD(po)
	if err != nil {
		t.Fatal(err)
	}
	po.Loss = LossCW // the targeted margin loss
	pgdCW, err := NewPGD(po)
	if err != nil {
		t.Fatal(err)
	}
	co := fastCW(Budget{Norm: L2Rel, Eps: 0.08})
	co.Targeted = true
	cw, err := NewCW(co)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []Attack{pgd, pgdCW, cw} {
		r, err := a.Run(context.Background(), f.m, f.x, targets)
		if err != nil {
			t.Fatal(err)
		}
		hit := 0
		for i, p := range r.AdvPred {
			if r.Success[i] != (p == targets[i]) {
				t.Fatalf("%s: image %d success flag %v with prediction %d, target %d", a.Name(), i, r.Success[i], p, targets[i])
			}
			if p == targets[i] {
				hit++
			}
		}
		t.Logf("%s targeted: %d/%d reach the target", a.Name(), hit, len(targets))
		if hit < len(targets)*3/4 {
			t.Errorf("%s targeted: only %d/%d reach the target", a.Name(), hit, len(targets))
		}
	}
}

func TestPGDSeed(t *testing.T) {
	f := getFixture(t)
	run := func(seed uint64) *Result {
		o := DefaultPGDOptions()
		o.Steps, o.Seed = 3, seed
		a, err := NewPGD(o)
		if err != nil {
			t.Fatal(err)
		}
		r, err := a.Run(context.Background(), f.m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b, c := run(5), run(5), run(6)
	if !equalBits(a.Adv, b.Adv) {
		t.Error("PGD with the same seed gave different results")
	}
	if equalBits(a.Adv, c.Adv) {
		t.Error("PGD with different seeds gave identical results")
	}
}

func equalBits(a, b *tensor.Tensor) bool {
	if !tensor.SameShape(a, b) || len(a.Data) != len(b.Data) {
		return false
	}
	for i := range a.Data {
		if math.Float32bits(a.Data[i]) != math.Float32bits(b.Data[i]) {
			return false
		}
	}
	return true
}

func TestRunBatchedMatchesRun(t *testing.T) {
	f := getFixture(t)
	do := DefaultDeepFoolOptions()
	df, err := NewDeepFool(do)
	if err != nil {
		t.Fatal(err)
	}
	bim, err := NewBIM(DefaultBIMOptions())
	if err != nil {
		t.Fatal(err)
	}
	cw, err := NewCW(fastCW(Budget{Norm: L2Rel, Eps: 0.04}))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []Attack{bim, df, cw} {
		whole, err := a.Run(context.Background(), f.m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		var rep countReporter
		parts, err := RunBatched(context.Background(), a, f.m, f.x, f.labels, 7, &rep)
		if err != nil {
			t.Fatal(err)
		}
		if !equalBits(whole.Adv, parts.Adv) {
			t.Errorf("%s: batched result differs from one batch", a.Name())
		}
		for i := range whole.Success {
			if whole.Success[i] != parts.Success[i] || whole.Dissim[i] != parts.Dissim[i] {
				t.Fatalf("%s: image %d: batched figures differ", a.Name(), i)
			}
		}
		if rep.last != len(f.labels) || rep.calls != 1+(len(f.labels)+6)/7 {
			t.Errorf("%s: progress last %d after %d calls, want %d after %d", a.Name(), rep.last, rep.calls, len(f.labels), 1+(len(f.labels)+6)/7)
		}
	}
}

type countReporter struct{ calls, last int }

func (c *countReporter) Report(_ string, done, _ int, _ string) { c.calls++; c.last = done }

func TestCancel(t *testing.T) {
	f := getFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, a := range attacksFor(t, Budget{Norm: L2Rel, Eps: 0.04}) {
		if _, err := a.Run(ctx, f.m, f.x, f.labels); !errors.Is(err, context.Canceled) {
			t.Errorf("%s on a cancelled context: %v, want context.Canceled", a.Name(), err)
		}
	}
}

// wrongModel returns logits of the wrong shape.
type wrongModel struct{ *mlp }

func (w wrongModel) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return tensor.New(1, 2), nil
}

func (w wrongModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	return tensor.New(1, 2), tensor.New(1), nil
}

// nanModel returns NaN logits and gradients.
type nanModel struct{ *mlp }

func (w nanModel) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	z, err := w.mlp.Logits(ctx, x)
	if err == nil {
		z.Data[0] = float32(math.NaN())
	}
	return z, err
}

func (w nanModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, g, err := w.mlp.InputGrad(ctx, x, seed)
	if err == nil {
		g.Data[1] = float32(math.NaN())
	}
	return z, g, err
}

func TestBadInput(t *testing.T) {
	f := getFixture(t)
	x := f.x
	nan := x.Clone()
	nan.Data[17] = float32(math.NaN())
	big := x.Clone()
	big.Data[3] = 1.5
	small := tensor.New(2, 1, 4, 4)
	shortLabels := f.labels[:5]
	badLabel := append([]int(nil), f.labels...)
	badLabel[2] = fixK
	var shapeErr *tensor.ShapeError
	var nfErr *tensor.NonFiniteError
	var pixErr *PixelError
	var labErr *LabelError
	cases := []struct {
		name   string
		m      Model
		x      *tensor.Tensor
		labels []int
		target any
	}{
		{"NaN pixel", f.m, nan, f.labels, &nfErr},
		{"pixel above 1", f.m, big, f.labels, &pixErr},
		{"model/data shape mismatch", f.m, small, []int{0, 1}, &shapeErr},
		{"3-d batch", f.m, &tensor.Tensor{Shape: []int{60, 8, 8}, Data: x.Data}, f.labels, &shapeErr},
		{"mismatched labels", f.m, x, shortLabels, &shapeErr},
		{"label out of range", f.m, x, badLabel, &labErr},
		{"model returns wrong logits", wrongModel{f.m}, x, f.labels, &shapeErr},
		{"model returns NaN", nanModel{f.m}, x, f.labels, &nfErr},
	}
	for _, a := range attacksFor(t, Budget{Norm: L2Rel, Eps: 0.04}) {
		for _, c := range cases {
			_, err := a.Run(context.Background(), c.m, c.x, c.labels)
			if err == nil {
				t.Errorf("%s, %s: no error", a.Name(), c.name)
				continue
			}
			if !errors.As(err, c.target) {
				t.Errorf("%s, %s: error %v (%T) is not the expected type", a.Name(), c.name, err, err)
			}
		}
	}
	if _, err := (&FGSM{opts: DefaultFGSMOptions()}).Run(context.Background(), nil, x, f.labels); err == nil {
		t.Error("nil model: no error")
	}
}

func TestBadOptions(t *testing.T) {
	var be *BudgetError
	var oe *OptionError
	for _, b := range []Budget{{Norm: L2Rel, Eps: 0}, {Norm: L2Rel, Eps: -0.1}, {Norm: LInf, Eps: 1.5}, {Norm: L2Rel, Eps: math.NaN()}, {Norm: Norm(7), Eps: 0.1}, {Norm: L2Z, Eps: 0.04}, {Norm: L2Rel, Eps: 0.04, Normalization: &Normalization{Mean: []float64{0}, Std: []float64{1}}}} {
		if _, err := NewFGSM(FGSMOptions{Budget: b}); !errors.As(err, &be) {
			t.Errorf("FGSM budget %v: %v, want *BudgetError", b, err)
		}
		bo := DefaultBIMOptions()
		bo.Budget = b
		if _, err := NewBIM(bo); !errors.As(err, &be) {
			t.Errorf("BIM budget %v: %v, want *BudgetError", b, err)
		}
		co := DefaultCWOptions()
		co.Budget = b
		if _, err := NewCW(co); !errors.As(err, &be) {
			t.Errorf("CW budget %v: %v, want *BudgetError", b, err)
		}
	}
	if _, err := NewFGSM(FGSMOptions{Budget: Budget{Norm: LInf, Eps: 1}}); err != nil {
		t.Errorf("budget 1 rejected: %v", err)
	}
	bad := []struct {
		name string
		err  error
	}{
		{"BIM steps 0", func() error { o := DefaultBIMOptions(); o.Steps = 0; _, err := NewBIM(o); return err }()},
		{"PGD step frac 2", func() error { o := DefaultPGDOptions(); o.StepFrac = 2; _, err := NewPGD(o); return err }()},
		{"DeepFool overshoot -1", func() error { o := DefaultDeepFoolOptions(); o.Overshoot = -1; _, err := NewDeepFool(o); return err }()},
		{"DeepFool candidates 1", func() error { o := DefaultDeepFoolOptions(); o.Candidates = 1; _, err := NewDeepFool(o); return err }()},
		{"CW kappa NaN", func() error { o := DefaultCWOptions(); o.Kappa = math.NaN(); _, err := NewCW(o); return err }()},
		{"CW lr 0", func() error { o := DefaultCWOptions(); o.LearningRate = 0; _, err := NewCW(o); return err }()},
		{"CW binary steps 0", func() error { o := DefaultCWOptions(); o.BinarySteps = 0; _, err := NewCW(o); return err }()},
		{"EOT draws 0", func() error { _, err := NewEOT(getFixture(t).m, 0); return err }()},
	}
	for _, c := range bad {
		if !errors.As(c.err, &oe) {
			t.Errorf("%s: %v, want *OptionError", c.name, c.err)
		}
	}
	for _, o := range []interface{ Validate() error }{DefaultFGSMOptions(), DefaultBIMOptions(), DefaultPGDOptions(), DefaultDeepFoolOptions(), DefaultCWOptions()} {
		if err := o.Validate(); err != nil {
			t.Errorf("%T defaults invalid: %v", o, err)
		}
	}
}

func TestBPDAIdentityIsPlain(t *testing.T) {
	f := getFixture(t)
	b, err := NewBPDA(Identity{}, f.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	eot, err := NewEOT(b, 3)
	if err != nil {
		t.Fatal(err)
	}
	po := DefaultPGDOptions()
	po.Steps = 5
	pgd, _ := NewPGD(po)
	for _, a := range append(attacksFor(t, Budget{Norm: L2Rel, Eps: 0.04}), pgd) {
		plain, err := a.Run(context.Background(), f.m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		for _, wrapped := range []Model{b, eot} {
			got, err := a.Run(context.Background(), wrapped, f.x, f.labels)
			if err != nil {
				t.Fatal(err)
			}
			if !equalBits(plain.Adv, got.Adv) {
				t.Errorf("%s through %T(identity) differs from the plain attack", a.Name(), wrapped)
			}
		}
	}
}

func TestEOTDeterministicIsPlainGradient(t *testing.T) {
	f := getFixture(t)
	seed := crossEntropySeed(f.labels, fixK, false)
	z0, g0, err := f.m.InputGrad(context.Background(), f.x, seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, draws := range []int{1, 3, 10} {
		m, err := Adaptive(scale{s: 1}, f.m, nil, draws)
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEOT(m, draws)
		if err != nil {
			t.Fatal(err)
		}
		z, g, err := e.InputGrad(context.Background(), f.x, seed)
		if err != nil {
			t.Fatal(err)
		}
		if !equalBits(z, z0) || !equalBits(g, g0) {
			t.Errorf("EOT over %d draws of a deterministic transform differs from the plain gradient", draws)
		}
	}
}

// scale is a transform x -> s*x (+ noise of standard deviation sigma from
// its own seeded source when sigma > 0), with the exact VJP s*gy.
type scale struct {
	s, sigma float64
	rng      *rand.Rand
}

func (t scale) Name() string     { return "scale" }
func (t scale) Randomized() bool { return t.sigma > 0 }
func (t scale) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y := x.Clone()
	for i, v := range y.Data {
		u := t.s * float64(v)
		if t.sigma > 0 {
			u += t.sigma * t.rng.NormFloat64()
		}
		y.Data[i] = float32(u)
	}
	tensor.Clip(y.Data, 0, 1)
	return y, nil
}

func (t scale) VJP(_ context.Context, x, gy *tensor.Tensor) (*tensor.Tensor, error) {
	g := gy.Clone()
	for i := range g.Data {
		g.Data[i] *= float32(t.s)
	}
	return g, nil
}

func TestBPDAApproxAndEOTAverage(t *testing.T) {
	f := getFixture(t)
	seed := crossEntropySeed(f.labels, fixK, false)
	tr := scale{s: 0.9}
	y, _ := tr.Apply(context.Background(), f.x)
	_, gy, err := f.m.InputGrad(context.Background(), y, seed)
	if err != nil {
		t.Fatal(err)
	}
	// Identity backward: the gradient at T(x) as is.
	b, _ := NewBPDA(tr, f.m, nil)
	_, g, err := b.InputGrad(context.Background(), f.x, seed)
	if err != nil {
		t.Fatal(err)
	}
	if !equalBits(g, gy) {
		t.Error("BPDA identity backward is not the gradient at T(x)")
	}
	// Approx backward: the exact VJP 0.9*gy.
	b.Approx = tr
	_, g, err = b.InputGrad(context.Background(), f.x, seed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Data {
		if g.Data[i] != gy.Data[i]*0.9 {
			t.Fatalf("BPDA with Approx: grad[%d] = %g, want %g", i, g.Data[i], gy.Data[i]*0.9)
		}
	}
	// EOT averages: n draws of a randomized transform from a seeded source
	// give the mean of the n single-draw gradients.
	noisy := func() scale { return scale{s: 1, sigma: 0.01, rng: rand.New(rand.NewPCG(3, 4))} }
	single, _ := NewBPDA(noisy(), f.m, nil)
	sum := make([]float64, len(f.x.Data))
	for range 4 {
		_, g, err := single.InputGrad(context.Background(), f.x, seed)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range g.Data {
			sum[i] += float64(v)
		}
	}
	m, err := Adaptive(noisy(), f.m, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*EOT); !ok {
		t.Fatalf("Adaptive over a randomized transform is %T, want *EOT", m)
	}
	_, g, err = m.InputGrad(context.Background(), f.x, seed)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range g.Data {
		if v != float32(sum[i]/4) {
			t.Fatalf("EOT grad[%d] = %g, want the mean of the draws %g", i, v, sum[i]/4)
		}
	}
}

// badTransform changes the shape.
type badTransform struct{ Identity }

func (badTransform) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	return tensor.New(1), nil
}

func TestBPDABadTransform(t *testing.T) {
	f := getFixture(t)
	b, _ := NewBPDA(badTransform{}, f.m, nil)
	var se *tensor.ShapeError
	if _, err := b.Logits(context.Background(), f.x); !errors.As(err, &se) {
		t.Errorf("shape-changing transform: %v, want *tensor.ShapeError", err)
	}
	if _, err := NewBPDA(nil, f.m, nil); err == nil {
		t.Error("nil transform accepted")
	}
}

// TestDeepFoolShrinksBatch checks that images leave DeepFool's batch once
// misclassified: fewer images are forwarded than passes times the batch.
func TestDeepFoolShrinksBatch(t *testing.T) {
	f := getFixture(t)
	df, err := NewDeepFool(DefaultDeepFoolOptions())
	if err != nil {
		t.Fatal(err)
	}
	p0, i0 := f.m.passes.Load(), f.m.images.Load()
	r, err := df.Run(context.Background(), f.m, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	passes, images := f.m.passes.Load()-p0, f.m.images.Load()-i0
	n := int64(len(f.labels))
	// One clean forward, r.Passes gradient passes and one final forward.
	if passes != int64(r.Passes)+2 {
		t.Errorf("%d model passes, want %d", passes, r.Passes+2)
	}
	if images >= passes*n/2 {
		t.Errorf("%d images forwarded in %d passes of a batch of %d: the batch does not shrink", images, passes, n)
	}
	t.Logf("DeepFool: %d passes, %d images forwarded (%.1f per pass)", passes, images, float64(images)/float64(passes))
}

// TestEOTPGDDeterministic runs PGD through EOT over a randomized transform
// twice from the same seeds: the results are identical, and differ from
// the attack on the bare model.
func TestEOTPGDDeterministic(t *testing.T) {
	f := getFixture(t)
	o := DefaultPGDOptions()
	o.Steps = 5
	pgd, err := NewPGD(o)
	if err != nil {
		t.Fatal(err)
	}
	run := func(m Model) *Result {
		r, err := pgd.Run(context.Background(), m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	mk := func() Model {
		m, err := Adaptive(scale{s: 1, sigma: 0.05, rng: rand.New(rand.NewPCG(1, 2))}, f.m, nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b, plain := run(mk()), run(mk()), run(f.m)
	if !equalBits(a.Adv, b.Adv) {
		t.Error("PGD through EOT with the same seeds gave different results")
	}
	if equalBits(a.Adv, plain.Adv) {
		t.Error("PGD through EOT over a noisy transform equals the plain attack")
	}
	for i, l := range a.LInf {
		if l > o.Budget.Eps {
			t.Fatalf("image %d: L-inf %g above %g", i, l, o.Budget.Eps)
		}
	}
}

// quantize is a non-differentiable defense: pixels rounded to levels
// values. Its true gradient is zero almost everywhere.
type quantize struct{ levels float64 }

func (quantize) Name() string     { return "quantize" }
func (quantize) Randomized() bool { return false }
func (q quantize) Apply(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	y := x.Clone()
	for i, v := range y.Data {
		y.Data[i] = float32(math.Round(float64(v)*(q.levels-1)) / (q.levels - 1))
	}
	return y, nil
}

// masked is M∘T with its true (zero) input gradient: what a naive white-box
// attack on a quantizing defense sees.
type masked struct{ *BPDA }

func (m masked) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, g, err := m.BPDA.InputGrad(ctx, x, seed)
	if err != nil {
		return nil, nil, err
	}
	clear(g.Data)
	return z, g, nil
}

// TestBPDADefeatsGradientMasking: PGD against the quantizing defense with
// its true gradient does nothing, through BPDA it succeeds.
func TestBPDADefeatsGradientMasking(t *testing.T) {
	f := getFixture(t)
	b, err := NewBPDA(quantize{levels: 64}, f.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	clean := accuracyOf(t, b, f.x, f.labels)
	o := DefaultPGDOptions()
	o.Budget = Budget{Norm: LInf, Eps: 0.031}
	o.RandomStart = false
	pgd, err := NewPGD(o)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := pgd.Run(context.Background(), masked{b}, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := pgd.Run(context.Background(), b, f.x, f.labels)
	if err != nil {
		t.Fatal(err)
	}
	am, ab := rm.AdvAccuracy(f.labels), rb.AdvAccuracy(f.labels)
	t.Logf("defended accuracy: clean %.3f, PGD with the true gradient %.3f, PGD through BPDA %.3f", clean, am, ab)
	if clean < 0.9 || am != clean {
		t.Errorf("clean %.3f and masked-gradient PGD %.3f: want >= 0.9 and unchanged", clean, am)
	}
	if ab > clean-0.5 {
		t.Errorf("BPDA PGD accuracy %.3f, want at most clean %.3f - 0.5", ab, clean)
	}
}

// TestPGDRestarts: more restarts never lower the success rate, and the
// first run alone is the single-start result.
func TestPGDRestarts(t *testing.T) {
	f := getFixture(t)
	run := func(restarts int) *Result {
		o := DefaultPGDOptions()
		o.Budget, o.Steps, o.Restarts = Budget{Norm: L2Rel, Eps: 0.03}, 3, restarts
		a, err := NewPGD(o)
		if err != nil {
			t.Fatal(err)
		}
		r, err := a.Run(context.Background(), f.m, f.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	one, zero, four := run(1), run(0), run(4)
	if !equalBits(one.Adv, zero.Adv) {
		t.Error("Restarts 0 and 1 differ")
	}
	if four.Passes != 4*one.Passes {
		t.Errorf("4 restarts: %d passes, want %d", four.Passes, 4*one.Passes)
	}
	for i := range one.Success {
		if one.Success[i] && !four.Success[i] {
			t.Fatalf("image %d: lost by restarts", i)
		}
		if one.Success[i] && four.Dissim[i] != one.Dissim[i] {
			t.Fatalf("image %d: first successful run not kept", i)
		}
		if four.Dissim[i] > 0.03 {
			t.Fatalf("image %d: dissimilarity %g above the budget", i, four.Dissim[i])
		}
	}
	t.Logf("success: 1 start %.3f, 4 starts %.3f", one.SuccessRate(), four.SuccessRate())
}
