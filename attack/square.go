package attack

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// SquareOptions configures the Square attack.
type SquareOptions struct {
	// Budget bounds the perturbation; its norm selects the variant
	// (L-infinity or L2, the latter with radius Eps*||x0||_2 per image).
	// Default: L-infinity 0.031 (8/255), AutoAttack's CIFAR-10 setting.
	Budget Budget
	// MaxQueries bounds the model evaluations of each image during the
	// search, the initial point included. Default 5000 (AutoAttack's
	// n_queries).
	MaxQueries int
	// PInit is the initial fraction p of the image's pixels a square
	// covers; p is halved along the schedule of Andriushchenko et al.
	// (section 3), rescaled to MaxQueries. Default 0.8 (AutoAttack's
	// p_init).
	PInit float64
	// Seed seeds the random squares. Default 0 (AutoAttack's seed).
	Seed uint64
	// Targeted makes the labels passed to Run target classes: the margin
	// max_{j!=t} z_j - z_t is minimized. Default false.
	Targeted bool
}

// DefaultSquareOptions returns AutoAttack's Square at L-infinity 8/255:
// 5000 queries, p_init 0.8.
func DefaultSquareOptions() SquareOptions {
	return SquareOptions{Budget: Budget{Norm: LInf, Eps: 0.031}, MaxQueries: 5000, PInit: 0.8}
}

// Validate checks the budget, MaxQueries >= 1 and PInit in (0, 1].
// Errors are *OptionError or *BudgetError.
func (o SquareOptions) Validate() error {
	if o.Budget.Norm == L2Z {
		return optErr("Square", "Budget", o.Budget, "the l2z norm is supported by FGSM, BIM, DeepFool and CW only")
	}
	if err := o.Budget.Validate(); err != nil {
		return err
	}
	if o.MaxQueries < 1 {
		return optErr("Square", "MaxQueries", o.MaxQueries, "must be at least 1")
	}
	if !(o.PInit > 0 && o.PInit <= 1) {
		return optErr("Square", "PInit", o.PInit, "must be in (0, 1]")
	}
	return nil
}

// QueryResult is the outcome of a score-based attack with its cost.
type QueryResult struct {
	*Result
	// Queries[i] is the number of model evaluations (forward passes of
	// one image) the search spent on image i: 0 for an image already
	// successful on x0, at most MaxQueries. The clean prediction and the
	// prediction of the returned image, made for every image, are not
	// counted.
	Queries []int
}

// Square is the Square attack of Andriushchenko, Croce, Flammarion and
// Hein (ECCV 2020), a score-based black-box attack: it only reads the
// model's logits (Model.InputGrad is never called). A random search
// minimizes the margin loss z_y - max_{j!=y} z_j (targeted: max_{j!=t} z_j
// - z_t): each query perturbs the best point so far in a random square
// window of side about sqrt(p*H*W), the same window in every channel, and
// keeps the candidate if it lowers the loss or succeeds. An image stops at
// its first success.
//
// L-infinity (Algorithm 2): the start is x0 + r*sign per column and
// channel (vertical stripes), a candidate sets the window to x0 + r*sign
// per channel, redrawn when that changes nothing. L2 (Algorithm 3): the
// start is a grid of squares carrying the "eta" pattern of centred
// rectangles of alternating sign; a candidate moves the perturbation's
// mass of a second random window into the first with a fresh eta pattern,
// rescaled so that the whole perturbation has L2 norm r before clipping.
// The window side s follows p(i) = PInit / 2^j, halved after the
// iterations {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000} of 10,000,
// rescaled to MaxQueries; s is at least 1 (L2: at least 3 and odd) and at
// most min(H, W). Every point is projected onto the budget and [0,1].
//
// Each image draws its own windows (AutoAttack shares one per iteration
// across the batch). Result.Passes counts the batched forward passes of
// the search (Square runs no backward pass); RunQueries also returns the
// queries per image.
type Square struct{ holder[SquareOptions] }

// NewSquare validates o and returns the attack.
func NewSquare(o SquareOptions) (*Square, error) {
	h, err := newHolder(o)
	if err != nil {
		return nil, err
	}
	return &Square{h}, nil
}

// Options returns the attack's validated options.
func (a *Square) Options() SquareOptions { return a.opts }

