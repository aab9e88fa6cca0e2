// Package metrics holds the numbers an experiment reports: classification
// accuracy with a Wilson score 95% confidence interval, the peak
// signal-to-noise ratio used for the quality/robustness trade-off (paper,
// section 5.5 and Figure 6), the normalized L2 dissimilarity
// ||x_adv - x0||_2 / ||x0||_2 in which the paper states attack budgets
// (section 5.1), and class-balanced seeded subsets of a test set for the
// attacks too costly to run on all of it.
//
// All functions work on flat []float32 image data in [0,1] with an explicit
// per-image length; none of them keeps references to its arguments, and all
// are safe for concurrent use.
package metrics

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Z95 is the standard normal quantile of a two-sided 95% interval.
const Z95 = 1.959963984540054

// Accuracy is a proportion of correct predictions with its Wilson score 95%
// confidence interval.
type Accuracy struct {
	Correct int     `json:"correct"`
	N       int     `json:"n"`
	Value   float64 `json:"value"` // Correct / N; NaN when N == 0
	Lo      float64 `json:"lo"`    // lower end of the 95% interval
	Hi      float64 `json:"hi"`    // upper end of the 95% interval
}

// NewAccuracy returns correct/n with its Wilson 95% interval. n == 0 gives
// NaN for every field but the counts. It panics when correct is not in
// [0, n], an internal invariant of the callers.
func NewAccuracy(correct, n int) Accuracy {
	if correct < 0 || correct > n {
		panic(fmt.Sprintf("metrics: %d correct out of %d", correct, n))
	}
	a := Accuracy{Correct: correct, N: n, Value: math.NaN(), Lo: math.NaN(), Hi: math.NaN()}
	if n == 0 {
		return a
	}
	a.Value = float64(correct) / float64(n)
	a.Lo, a.Hi = Wilson(correct, n, Z95)
	return a
}

// String formats the accuracy as "0.8567 [0.8350, 0.8761] (n=1000)".
func (a Accuracy) String() string {
	if a.N == 0 {
		return "n/a (n=0)"
	}
	return fmt.Sprintf("%.4f [%.4f, %.4f] (n=%d)", a.Value, a.Lo, a.Hi, a.N)
}

// Wilson returns the Wilson score interval for k successes out of n trials
// at the normal quantile z (Wilson 1927; Brown, Cai and DasGupta 2001 show
// it keeps close to nominal coverage for small n and proportions near 0 or
// 1, where the normal approximation does not). For n == 0 it returns
// (0, 1).
func Wilson(k, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	p := float64(k) / float64(n)
	nf := float64(n)
	z2 := z * z
	den := 1 + z2/nf
	centre := (p + z2/(2*nf)) / den
	half := z / den * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	lo, hi = centre-half, centre+half
	if k == 0 {
		lo = 0
	}
	if k == n {
		hi = 1
	}
	return math.Max(0, lo), math.Min(1, hi)
}

// CountCorrect returns how many of pred equal labels. It returns an error
// when the lengths differ.
func CountCorrect(pred, labels []int) (int, error) {
	if len(pred) != len(labels) {
		return 0, fmt.Errorf("metrics: %d predictions for %d labels", len(pred), len(labels))
	}
	c := 0
	for i := range pred {
		if pred[i] == labels[i] {
			c++
		}
	}
	return c, nil
}

// ErrLength reports image data whose lengths do not agree.
var ErrLength = errors.New("metrics: image data of different lengths or not a whole number of images")

func checkPairs(x, ref []float32, per int) (n int, err error) {
	if per <= 0 || len(x) != len(ref) || len(x)%per != 0 {
		return 0, fmt.Errorf("%w: %d and %d values, %d per image", ErrLength, len(x), len(ref), per)
	}
	return len(x) / per, nil
}

// PSNR returns the peak signal-to-noise ratio in dB of x against the
// reference ref, 10 log10(peak^2 / MSE), for pixels whose range is
// [0, peak]. Identical images give +Inf.
func PSNR(x, ref []float32, peak float64) (float64, error) {
	if len(x) != len(ref) || len(x) == 0 {
		return 0, fmt.Errorf("%w: %d and %d values", ErrLength, len(x), len(ref))
	}
	var s float64
	for i := range x {
		d := float64(x[i]) - float64(ref[i])
		s += d * d
	}
	mse := s / float64(len(x))
	if mse == 0 {
		return math.Inf(1), nil
	}
	return 10 * math.Log10(peak*peak/mse), nil
}

