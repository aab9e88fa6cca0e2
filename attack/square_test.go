package attack

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// scoresOnly is a Model for score-based attacks: it fails the test when
// the attack asks for a gradient and counts the images it forwards.
type scoresOnly struct {
	Model
	t      *testing.T
	images int
}

func (s *scoresOnly) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	s.images += x.Shape[0]
	return s.Model.Logits(ctx, x)
}

func (s *scoresOnly) InputGrad(context.Context, *tensor.Tensor, func(z, g *tensor.Tensor)) (*tensor.Tensor, *tensor.Tensor, error) {
	s.t.Error("a score-based attack asked for an input gradient")
	return nil, nil, errors.New("no gradients")
}

// TestSquareQueriesOnly runs Square on both norms against the undefended
// 10-class model through logits only: high success, budgets held, and the
// queries reported per image account for every image forwarded.
func TestSquareQueriesOnly(t *testing.T) {
	f := getFixture10(t)
	sat := saturated(f) // many pixels at 0 or 1: clipping bites
	for _, tc := range []struct {
		x          *tensor.Tensor
		budget     Budget
		maxQueries int
		minSuccess float64
	}{
		{f.x, Budget{Norm: LInf, Eps: 0.031}, 1000, 0.9},
		{f.x, Budget{Norm: L2Rel, Eps: 0.08}, 500, 0.9},
		{f.x, Budget{Norm: LInf, Eps: 0.02}, 50, 0},  // a budget too small: many images use every query
		{f.x, Budget{Norm: L2Rel, Eps: 0.02}, 50, 0}, // likewise
		{sat, Budget{Norm: LInf, Eps: 0.3}, 50, 0},
		{sat, Budget{Norm: L2Rel, Eps: 0.5}, 50, 0},
	} {
		o := DefaultSquareOptions()
		o.Budget, o.MaxQueries = tc.budget, tc.maxQueries
		a, err := NewSquare(o)
		if err != nil {
			t.Fatal(err)
		}
		m := &scoresOnly{Model: f.m, t: t}
		r, err := a.RunQueries(context.Background(), m, tc.x, f.labels)
		if err != nil {
			t.Fatal(err)
		}
		checkBudget(t, a.Name(), o.Budget, tc.x, r.Result)
		sum, most, succ := 0, 0, 0
		for i, q := range r.Queries {
			sum += q
			most = max(most, q)
			if q > o.MaxQueries || (q < 1 && tc.x == f.x) {
				t.Errorf("%s: image %d used %d queries, want 1 to %d", a.Name(), i, q, o.MaxQueries)
			}
			if r.Success[i] {
				succ += q
			} else if q != o.MaxQueries {
				t.Errorf("%s: image %d failed after %d of %d queries", a.Name(), i, q, o.MaxQueries)
			}
		}
		n := len(f.labels)
		// Each image is forwarded once clean and once for the result.
		if m.images != sum+2*n {
			t.Errorf("%s: model forwarded %d images, queries sum to %d (+%d clean and final)", a.Name(), m.images, sum, 2*n)
		}
		t.Logf("%s (%d queries): success %.3f, mean queries %.1f (successful %.1f), max %d, %d passes",
			a.Name(), o.MaxQueries, r.SuccessRate(), float64(sum)/float64(n), float64(succ)/math.Max(1, float64(n)*r.SuccessRate()), most, r.Passes)
		if r.SuccessRate() < tc.minSuccess {
			t.Errorf("%s: success %.3f, want at least %.2f", a.Name(), r.SuccessRate(), tc.minSuccess)
		}
		if r.Passes != most {
			t.Errorf("%s: %d batched passes, want the most queries of an image, %d", a.Name(), r.Passes, most)
		}
	}
}