func (o SquareOptions) budget() Budget { return o.Budget }
func (o SquareOptions) targeted() bool { return o.Targeted }

// Name returns e.g. "Square-linf0.031" or "Square-0.04".
func (a *Square) Name() string { return "Square" + budgetSuffix(a.opts.Budget) }

// Run implements Attack: RunQueries without the query counts.
func (a *Square) Run(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*Result, error) {
	r, err := a.RunQueries(ctx, m, x, labels)
	if err != nil {
		return nil, err
	}
	return r.Result, nil
}

// squareP returns p after it queries of a budget of maxQueries: PInit
// halved at each threshold the rescaled count passes.
func squareP(pInit float64, it, maxQueries int) float64 {
	it = int(float64(it) / float64(maxQueries) * 10000)
	p := pInit
	for _, th := range []int{10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000} {
		if it > th {
			p /= 2
		}
	}
	return p
}

// squareSide returns the window side for p on an h x w image.
func squareSide(norm Norm, p float64, h, w int) int {
	s := int(math.RoundToEven(math.Sqrt(p * float64(h*w))))
	if norm == LInf {
		s = max(s, 1)
	} else if s = max(s, 3); s%2 == 0 {
		s++
	}
	return min(s, h, w)
}

// RunQueries runs the attack and returns the result with the queries each
// image cost. Errors are those of Attack.Run.
func (a *Square) RunQueries(ctx context.Context, m Model, x *tensor.Tensor, labels []int) (*QueryResult, error) {
	b, err := checkInput(m, x, labels)
	if err != nil {
		return nil, err
	}
	_, clean, err := cleanPass(ctx, b, m, x)
	if err != nil {
		return nil, err
	}
	o := a.opts
	s := &squareSearch{b: b, bud: o.Budget, x0: x.Data, r: radii(o.Budget, x.Data, b.n, b.d),
		rng:  rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15)),
		best: append([]float32(nil), x.Data...), cand: make([]float32, len(x.Data)),
		delta: make([]float64, b.d), eta: map[int][]float64{}}
	bestLoss := make([]float64, b.n)
	queries := make([]int, b.n)
	var active []int
	for i := range clean {
		if !succeeded(clean[i], labels[i], o.Targeted) {
			active = append(active, i)
		}
	}
	passes := 0
	for it := 0; it < o.MaxQueries && len(active) > 0; it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		side := squareSide(o.Budget.Norm, squareP(o.PInit, it-1, o.MaxQueries), b.h, b.w)
		for _, i := range active {
			switch {
			case it == 0 && o.Budget.Norm == LInf:
				s.stripes(i)
			case it == 0:
				s.grid(i)
			case o.Budget.Norm == LInf:
				s.proposeLInf(i, side)
			default:
				s.proposeL2(i, side)
			}
		}
		z, err := s.logits(ctx, m, active)
		if err != nil {
			return nil, err
		}
		passes++
		pred := z.ArgmaxRows(nil)
		next := active[:0]
		for a, i := range active {
			queries[i]++
			loss := squareMargin(z.Data[a*b.k:(a+1)*b.k], labels[i], o.Targeted)
			ok := succeeded(pred[a], labels[i], o.Targeted)
			if it == 0 || ok || loss < bestLoss[i] {
				bestLoss[i] = loss
				copy(s.best[i*b.d:(i+1)*b.d], s.cand[i*b.d:(i+1)*b.d])
			}
			if !ok {
				next = append(next, i)
			}
		}
		active = next
	}
	adv := &tensor.Tensor{Shape: append([]int(nil), x.Shape...), Data: s.best}
	r, err := finish(ctx, b, m, x, adv, clean, labels, o.Targeted, passes)
	if err != nil {
		return nil, err
	}
	return &QueryResult{Result: r, Queries: queries}, nil
}

// squareMargin is the margin loss Square minimizes: z_y - max_{j!=y} z_j,
// or targeted max_{j!=t} z_j - z_t.
func squareMargin(row []float32, label int, targeted bool) float64 {
	_, other := bestOther(row, label)
	m := float64(row[label]) - float64(other)
	if targeted {
		return -m
	}
	return m
}

