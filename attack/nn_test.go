package attack

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// The classifiers of package nn are attack Models.
var _ Model = (*nn.Classifier)(nil)

// vggSmall returns a seeded, untrained vgg-small at 32 px and a batch of n
// random images with labels.
func vggSmall(tb testing.TB, n int) (*nn.Classifier, *tensor.Tensor, []int) {
	tb.Helper()
	c := nn.DefaultClassifierConfig()
	c.Threads = 2
	m, err := nn.NewClassifier(c)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	x := tensor.New(n, 3, 32, 32)
	for i := range x.Data {
		x.Data[i] = float32(0.2 + 0.6*rng.Float64())
	}
	z, err := m.Logits(context.Background(), x)
	if err != nil {
		tb.Fatal(err)
	}
	// Label each image with its clean prediction, so that every image is
	// correctly classified and untargeted attacks have work to do.
	return m, x, z.ArgmaxRows(nil)
}

// TestNNClassifier runs every attack, shortened, against nn's vgg-small and
// checks the budgets and the cross-entropy gradient through it.
func TestNNClassifier(t *testing.T) {
	if testing.Short() {
		t.Skip("vgg-small forward/backward passes")
	}
	m, x, labels := vggSmall(t, 3)
	ctx := context.Background()

	// Gradient of the summed cross-entropy against central differences.
	_, g, err := m.InputGrad(ctx, x, crossEntropySeed(labels, 10, false))
	if err != nil {
		t.Fatal(err)
	}
	loss := func(x *tensor.Tensor) float64 {
		z, err := m.Logits(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		p := make([]float64, 10)
		s := 0.0
		for i, y := range labels {
			softmax(p, z.Data[i*10:(i+1)*10])
			s -= math.Log(p[y])
		}
		return s
	}
	gmax := 0.0
	for _, v := range g.Data {
		gmax = math.Max(gmax, math.Abs(float64(v)))
	}
	for _, j := range []int{0, 777, 1500, 3072 + 100, 2*3072 + 3000} {
		xp, xm := x.Clone(), x.Clone()
		xp.Data[j] += 1e-2
		xm.Data[j] -= 1e-2
		num := (loss(xp) - loss(xm)) / float64(xp.Data[j]-xm.Data[j])
		if math.Abs(num-float64(g.Data[j])) > 0.05*gmax {
			t.Errorf("dL/dx[%d] = %g, central difference %g (max |grad| %g)", j, g.Data[j], num, gmax)
		}
	}

	l2 := Budget{Norm: L2Rel, Eps: 0.04}
	bim := DefaultBIMOptions()
	bim.Steps = 3
	df := DefaultDeepFoolOptions()
	df.MaxIter = 3
	cw := DefaultCWOptions()
	cw.BinarySteps, cw.MaxIter = 2, 5
	var attacks []Attack
	for _, mk := range []func() (Attack, error){
		func() (Attack, error) { return NewFGSM(FGSMOptions{Budget: l2}) },
		func() (Attack, error) { return NewBIM(bim) },
		func() (Attack, error) { return NewDeepFool(df) },
		func() (Attack, error) { return NewCW(cw) },
	} {
		a, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		attacks = append(attacks, a)
	}
	for _, a := range attacks {
		r, err := a.Run(ctx, m, x, labels)
		if err != nil {
			t.Fatalf("%s: %v", a.Name(), err)
		}
		for i, d := range r.Dissim {
			if d > 0.04*(1+1e-5) {
				t.Errorf("%s: image %d dissimilarity %g above 0.04", a.Name(), i, d)
			}
		}
		t.Logf("%s on vgg-small: success %.2f, dissimilarity %v, passes %d", a.Name(), r.SuccessRate(), r.Dissim, r.Passes)
	}
}

// BenchmarkVGGSmall measures the per-image cost of each of the paper's
// attacks on an untrained vgg-small at 32 px (batch of 8; CW shortened to
// 2 binary steps of 50 Adam steps). The cost per image and pass is the
// classifier's; an attack's cost is that times its passes.
func BenchmarkVGGSmall(b *testing.B) {
	m, x, labels := vggSmall(b, 8)
	for _, name := range PaperAttacks {
		a, err := PaperAttack(name, 1)
		if err != nil {
			b.Fatal(err)
		}
		if cw, ok := a.(*CW); ok {
			o := cw.Options()
			o.BinarySteps, o.MaxIter = 2, 50
			a, _ = NewCW(o)
		}
		b.Run(name, func(b *testing.B) {
			passes := 0
			for b.Loop() {
				r, err := a.Run(context.Background(), m, x, labels)
				if err != nil {
					b.Fatal(err)
				}
				passes += r.Passes
			}
			n := float64(b.N * len(labels))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n/1e6, "ms/image")
			b.ReportMetric(float64(passes)/float64(b.N), "passes")
		})
	}
}