// TestSquareTargetedAndStops checks the targeted margin, that images
// already successful cost no query, and seeding.
func TestSquareTargetedAndStops(t *testing.T) {
	f := getFixture10(t)
	targets := make([]int, len(f.labels))
	for i, y := range f.labels {
		targets[i] = (y + 1) % 10
	}
	targets[0] = f.labels[0] // reached on x0
	o := DefaultSquareOptions()
	o.Budget, o.MaxQueries, o.Targeted = Budget{Norm: LInf, Eps: 0.08}, 300, true
	a, err := NewSquare(o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := a.RunQueries(context.Background(), f.m, f.x, targets)
	if err != nil {
		t.Fatal(err)
	}
	checkBudget(t, a.Name(), o.Budget, f.x, r.Result)
	if r.Queries[0] != 0 || !r.Success[0] || !equalBits(r.Adv.Sample(0), f.x.Sample(0)) {
		t.Errorf("image already at its target: %d queries, success %v", r.Queries[0], r.Success[0])
	}
	checkTargetHits(t, a.Name(), r.Result, targets)
	again, err := a.Run(context.Background(), f.m, f.x, targets)
	if err != nil {
		t.Fatal(err)
	}
	if !equalBits(again.Adv, r.Adv) {
		t.Error("the same seed gave different results")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Run(ctx, f.m, f.x, targets); !errors.Is(err, context.Canceled) {
		t.Errorf("on a cancelled context: %v, want context.Canceled", err)
	}
}

func TestSquareSchedule(t *testing.T) {
	for _, tc := range []struct {
		it, max int
		want    float64
	}{
		{0, 10000, 0.8}, {10, 10000, 0.8}, {11, 10000, 0.4}, {50, 10000, 0.4}, {51, 10000, 0.2},
		{201, 10000, 0.1}, {8001, 10000, 0.8 / 512},
		{5, 5000, 0.8}, {6, 5000, 0.4}, {4999, 5000, 0.8 / 512}, // rescaled to 5000 queries
	} {
		if got := squareP(0.8, tc.it, tc.max); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("squareP(0.8, %d, %d) = %g, want %g", tc.it, tc.max, got, tc.want)
		}
	}
	for _, tc := range []struct {
		norm       Norm
		p          float64
		h, w, want int
	}{
		{LInf, 0.8, 32, 32, 29}, {LInf, 0.8 / 512, 32, 32, 1}, {LInf, 0.8, 8, 8, 7}, {LInf, 1, 4, 6, 4},
		{L2Rel, 0.8, 32, 32, 29}, {L2Rel, 0.1, 32, 32, 11}, {L2Rel, 0.01, 32, 32, 3}, {L2Rel, 0.8, 8, 8, 7},
	} {
		if got := squareSide(tc.norm, tc.p, tc.h, tc.w); got != tc.want {
			t.Errorf("squareSide(%s, %g, %d, %d) = %d, want %d", tc.norm, tc.p, tc.h, tc.w, got, tc.want)
		}
	}
	// The eta pattern: unit L2 norm, the top half (or, transposed, the
	// left half) positive, the other negative.
	s := &squareSearch{eta: map[int][]float64{}, rng: rand.New(rand.NewPCG(1, 1))}
	for _, side := range []int{1, 3, 4, 7} {
		for draw := 0; draw < 8; draw++ {
			e := s.etaPattern(side)
			n, rowsSplit, colsSplit := 0.0, true, true
			for r := 0; r < side; r++ {
				for c := 0; c < side; c++ {
					v := e[r*side+c]
					n += v * v
					rowsSplit = rowsSplit && (v > 0) == (r < side/2)
					colsSplit = colsSplit && (v > 0) == (c < side/2)
				}
			}
			if math.Abs(n-1) > 1e-12 || !(rowsSplit || colsSplit) {
				t.Fatalf("side %d: pattern %v: squared norm %g, halves of one sign %v/%v", side, e, n, rowsSplit, colsSplit)
			}
		}
	}
	// etaRect(3, 3): centre 1 + 1/4, the ring 1/4, then normalized.
	e := etaRect(3, 3)
	if r := e[4] / e[0]; math.Abs(r-5) > 1e-12 {
		t.Errorf("etaRect(3,3) centre/corner = %g, want 5", r)
	}
}

func TestSquareOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(o *SquareOptions)
		field string
	}{
		{"default", func(o *SquareOptions) {}, ""},
		{"l2", func(o *SquareOptions) { o.Budget = Budget{Norm: L2Rel, Eps: 0.05} }, ""},
		{"no queries", func(o *SquareOptions) { o.MaxQueries = 0 }, "MaxQueries"},
		{"p 0", func(o *SquareOptions) { o.PInit = 0 }, "PInit"},
		{"p above 1", func(o *SquareOptions) { o.PInit = 1.5 }, "PInit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultSquareOptions()
			tc.edit(&o)
			a, err := NewSquare(o)
			wantOptionErr(t, err, tc.field)
			if tc.field == "" {
				js, err := json.Marshal(a)
				var back SquareOptions
				if err != nil || json.Unmarshal(js, &back) != nil || back != o {
					t.Errorf("options round trip: %s, %v", js, err)
				}
			}
		})
	}
	a, _ := NewSquare(DefaultSquareOptions())
	if a.Name() != "Square-linf0.031" {
		t.Errorf("Name() = %q", a.Name())
	}
}
