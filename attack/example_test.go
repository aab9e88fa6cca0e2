package attack_test

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/tensor"
)

// linear is a two-class model on 1x1x2 images: z0 = x0 - x1, z1 = x1 - x0.
type linear struct{}

func (linear) InputShape() (int, int, int) { return 1, 1, 2 }
func (linear) NumClasses() int             { return 2 }

func (linear) Logits(_ context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n := x.Shape[0]
	z := tensor.New(n, 2)
	for i := 0; i < n; i++ {
		d := x.Data[2*i] - x.Data[2*i+1]
		z.Data[2*i], z.Data[2*i+1] = d, -d
	}
	return z, nil
}

func (m linear) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	z, _ := m.Logits(ctx, x)
	g := tensor.New(z.Shape...)
	seed(z, g)
	gx := tensor.New(x.Shape...)
	for i := 0; i < x.Shape[0]; i++ {
		d := g.Data[2*i] - g.Data[2*i+1] // chain rule through z0 = -z1 = x0 - x1
		gx.Data[2*i], gx.Data[2*i+1] = d, -d
	}
	return z, gx, nil
}

func ExampleFGSM() {
	a, err := attack.NewFGSM(attack.FGSMOptions{Budget: attack.Budget{Norm: attack.LInf, Eps: 0.15}})
	if err != nil {
		panic(err)
	}
	x, _ := tensor.FromData([]float32{0.6, 0.4}, 1, 1, 1, 2)
	r, err := a.Run(context.Background(), linear{}, x, []int{0})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: prediction %d -> %d, adv %.2f, L-inf %.3f, success %v\n",
		a.Name(), r.CleanPred[0], r.AdvPred[0], r.Adv.Data, r.LInf[0], r.Success[0])
	// Output:
	// FGSM-linf0.15: prediction 0 -> 1, adv [0.45 0.55], L-inf 0.150, success true
}

func ExampleBPDA() {
	// Attack a defended classifier (here the identity "defense") with PGD,
	// the backward pass treating the transform as the identity.
	m, err := attack.Adaptive(attack.Identity{}, linear{}, nil, 1)
	if err != nil {
		panic(err)
	}
	o := attack.DefaultPGDOptions()
	o.Budget = attack.Budget{Norm: attack.LInf, Eps: 0.15}
	pgd, err := attack.NewPGD(o)
	if err != nil {
		panic(err)
	}
	x, _ := tensor.FromData([]float32{0.6, 0.4}, 1, 1, 1, 2)
	r, err := pgd.Run(context.Background(), m, x, []int{0})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s through %T: success %v, L-inf within budget %v\n", pgd.Name(), m, r.Success[0], r.LInf[0] <= 0.15)
	// Output:
	// PGD-linf0.15 through *attack.BPDA: success true, L-inf within budget true
}
