package augment

import (
	"slices"
	"testing"
)

func TestShiftFlip(t *testing.T) {
	// Two channels of 3x3: 1..9 and 11..19.
	src := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	tests := []struct {
		name   string
		dy, dx int
		flip   bool
		want   []float32
	}{
		{"identity", 0, 0, false, src},
		{"down", -1, 0, false, []float32{0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 11, 12, 13, 14, 15, 16}},
		{"up", 1, 0, false, []float32{4, 5, 6, 7, 8, 9, 0, 0, 0, 14, 15, 16, 17, 18, 19, 0, 0, 0}},
		{"left", 0, 1, false, []float32{2, 3, 0, 5, 6, 0, 8, 9, 0, 12, 13, 0, 15, 16, 0, 18, 19, 0}},
		{"right by 2", 0, -2, false, []float32{0, 0, 1, 0, 0, 4, 0, 0, 7, 0, 0, 11, 0, 0, 14, 0, 0, 17}},
		{"flip", 0, 0, true, []float32{3, 2, 1, 6, 5, 4, 9, 8, 7, 13, 12, 11, 16, 15, 14, 19, 18, 17}},
		{"shift then flip", 1, 1, true, []float32{0, 6, 5, 0, 9, 8, 0, 0, 0, 0, 16, 15, 0, 19, 18, 0, 0, 0}},
		{"all out", 3, 0, false, make([]float32, 18)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := slices.Repeat([]float32{-1}, len(src)) // every value must be written
			ShiftFlip(dst, src, 2, 3, 3, tc.dy, tc.dx, tc.flip)
			if !slices.Equal(dst, tc.want) {
				t.Fatalf("got %v, want %v", dst, tc.want)
			}
		})
	}
}
