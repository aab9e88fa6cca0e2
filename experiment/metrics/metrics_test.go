package metrics

import (
	"errors"
	"math"
	"testing"
)

func TestWilson(t *testing.T) {
	// Reference values from the closed form (Newcombe 1998, Table I, and
	// statsmodels proportion_confint(method="wilson")).
	tests := []struct {
		k, n   int
		lo, hi float64
	}{
		{81, 263, 0.2553, 0.3662},
		{15, 148, 0.0624, 0.1605},
		{0, 20, 0, 0.1611},
		{20, 20, 0.8389, 1},
		{50, 100, 0.4038, 0.5962},
	}
	for _, tc := range tests {
		lo, hi := Wilson(tc.k, tc.n, Z95)
		if math.Abs(lo-tc.lo) > 5e-4 || math.Abs(hi-tc.hi) > 5e-4 {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", tc.k, tc.n, lo, hi, tc.lo, tc.hi)
		}
		p := float64(tc.k) / float64(tc.n)
		if lo > p || hi < p {
			t.Errorf("Wilson(%d, %d) = [%v, %v] does not contain %v", tc.k, tc.n, lo, hi, p)
		}
	}
	if lo, hi := Wilson(0, 0, Z95); lo != 0 || hi != 1 {
		t.Errorf("Wilson(0,0) = [%v, %v]", lo, hi)
	}
}

func TestAccuracy(t *testing.T) {
	a := NewAccuracy(90, 100)
	if a.Value != 0.9 || a.Lo >= 0.9 || a.Hi <= 0.9 || a.Hi > 1 {
		t.Errorf("NewAccuracy(90,100) = %+v", a)
	}
	if s := a.String(); s != "0.9000 [0.8256, 0.9448] (n=100)" {
		t.Errorf("String() = %q", s)
	}
	if z := NewAccuracy(0, 0); !math.IsNaN(z.Value) || z.String() != "n/a (n=0)" {
		t.Errorf("NewAccuracy(0,0) = %+v", z)
	}
	c, err := CountCorrect([]int{1, 2, 3, 4}, []int{1, 0, 3, 0})
	if c != 2 || err != nil {
		t.Errorf("CountCorrect = %d, %v", c, err)
	}
	if _, err := CountCorrect([]int{1}, nil); err == nil {
		t.Error("CountCorrect accepted different lengths")
	}
}

func TestPSNR(t *testing.T) {
	ref := []float32{0, 0.5, 1, 0.25}
	x := []float32{0.1, 0.4, 0.9, 0.35} // every error 0.1: MSE 0.01, PSNR 20 dB
	p, err := PSNR(x, ref, 1)
	if err != nil || math.Abs(p-20) > 1e-5 {
		t.Errorf("PSNR = %v, %v; want 20", p, err)
	}
	if p, _ := PSNR(ref, ref, 1); !math.IsInf(p, 1) {
		t.Errorf("PSNR of identical images = %v", p)
	}
	// Two images: 20 dB and identical (capped at 100): mean 60.
	m, err := MeanPSNR(append(x, ref...), append(ref, ref...), 4)
	if err != nil || math.Abs(m-60) > 1e-5 {
		t.Errorf("MeanPSNR = %v, %v; want 60", m, err)
	}
	if _, err := MeanPSNR(x, ref, 3); !errors.Is(err, ErrLength) {
		t.Errorf("MeanPSNR with per=3: err = %v", err)
	}
	if _, err := PSNR(x, ref[:2], 1); !errors.Is(err, ErrLength) {
		t.Errorf("PSNR of different lengths: err = %v", err)
	}
}

func TestNormalizedL2(t *testing.T) {
	x0 := []float32{3, 4} // norm 5
	x := []float32{3.3, 4.4}
	d, err := NormalizedL2(x, x0)
	if err != nil || math.Abs(d-0.1) > 1e-6 {
		t.Errorf("NormalizedL2 = %v, %v; want 0.1", d, err)
	}
	m, err := MeanNormalizedL2(append(x, x0...), append(x0, x0...), 2)
	if err != nil || math.Abs(m-0.05) > 1e-6 {
		t.Errorf("MeanNormalizedL2 = %v, %v; want 0.05", m, err)
	}
	if d, _ := NormalizedL2([]float32{1}, []float32{0}); !math.IsInf(d, 1) {
		t.Errorf("NormalizedL2 against zero = %v", d)
	}
	if _, err := NormalizedL2(x, nil); !errors.Is(err, ErrLength) {
		t.Errorf("err = %v", err)
	}
}

func TestBalancedSubset(t *testing.T) {
	labels := make([]int, 0, 100)
	for i := 0; i < 100; i++ {
		labels = append(labels, i%10)
	}
	skewed := make([]int, 0, 40)
	for i := 0; i < 40; i++ {
		if i < 2 {
			skewed = append(skewed, 0) // class 0 has only two images
		} else {
			skewed = append(skewed, 1+i%3)
		}
	}
	tests := []struct {
		name      string
		labels    []int
		classes   int
		n         int
		wantCount []int // per class
	}{
		{"even", labels, 10, 50, []int{5, 5, 5, 5, 5, 5, 5, 5, 5, 5}},
		{"all", labels, 10, 100, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}},
		{"more than all", labels, 10, 500, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}},
		{"short class", skewed, 4, 20, nil},
	}
	for _, tc := range tests {
		idx, err := BalancedSubset(tc.labels, tc.classes, tc.n, 7)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := min(tc.n, len(tc.labels))
		if len(idx) != want {
			t.Errorf("%s: %d indices, want %d", tc.name, len(idx), want)
		}
		count := make([]int, tc.classes)
		seen := map[int]bool{}
		for i, j := range idx {
			if seen[j] || (i > 0 && idx[i-1] >= j) {
				t.Errorf("%s: indices not sorted and unique: %v", tc.name, idx)
				break
			}
			seen[j] = true
			count[tc.labels[j]]++
		}
		for c, w := range tc.wantCount {
			if count[c] != w {
				t.Errorf("%s: class %d has %d, want %d", tc.name, c, count[c], w)
			}
		}
		if tc.name == "short class" {
			if count[0] != 2 {
				t.Errorf("short class: class 0 has %d, want all 2", count[0])
			}
			for c := 1; c < 4; c++ {
				if count[c] < 5 || count[c] > 7 {
					t.Errorf("short class: class %d has %d, want 5..7", c, count[c])
				}
			}
		}
	}
	// Uneven remainder: 23 of 10 classes gives 2 or 3 per class.
	idx, _ := BalancedSubset(labels, 10, 23, 1)
	count := make([]int, 10)
	for _, j := range idx {
		count[labels[j]]++
	}
	for c, k := range count {
		if k < 2 || k > 3 {
			t.Errorf("remainder: class %d has %d", c, k)
		}
	}
	// Determinism and seed dependence.
	a, _ := BalancedSubset(labels, 10, 30, 42)
	b, _ := BalancedSubset(labels, 10, 30, 42)
	c, _ := BalancedSubset(labels, 10, 30, 43)
	if !equal(a, b) {
		t.Error("same seed, different subsets")
	}
	if equal(a, c) {
		t.Error("different seeds, same subset")
	}
	var se *SubsetError
	if _, err := BalancedSubset([]int{0, 11}, 10, 1, 0); !errors.As(err, &se) {
		t.Errorf("label out of range: err = %v", err)
	}
	if _, err := BalancedSubset(labels, 0, 1, 0); !errors.As(err, &se) {
		t.Errorf("zero classes: err = %v", err)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