// squareSearch holds the points of the search over a batch: the best
// point and the candidate of each image (flat, d values per image).
type squareSearch struct {
	b          batch
	bud        Budget
	x0         []float32
	r          []float64
	rng        *rand.Rand
	best, cand []float32
	delta      []float64         // scratch, one image
	eta        map[int][]float64 // eta patterns by side
}

// logits evaluates the candidates of the images idx in one batch.
func (s *squareSearch) logits(ctx context.Context, m Model, idx []int) (*tensor.Tensor, error) {
	d := s.b.d
	sb := s.b
	sb.n = len(idx)
	xa := tensor.New(len(idx), s.b.c, s.b.h, s.b.w)
	for a, i := range idx {
		copy(xa.Data[a*d:(a+1)*d], s.cand[i*d:(i+1)*d])
	}
	return sb.logits(ctx, m, xa)
}

// sign returns -1 or +1 with equal probability.
func (s *squareSearch) sign() float64 {
	if s.rng.IntN(2) == 0 {
		return -1
	}
	return 1
}

// image returns image i's slices of x0, the best point and the candidate.
func (s *squareSearch) image(i int) (x0, best, cand []float32) {
	lo, hi := i*s.b.d, (i+1)*s.b.d
	return s.x0[lo:hi], s.best[lo:hi], s.cand[lo:hi]
}

// stripes sets image i's candidate to the L-infinity start: x0 + r*sign,
// one sign per channel and column.
func (s *squareSearch) stripes(i int) {
	x0, _, cand := s.image(i)
	c, h, w := s.b.c, s.b.h, s.b.w
	for ch := 0; ch < c; ch++ {
		for col := 0; col < w; col++ {
			v := s.sign() * s.r[i]
			for row := 0; row < h; row++ {
				j := (ch*h+row)*w + col
				cand[j] = float32(float64(x0[j]) + v)
			}
		}
	}
	project(s.bud, cand, x0, s.r[i:i+1], s.b.d)
}

// proposeLInf sets image i's candidate to its best point with a random
// side x side window moved to x0 + r*sign (one sign per channel), redrawn
// a few times when the window would not change.
func (s *squareSearch) proposeLInf(i, side int) {
	x0, best, cand := s.image(i)
	c, h, w := s.b.c, s.b.h, s.b.w
	vh, vw := s.rng.IntN(h-side+1), s.rng.IntN(w-side+1)
	for try := 0; try < 10; try++ {
		copy(cand, best)
		for ch := 0; ch < c; ch++ {
			v := s.sign() * s.r[i]
			for row := vh; row < vh+side; row++ {
				for col := vw; col < vw+side; col++ {
					j := (ch*h+row)*w + col
					cand[j] = float32(float64(x0[j]) + v)
				}
			}
		}
		project(s.bud, cand, x0, s.r[i:i+1], s.b.d)
		for j := range cand {
			if cand[j] != best[j] {
				return
			}
		}
	}
}

// etaRect returns the x by y pattern of centred rectangles of
// Andriushchenko et al.'s L2 update, with unit L2 norm: the entry at
// Chebyshev distance q from the centre (x/2, y/2) is sum_{k=q}^{M-1}
// 1/(k+1)^2, M = max(x/2, y/2) + 1.
func etaRect(x, y int) []float64 {
	out := make([]float64, x*y)
	m := max(x/2, y/2) + 1
	for i := 0; i < x; i++ {
		for j := 0; j < y; j++ {
			q := max(absInt(i-x/2), absInt(j-y/2))
			for k := q; k < m; k++ {
				out[i*y+j] += 1 / float64((k+1)*(k+1))
			}
		}
	}
	unitL2(out)
	return out
}

