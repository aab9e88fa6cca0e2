package attack

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// TestUAP fits a universal perturbation on the test fixture's images under
// each norm and checks that it respects its budget, fools most images it
// was fitted on and many held-out ones far more than random noise of the
// same size, that Universal adds exactly v (clipped), and that the fit is
// deterministic under its seed.
func TestUAP(t *testing.T) {
	f := getFixture(t)
	fitX, evalX := f.x.Batch(0, 30), f.x.Batch(30, 60)
	evalY := f.labels[30:60]
	for _, tc := range []struct {
		name   string
		budget Budget
	}{
		{"l2", Budget{Norm: L2Rel, Eps: 0.1}},
		{"linf", Budget{Norm: LInf, Eps: 0.05}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultUAPOptions()
			o.Budget, o.FoolingRate, o.MaxPasses = tc.budget, 0.7, 5
			fit, err := FitUAP(context.Background(), f.m, fitX, o, progress.Nop)
			if err != nil {
				t.Fatal(err)
			}
			v := fit.V.Data
			switch tc.budget.Norm {
			case LInf:
				for _, p := range v {
					if math.Abs(float64(p)) > tc.budget.Eps+1e-7 {
						t.Fatalf("|v| = %g above the L-infinity budget %g", p, tc.budget.Eps)
					}
				}
			case L2Rel:
				var inv float64
				for i := range 30 {
					inv += 1 / l2(fitX.Data[i*64:(i+1)*64])
				}
				if want := tc.budget.Eps * 30 / inv; math.Abs(fit.Radius-want) > 1e-9 {
					t.Fatalf("radius %g, want %g", fit.Radius, want)
				}
				if n := l2(v); n > fit.Radius*(1+1e-6) {
					t.Fatalf("||v|| = %g above the radius %g", n, fit.Radius)
				}
			}
			t.Logf("fooling rate %.2f on the fitting images after %d passes, %d updates", fit.FoolingRate, fit.Passes, fit.Updates)
			if fit.FoolingRate < 0.4 {
				t.Errorf("fooling rate %.2f on the fitting images, want >= 0.4", fit.FoolingRate)
			}
			u, err := NewUniversal(fit, tc.budget)
			if err != nil {
				t.Fatal(err)
			}
			res, err := u.Run(context.Background(), f.m, evalX, evalY)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 30 {
				for j := range 64 {
					want := min(1, max(0, evalX.Data[i*64+j]+v[j]))
					if res.Adv.Data[i*64+j] != want {
						t.Fatalf("image %d pixel %d: %g, want clip(x+v) = %g", i, j, res.Adv.Data[i*64+j], want)
					}
				}
			}
			// The same perturbation with its signs scrambled fools far fewer.
			noise := fit.V.Clone()
			for j := range noise.Data {
				if j%2 == 1 {
					noise.Data[j] = -noise.Data[j]
				}
			}
			un, _ := NewUniversal(&UAPFit{V: noise}, tc.budget)
			rn, err := un.Run(context.Background(), f.m, evalX, evalY)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("held-out success %.2f, sign-scrambled %.2f", res.SuccessRate(), rn.SuccessRate())
			if res.SuccessRate() < rn.SuccessRate()+0.2 {
				t.Errorf("held-out success %.2f not clearly above the scrambled perturbation's %.2f", res.SuccessRate(), rn.SuccessRate())
			}
			again, err := FitUAP(context.Background(), f.m, fitX, o, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(again.V.Data, v) {
				t.Error("a second fit with the same seed differs")
			}
		})
	}
}

func TestUAPBadInput(t *testing.T) {
	f := getFixture(t)
	for _, tc := range []struct {
		name string
		o    func(*UAPOptions)
		x    *tensor.Tensor
	}{
		{"fooling rate 0", func(o *UAPOptions) { o.FoolingRate = 0 }, f.x},
		{"no passes", func(o *UAPOptions) { o.MaxPasses = 0 }, f.x},
		{"one candidate", func(o *UAPOptions) { o.Candidates = 1 }, f.x},
		{"budget above 1", func(o *UAPOptions) { o.Budget.Eps = 2 }, f.x},
		{"zero image", func(o *UAPOptions) {}, tensor.New(2, fixC, fixH, fixW)},
		{"wrong shape", func(o *UAPOptions) {}, tensor.New(2, fixC, fixH, fixW+1)},
		{"nil", func(o *UAPOptions) {}, nil},
	} {
		o := DefaultUAPOptions()
		tc.o(&o)
		if _, err := FitUAP(context.Background(), f.m, tc.x, o, nil); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := NewUniversal(&UAPFit{V: tensor.New(2, 1, 2, 2)}, DefaultUAPOptions().Budget); err == nil {
		t.Error("NewUniversal accepted a batch of perturbations")
	}
	nan := &UAPFit{V: tensor.New(1, 1, 2, 2)}
	nan.V.Data[1] = float32(math.NaN())
	if _, err := NewUniversal(nan, DefaultUAPOptions().Budget); err == nil {
		t.Error("NewUniversal accepted a NaN perturbation")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FitUAP(ctx, f.m, f.x, DefaultUAPOptions(), nil); err == nil {
		t.Error("FitUAP ignored a cancelled context")
	}
}
