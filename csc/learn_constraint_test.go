package csc

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// constraintErrors returns, over the filters of d, the largest deviation
// of a filter's norm (jointly over its channels) from 1 and the largest
// absolute mean of one channel of one filter.
func constraintErrors(d *Dictionary) (norm, mean float64) {
	rs := d.R * d.S
	for m := 0; m < d.M; m++ {
		norm = math.Max(norm, math.Abs(d.filterNorm(m)-1))
		for c := 0; c < d.C; c++ {
			s := 0.0
			for _, v := range d.Filters[(m*d.C+c)*rs : (m*d.C+c+1)*rs] {
				s += float64(v)
			}
			mean = math.Max(mean, math.Abs(s/float64(rs)))
		}
	}
	return norm, mean
}

// TestLearnConstraintEveryIteration checks, for each constraint set and
// for grey and colour images, that the dictionary satisfies its
// constraints to 1e-5 after every dictionary update, and that learning
// decreases the objective.
func TestLearnConstraintEveryIteration(t *testing.T) {
	colour := crops(t, 6, 20)
	grey := tensor.New(6, 1, 20, 20)
	for i := 0; i < 6; i++ {
		copy(grey.Data[i*400:(i+1)*400], colour.Data[i*1200:i*1200+400])
	}
	tests := []struct {
		name     string
		images   *tensor.Tensor
		zeroMean bool
	}{
		{"colour, zero mean per channel and unit norm jointly", colour, true},
		{"colour, unit norm jointly", colour, false},
		{"grey, zero mean and unit norm", grey, true},
	}
	for _, tc := range tests {
		opt := smallLearnOptions()
		opt.Filters, opt.Iterations, opt.ZeroMean = 8, 15, tc.zeroMean
		var objective []float64
		worstNorm, worstMean := 0.0, 0.0
		_, err := Learn(context.Background(), tc.images, opt, LearnRecorderFunc(func(s LearnStats) {
			objective = append(objective, s.Objective)
			n, m := constraintErrors(s.Dictionary)
			worstNorm = math.Max(worstNorm, n)
			if tc.zeroMean {
				worstMean = math.Max(worstMean, m)
			} else if s.Iter == opt.Iterations-1 && m < 1e-4 {
				t.Errorf("%s: channel means at most %g: the unconstrained means stayed zero", tc.name, m)
			}
		}))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if worstNorm > 1e-5 || worstMean > 1e-5 {
			t.Errorf("%s: after some update a filter norm is off 1 by %g and a channel mean is %g, want both <= 1e-5", tc.name, worstNorm, worstMean)
		}
		if len(objective) != opt.Iterations {
			t.Fatalf("%s: %d iterations recorded", tc.name, len(objective))
		}
		first, last := objective[2], objective[len(objective)-1]
		t.Logf("%s: objective %.4f at iteration 3, %.4f at %d", tc.name, first, last, len(objective))
		if !(last < first) {
			t.Errorf("%s: the objective did not decrease: %.4f at iteration 3, %.4f at the end", tc.name, first, last)
		}
	}
}

// TestPaperDictionaryConstraint checks that the paper's CIFAR-10
// dictionary, as the released code learned it with SPORCO, satisfies the
// default constraint set: zero mean per channel, unit norm jointly over
// the channels (and not unit norm per channel).
func TestPaperDictionaryConstraint(t *testing.T) {
	d, err := ReadDictionary(filepath.Join("testdata", "dict.npy"))
	if err != nil {
		t.Fatal(err)
	}
	norm, mean := constraintErrors(d)
	if norm > 1e-5 || mean > 1e-5 {
		t.Errorf("paper dictionary: norm off 1 by %g, channel mean %g; want both <= 1e-5", norm, mean)
	}
	rs := d.R * d.S
	perChannel := 0.0
	for m := 0; m < d.M; m++ {
		for c := 0; c < d.C; c++ {
			s := 0.0
			for _, v := range d.Filters[(m*d.C+c)*rs : (m*d.C+c+1)*rs] {
				s += float64(v) * float64(v)
			}
			perChannel = math.Max(perChannel, math.Abs(math.Sqrt(s)-1))
		}
	}
	if perChannel < 0.1 {
		t.Errorf("paper dictionary: every channel has unit norm (largest deviation %g): the norm is per channel, not joint", perChannel)
	}
}