func absInt(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// unitL2 scales v to unit L2 norm (a zero v is left as is).
func unitL2(v []float64) {
	n := 0.0
	for _, x := range v {
		n += x * x
	}
	if n == 0 {
		return
	}
	n = math.Sqrt(n)
	for j := range v {
		v[j] /= n
	}
}

// etaPattern returns a side x side pattern of unit L2 norm: the top
// side/2 rows etaRect, the others minus etaRect, transposed with
// probability 1/2.
func (s *squareSearch) etaPattern(side int) []float64 {
	e, ok := s.eta[side]
	if !ok {
		top, bottom := etaRect(side/2, side), etaRect(side-side/2, side)
		e = append(top, bottom...)
		for j := len(top); j < len(e); j++ {
			e[j] = -e[j]
		}
		unitL2(e)
		s.eta[side] = e
	}
	if s.rng.IntN(2) == 0 {
		return e
	}
	t := make([]float64, len(e))
	for r := 0; r < side; r++ {
		for c := 0; c < side; c++ {
			t[c*side+r] = e[r*side+c]
		}
	}
	return t
}

// setL2 sets image i's candidate to clip(x0 + r*delta/||delta||_2, 0, 1),
// projected onto the budget.
func (s *squareSearch) setL2(i int) {
	x0, _, cand := s.image(i)
	n := 0.0
	for _, v := range s.delta {
		n += v * v
	}
	f := s.r[i] / (math.Sqrt(n) + 1e-12)
	for j, v := range s.delta {
		cand[j] = float32(float64(x0[j]) + v*f)
	}
	project(s.bud, cand, x0, s.r[i:i+1], s.b.d)
}

// grid sets image i's candidate to the L2 start: squares of side H/5 on a
// grid, each with an eta pattern of random sign per channel.
func (s *squareSearch) grid(i int) {
	c, h, w := s.b.c, s.b.h, s.b.w
	side := max(h/5, 1)
	start := max((h-5*side)/2, 0)
	clear(s.delta)
	for gr := 0; gr < h/side; gr++ {
		for gc := 0; gc < w/side; gc++ {
			vh, vw := start+gr*side, start+gc*side
			e := s.etaPattern(side)
			for ch := 0; ch < c; ch++ {
				sg := s.sign()
				for r := 0; r < side && vh+r < h; r++ {
					for q := 0; q < side && vw+q < w; q++ {
						s.delta[(ch*h+vh+r)*w+vw+q] += sg * e[r*side+q]
					}
				}
			}
		}
	}
	s.setL2(i)
}

// proposeL2 sets image i's candidate to its best point with the
// perturbation of a second random window moved into a first one, on top
// of a fresh eta pattern (Algorithm 3 as in AutoAttack's implementation):
// per channel, the first window receives eta*sign + delta_W1/||delta_W1||
// rescaled to norm sqrt(max(r^2 - ||delta||^2, 0)/C + ||delta_{W1 u W2}||^2),
// the second window is cleared, and the whole perturbation rescaled to
// norm r.
func (s *squareSearch) proposeL2(i, side int) {
	x0, best, _ := s.image(i)
	c, h, w := s.b.c, s.b.h, s.b.w
	nimg := 0.0
	for j := range s.delta {
		s.delta[j] = float64(best[j]) - float64(x0[j])
		nimg += s.delta[j] * s.delta[j]
	}
	vh, vw := s.rng.IntN(h-side+1), s.rng.IntN(w-side+1)
	vh2, vw2 := s.rng.IntN(h-side+1), s.rng.IntN(w-side+1)
	in := func(r, q, ah, aw int) bool { return r >= ah && r < ah+side && q >= aw && q < aw+side }
	e := s.etaPattern(side)
	win := make([]float64, side*side)
	for ch := 0; ch < c; ch++ {
		plane := s.delta[ch*h*w : (ch+1)*h*w]
		n1, nu := 0.0, 0.0 // ||delta_W1||^2, ||delta_{W1 u W2}||^2
		for r := 0; r < h; r++ {
			for q := 0; q < w; q++ {
				v := plane[r*w+q]
				if in(r, q, vh, vw) {
					n1 += v * v
				}
				if in(r, q, vh, vw) || in(r, q, vh2, vw2) {
					nu += v * v
				}
			}
		}
		sg := s.sign()
		for r := 0; r < side; r++ {
			for q := 0; q < side; q++ {
				win[r*side+q] = sg*e[r*side+q] + plane[(vh+r)*w+vw+q]/(math.Sqrt(n1)+1e-12)
			}
		}
		unitL2(win)
		f := math.Sqrt(math.Max(s.r[i]*s.r[i]-nimg, 0)/float64(c) + nu)
		for r := 0; r < side; r++ {
			for q := 0; q < side; q++ {
				plane[(vh2+r)*w+vw2+q] = 0
			}
		}
		for r := 0; r < side; r++ {
			for q := 0; q < side; q++ {
				plane[(vh+r)*w+vw+q] = win[r*side+q] * f
			}
		}
	}
	s.setL2(i)
}
