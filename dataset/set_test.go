package dataset

import (
	"errors"
	"reflect"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// toySet returns n images of shape s where image i is filled with i/255 and
// labels cycle through k classes.
func toySet(n int, s Shape, k int) *Set {
	classes := make([]string, k)
	for i := range classes {
		classes[i] = string(rune('a' + i))
	}
	set := NewSet("toy", n, s, classes)
	for i := 0; i < n; i++ {
		set.Labels[i] = i % k
		for j := range set.Image(i) {
			set.Image(i)[j] = byteToUnit[i%256]
		}
	}
	return set
}

func TestBalancedIndices(t *testing.T) {
	// Labels: class c has 10+c members, interleaved.
	var labels []int
	for c := 0; c < 4; c++ {
		for j := 0; j < 10+c; j++ {
			labels = append(labels, c)
		}
	}
	tests := []struct {
		name    string
		n       int
		want    []int // per-class counts
		wantErr bool
	}{
		{"even", 8, []int{2, 2, 2, 2}, false},
		{"remainder to first classes", 10, []int{3, 3, 2, 2}, false},
		{"all of smallest class", 40, []int{10, 10, 10, 10}, false},
		{"zero", 0, []int{0, 0, 0, 0}, false},
		{"too many", 44, nil, true},
		{"negative", -1, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, err := BalancedIndices(labels, 4, tc.n, 7)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			got := make([]int, 4)
			for k, i := range idx {
				got[labels[i]]++
				if k > 0 && idx[k-1] >= i {
					t.Fatalf("indices not strictly ascending: %v", idx)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("class counts %v, want %v", got, tc.want)
			}
			again, _ := BalancedIndices(labels, 4, tc.n, 7)
			if !reflect.DeepEqual(idx, again) {
				t.Errorf("same seed gave %v then %v", idx, again)
			}
		})
	}
	a, _ := BalancedIndices(labels, 4, 20, 1)
	b, _ := BalancedIndices(labels, 4, 20, 2)
	if reflect.DeepEqual(a, b) {
		t.Errorf("seeds 1 and 2 drew the same subset %v", a)
	}
	if _, err := BalancedIndices([]int{0, 5}, 4, 2, 1); !errors.Is(err, ErrLabel) {
		t.Errorf("label out of range: err = %v, want ErrLabel", err)
	}
}

func TestSubsetShuffleConcat(t *testing.T) {
	s := toySet(6, Shape{1, 2, 2}, 3)
	sub := s.Subset([]int{4, 1, 4})
	if sub.Len() != 3 || !reflect.DeepEqual(sub.Labels, []int{1, 1, 1}) {
		t.Fatalf("Subset labels %v", sub.Labels)
	}
	if sub.Image(0)[0] != byteToUnit[4] || sub.Image(1)[3] != byteToUnit[1] {
		t.Errorf("Subset pixels %v", sub.Images.Data)
	}
	sub.Image(0)[0] = 0.5
	if s.Image(4)[0] == 0.5 {
		t.Error("Subset shares memory with its source")
	}
	sh := s.Shuffle(3)
	if !reflect.DeepEqual(sh.ClassCounts(), s.ClassCounts()) {
		t.Errorf("Shuffle changed class counts %v -> %v", s.ClassCounts(), sh.ClassCounts())
	}
	for i := 0; i < sh.Len(); i++ { // image value tells its source index
		src := int(sh.Image(i)[0]*255 + 0.5)
		if sh.Labels[i] != src%3 {
			t.Errorf("Shuffle separated image %d from its label", src)
		}
	}
	c, err := Concat("both", s, sub)
	if err != nil || c.Len() != 9 || c.Images.Shape[0] != 9 {
		t.Fatalf("Concat: %v, len %d", err, c.Len())
	}
	if _, err := Concat("bad", s, toySet(2, Shape{1, 3, 3}, 3)); !errors.Is(err, ErrShape) {
		t.Errorf("Concat of mixed sizes: err = %v, want ErrShape", err)
	}
	if got := s.Head(100).Len(); got != 6 {
		t.Errorf("Head(100) = %d images", got)
	}
}

func TestSetValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(s *Set)
		want   error
	}{
		{"ok", func(s *Set) {}, nil},
		{"label", func(s *Set) { s.Labels[2] = 3 }, ErrLabel},
		{"negative label", func(s *Set) { s.Labels[0] = -1 }, ErrLabel},
		{"count", func(s *Set) { s.Labels = s.Labels[:2] }, ErrCount},
		{"class name with a carriage return", func(s *Set) { s.Classes[0] = "air\rplane" }, ErrClassName},
		{"empty class name", func(s *Set) { s.Classes[1] = "" }, ErrClassName},
		{"pixel range", func(s *Set) { s.Images.Data[5] = 1.5 }, nil},
		{"nan", func(s *Set) { s.Images.Data[5] = float32NaN() }, nil},
		{"not 4d", func(s *Set) { s.Images.Shape = []int{4, 12} }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := toySet(4, Shape{3, 2, 2}, 3)
			tc.modify(s)
			err := s.Validate()
			if tc.name == "ok" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	var se *tensor.ShapeError
	s := toySet(4, Shape{3, 2, 2}, 3)
	s.Images.Shape = []int{4, 12}
	if err := s.Validate(); !errors.As(err, &se) {
		t.Errorf("not 4d: err = %v, want *tensor.ShapeError", err)
	}
}

func float32NaN() float32 {
	z := float32(0)
	return z / z
}
