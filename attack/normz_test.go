package attack

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// TestDissimilarityZHand checks the guo measure on a case computed by
// hand: one image of two 1x1 channels, x0 = (0.5, 0.2), x_adv =
// (0.55, 0.4), mean (0.4, 0.3), std (0.2, 0.5). Then z0 = (0.5, -0.2),
// z_adv - z0 = (0.25, 0.4), and ||z_adv - z0||/||z0|| =
// sqrt(0.2225/0.29) = 0.875917...; on the pixels it would be
// sqrt(0.0425/0.29) = 0.382818...
func TestDissimilarityZHand(t *testing.T) {
	x0, _ := tensor.FromData([]float32{0.5, 0.2}, 1, 2, 1, 1)
	adv, _ := tensor.FromData([]float32{0.55, 0.4}, 1, 2, 1, 1)
	n := Normalization{Mean: []float64{0.4, 0.3}, Std: []float64{0.2, 0.5}}
	got, err := DissimilarityZ(adv, x0, n)
	if err != nil {
		t.Fatal(err)
	}
	if want := math.Sqrt(0.2225 / 0.29); math.Abs(got[0]-want) > 1e-6 {
		t.Errorf("DissimilarityZ = %.9f, want %.9f", got[0], want)
	}
	pix, _, _ := Distances(adv, x0)
	if want := math.Sqrt(0.0425 / 0.29); math.Abs(pix[0]-want) > 1e-6 {
		t.Errorf("pixel dissimilarity = %.9f, want %.9f", pix[0], want)
	}
	if same, _ := DissimilarityZ(x0, x0, n); same[0] != 0 {
		t.Errorf("x0 against itself: %v", same[0])
	}
	var se *tensor.ShapeError
	if _, err := DissimilarityZ(adv, x0, Normalization{Mean: []float64{0}, Std: []float64{1}}); !errors.As(err, &se) {
		t.Errorf("one channel of normalization for two: %v", err)
	}
	if _, err := DissimilarityZ(adv, x0, Normalization{Mean: []float64{0, 0}, Std: []float64{1, 0}}); err == nil {
		t.Error("zero std accepted")
	}
}

// zFixture is an untrained 3-channel model and images in [0.2, 0.8] with
// a CIFAR-like normalization whose deviations differ per channel.
func zFixture() (*mlp, *tensor.Tensor, []int, Normalization) {
	rng := rand.New(rand.NewPCG(21, 23))
	m := newMLP(rng, 3, 4, 4, 12, 4)
	x := tensor.New(6, 3, 4, 4)
	for j := range x.Data {
		x.Data[j] = float32(0.2 + 0.6*rng.Float64())
	}
	labels := []int{0, 1, 2, 3, 0, 1}
	return m, x, labels, Normalization{Mean: []float64{0.49, 0.48, 0.45}, Std: []float64{0.15, 0.3, 0.6}}
}