// MeanPSNR returns the mean over images of the per-image PSNR (peak 1) of x
// against ref, both holding whole images of per values each. Images
// identical to their reference are capped at 100 dB so that one of them does
// not make the mean infinite.
func MeanPSNR(x, ref []float32, per int) (float64, error) {
	n, err := checkPairs(x, ref, per)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return math.NaN(), nil
	}
	var sum float64
	for i := 0; i < n; i++ {
		p, _ := PSNR(x[i*per:(i+1)*per], ref[i*per:(i+1)*per], 1)
		sum += math.Min(p, 100)
	}
	return sum / float64(n), nil
}

// NormalizedL2 returns ||x - x0||_2 / ||x0||_2, the dissimilarity in which
// the paper states perturbation budgets (section 5.1). A zero x0 gives +Inf
// unless x is zero too (then 0).
func NormalizedL2(x, x0 []float32) (float64, error) {
	if len(x) != len(x0) {
		return 0, fmt.Errorf("%w: %d and %d values", ErrLength, len(x), len(x0))
	}
	var d2, n2 float64
	for i := range x {
		d := float64(x[i]) - float64(x0[i])
		d2 += d * d
		n2 += float64(x0[i]) * float64(x0[i])
	}
	switch {
	case d2 == 0:
		return 0, nil
	case n2 == 0:
		return math.Inf(1), nil
	}
	return math.Sqrt(d2 / n2), nil
}

// MeanNormalizedL2 returns the mean over images of NormalizedL2, for x and
// x0 holding whole images of per values each.
func MeanNormalizedL2(x, x0 []float32, per int) (float64, error) {
	n, err := checkPairs(x, x0, per)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return math.NaN(), nil
	}
	var sum float64
	for i := 0; i < n; i++ {
		d, _ := NormalizedL2(x[i*per:(i+1)*per], x0[i*per:(i+1)*per])
		sum += d
	}
	return sum / float64(n), nil
}

// SubsetError reports a subset that cannot be drawn.
type SubsetError struct {
	Want, Have int
	Msg        string
}

func (e *SubsetError) Error() string {
	return fmt.Sprintf("metrics: class-balanced subset of %d from %d images: %s", e.Want, e.Have, e.Msg)
}

// BalancedSubset returns the sorted indices of a class-balanced subset of n
// images with the given labels in [0, classes): each class gets n/classes
// images, the remainder going one each to classes drawn at random; a class
// with too few images gives all it has and the shortfall is filled from the
// other classes, fullest first. The images of each class are drawn by a
// random permutation seeded with seed, so the subset is a function of
// (labels, classes, n, seed). n >= len(labels) returns every index.
func BalancedSubset(labels []int, classes, n int, seed uint64) ([]int, error) {
	if classes <= 0 || n < 0 {
		return nil, &SubsetError{n, len(labels), fmt.Sprintf("invalid classes=%d or n=%d", classes, n)}
	}
	if n >= len(labels) {
		all := make([]int, len(labels))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	byClass := make([][]int, classes)
	for i, l := range labels {
		if l < 0 || l >= classes {
			return nil, &SubsetError{n, len(labels), fmt.Sprintf("label %d of image %d not in [0,%d)", l, i, classes)}
		}
		byClass[l] = append(byClass[l], i)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5ca1ab1e))
	for _, idx := range byClass {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	}
	quota := make([]int, classes)
	for c := range quota {
		quota[c] = n / classes
	}
	for _, c := range rng.Perm(classes)[:n%classes] {
		quota[c]++
	}
	// Move the quota of short classes to the others, fullest first.
	short := 0
	for c := range quota {
		if quota[c] > len(byClass[c]) {
			short += quota[c] - len(byClass[c])
			quota[c] = len(byClass[c])
		}
	}
	for short > 0 {
		best := -1
		for c := range quota {
			if spare := len(byClass[c]) - quota[c]; spare > 0 && (best < 0 || spare > len(byClass[best])-quota[best]) {
				best = c
			}
		}
		quota[best]++ // n < len(labels) guarantees some class has spare images
		short--
	}
	var out []int
	for c, idx := range byClass {
		out = append(out, idx[:quota[c]]...)
	}
	sort.Ints(out)
	return out, nil
}
