//go:build !purego

package defense_test

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/tensor"
)

// linearModel is a tiny classifier, logits = W x, as an attack.Model.
type linearModel struct {
	c, h, w, k int
	wt         []float32 // (K, C*H*W)
}

func (m *linearModel) InputShape() (int, int, int) { return m.c, m.h, m.w }
func (m *linearModel) NumClasses() int             { return m.k }

func (m *linearModel) Logits(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n, d := x.Shape[0], m.c*m.h*m.w
	z := tensor.New(n, m.k)
	for i := 0; i < n; i++ {
		for k := 0; k < m.k; k++ {
			var s float32
			for j, v := range x.Data[i*d : (i+1)*d] {
				s += m.wt[k*d+j] * v
			}
			z.Data[i*m.k+k] = s
		}
	}
	return z, nil
}

func (m *linearModel) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, _ := m.Logits(ctx, x)
	g := tensor.New(z.Shape...)
	seed(z, g)
	n, d := x.Shape[0], m.c*m.h*m.w
	gx := tensor.New(x.Shape...)
	for i := 0; i < n; i++ {
		for k := 0; k < m.k; k++ {
			gk := g.Data[i*m.k+k]
			for j := range gx.Data[i*d : (i+1)*d] {
				gx.Data[i*d+j] += gk * m.wt[k*d+j]
			}
		}
	}
	return z, gx, nil
}

// TestPGDThroughImplicitRoute (not in the purego build, whose FFTs make
// it several times slower; csc's tests check the routes there) attacks a tiny defended classifier (a random
// linear model on 16x16 crops of CIFAR-10 sample images behind the STL
// with the paper's dictionary; labels are the defended model's clean
// predictions) with PGD at equal steps through BPDA and through the exact
// routes, and counts the images each leaves misclassified by the real
// defended model and the mean logit margin of the label over the best
// other class. The implicit route must fool at least as many images as
// BPDA and leave a lower mean margin (measured at L-infinity 0.03 on 6
// images: 0 fooled, mean margin 6.08 through BPDA; 1 image, 4.86 through
// the implicit route; 1 image, 4.90 through the unrolled one).
func TestPGDThroughImplicitRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("about 6 s of CPU in projections")
	}
	ctx := context.Background()
	dict, err := csc.ReadDictionary(filepath.Join("testdata", "stl", "dict-cifar10.npy"))
	if err != nil {
		t.Fatal(err)
	}
	proj, err := defense.CSCProjector(dict, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	stl, err := defense.NewSTL(proj)
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := dataset.Load(dataset.DefaultSpec)
	if err != nil {
		t.Fatal(err)
	}
	const n, s = 6, 12
	full := test.Head(n).Images
	x := tensor.New(n, 3, s, s)
	for i := 0; i < n*3; i++ {
		for y := 0; y < s; y++ {
			copy(x.Data[(i*s+y)*s:(i*s+y+1)*s], full.Data[(i*32+y+10)*32+10:])
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	m := &linearModel{c: 3, h: s, w: s, k: 4, wt: make([]float32, 4*3*s*s)}
	for i := range m.wt {
		m.wt[i] = float32(rng.NormFloat64())
	}
	bpda, _ := attack.NewBPDA(stl, m, nil)
	z, err := bpda.Logits(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	labels := z.ArgmaxRows(nil)
	for _, eps := range []float64{0.03} {
		opt := attack.DefaultPGDOptions()
		opt.Budget.Eps, opt.Steps = eps, 10
		pgd, err := attack.NewPGD(opt)
		if err != nil {
			t.Fatal(err)
		}
		fooled := map[string]int{}
		margin := map[string]float64{}
		for _, route := range defense.GradientRoutes() {
			v, err := defense.GradientRoute(stl, route, defense.GradientOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var approx attack.Approx
			if v != nil {
				approx = v
			}
			target, _ := attack.NewBPDA(stl, m, approx)
			res, err := pgd.Run(ctx, target, x, labels)
			if err != nil {
				t.Fatal(err)
			}
			za, err := bpda.Logits(ctx, res.Adv)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range za.ArgmaxRows(nil) {
				if p != labels[i] {
					fooled[route]++
				}
				best := float32(-1e30)
				for k := 0; k < m.k; k++ {
					if k != labels[i] {
						best = max(best, za.Data[i*m.k+k])
					}
				}
				margin[route] += float64(za.Data[i*m.k+labels[i]]-best) / n
			}
		}
		t.Logf("L-inf %.3f, PGD 10 steps, %d images: misclassified after BPDA %d, implicit %d, unrolled %d; mean margin %.3f, %.3f, %.3f",
			eps, n, fooled[defense.RouteBPDA], fooled[defense.RouteImplicit], fooled[defense.RouteUnrolled],
			margin[defense.RouteBPDA], margin[defense.RouteImplicit], margin[defense.RouteUnrolled])
		if fooled[defense.RouteImplicit] < fooled[defense.RouteBPDA] || margin[defense.RouteImplicit] >= margin[defense.RouteBPDA] {
			t.Errorf("L-inf %.3f: the implicit route fools %d images (mean margin %.3f), BPDA %d (%.3f)", eps,
				fooled[defense.RouteImplicit], margin[defense.RouteImplicit], fooled[defense.RouteBPDA], margin[defense.RouteBPDA])
		}
	}
}