// TestL2ZBudgets checks the guo budgets on every image: FGSM spends
// exactly eps in the normalized space (no pixel clips here) with the same
// step on every normalized coordinate, and BIM, DeepFool and CW never
// exceed it.
func TestL2ZBudgets(t *testing.T) {
	m, x, labels, n := zFixture()
	const eps = 0.05
	b := Budget{Norm: L2Z, Eps: eps, Normalization: &n}
	ctx := context.Background()
	fgsm, err := NewFGSM(FGSMOptions{Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	bo := DefaultBIMOptions()
	bo.Budget = b
	bim, err := NewBIM(bo)
	if err != nil {
		t.Fatal(err)
	}
	do := DefaultDeepFoolOptions()
	do.Budget = b
	df, err := NewDeepFool(do)
	if err != nil {
		t.Fatal(err)
	}
	cw, err := NewCW(fastCW(b))
	if err != nil {
		t.Fatal(err)
	}
	plane := 16
	for _, a := range []Attack{fgsm, bim, df, cw} {
		r, err := a.Run(ctx, m, x, labels)
		if err != nil {
			t.Fatalf("%s: %v", a.Name(), err)
		}
		dz, err := DissimilarityZ(r.Adv, x, n)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range dz {
			// FGSM spends the budget in one float32 step, which may
			// land a rounding error above it; the others project.
			if tol := map[bool]float64{true: 1e-6, false: 1e-9}[a == Attack(fgsm)]; v > eps*(1+tol) {
				t.Errorf("%s image %d: dissimilarity on normalized tensors %.9f > %v", a.Name(), i, v, eps)
			}
			if a == Attack(fgsm) && math.Abs(v-eps) > 1e-5 {
				t.Errorf("FGSM image %d: spent %.9f, want exactly %v", i, v, eps)
			}
		}
		if a != Attack(fgsm) {
			continue
		}
		// Every moved coordinate moved by the same amount in z.
		step := -1.0
		for j, v := range r.Adv.Data {
			if j%(3*plane) == 0 {
				step = -1 // a new image, a new radius
			}
			dzj := math.Abs(float64(v)-float64(x.Data[j])) / n.Std[(j%(3*plane))/plane]
			if dzj == 0 {
				continue
			}
			if step < 0 {
				step = dzj
			} else if math.Abs(dzj-step) > 1e-5*step {
				t.Fatalf("FGSM value %d: normalized step %v, others %v", j, dzj, step)
			}
		}
	}
	// The pixel measure differs from the normalized one.
	r, _ := fgsm.Run(ctx, m, x, labels)
	if pix, _, _ := Distances(r.Adv, x); math.Abs(pix[0]-eps) < 1e-3 {
		t.Errorf("pixel dissimilarity %v equals the normalized budget: the normalization had no effect", pix[0])
	}
}

// TestL2ZRejected checks the attacks without an L2Z implementation and a
// normalization whose channels do not match the images.
func TestL2ZRejected(t *testing.T) {
	m, x, labels, n := zFixture()
	b := Budget{Norm: L2Z, Eps: 0.05, Normalization: &n}
	po := DefaultPGDOptions()
	po.Budget = b
	if _, err := NewPGD(po); err == nil {
		t.Error("PGD accepted an l2z budget")
	}
	ao := DefaultAPGDOptions()
	ao.Budget = b
	if _, err := NewAPGD(ao); err == nil {
		t.Error("APGD accepted an l2z budget")
	}
	so := DefaultSquareOptions()
	so.Budget = b
	if _, err := NewSquare(so); err == nil {
		t.Error("Square accepted an l2z budget")
	}
	one := Normalization{Mean: []float64{0.5}, Std: []float64{0.25}}
	a, err := NewFGSM(FGSMOptions{Budget: Budget{Norm: L2Z, Eps: 0.05, Normalization: &one}})
	if err != nil {
		t.Fatal(err)
	}
	var se *tensor.ShapeError
	if _, err := a.Run(context.Background(), m, x, labels); !errors.As(err, &se) {
		t.Errorf("one-channel normalization on 3-channel images: %v", err)
	}
	if !b.Equal(Budget{Norm: L2Z, Eps: 0.05, Normalization: &Normalization{Mean: n.Mean, Std: n.Std}}) || b.Equal(Budget{Norm: L2Z, Eps: 0.05, Normalization: &one}) {
		t.Error("Budget.Equal does not compare the normalization's values")
	}
}

// TestGuoProtocol checks the guo settings: the text's budgets measured on
// normalized tensors, BPDA unchanged, no rounding.
func TestGuoProtocol(t *testing.T) {
	want := map[string]Budget{PaperFGSM008: {Norm: L2Z, Eps: 0.08}, PaperFGSM004: {Norm: L2Z, Eps: 0.04}, PaperBIM: {Norm: L2Z, Eps: 0.04},
		PaperDeepFool: {Norm: L2Z, Eps: 0.04}, PaperCW: {Norm: L2Z, Eps: 0.04}, PaperBPDA: {Norm: LInf, Eps: 0.031}}
	for name, b := range want {
		s, err := ProtocolGuo.Setting(name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Budget.Equal(b) || s.Steps != 0 {
			t.Errorf("guo %s: %+v, want budget %v", name, s, b)
		}
	}
	if ProtocolGuo.Round8() {
		t.Error("guo rounds")
	}
	// Without the classifier's normalization the setting cannot be built.
	s, _ := ProtocolGuo.Setting(PaperFGSM008)
	if _, _, err := s.New(DefaultConfig()); err == nil {
		t.Error("guo FGSM built without a normalization")
	}
}
