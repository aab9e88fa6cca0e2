package csc

import (
	"math"
	"testing"
)

func TestTikhonovMatchesSPORCO(t *testing.T) {
	for _, name := range []string{"img32", "img128"} {
		t.Run(name, func(t *testing.T) {
			img := loadImage(t, name)
			lo := loadImage(t, name+"_lo")
			hi := loadImage(t, name+"_hi")
			_, c, h, w, _ := img.NCHW()
			tk, err := NewTikhonov(5, 16)
			if err != nil {
				t.Fatal(err)
			}
			gotLo := make([]float32, h*w)
			gotHi := make([]float32, h*w)
			maxErr := 0.0
			for ch := 0; ch < c; ch++ {
				s := img.Data[ch*h*w : (ch+1)*h*w]
				if err := tk.Split(gotLo, gotHi, s, h, w); err != nil {
					t.Fatal(err)
				}
				for i := range s {
					maxErr = math.Max(maxErr, math.Abs(float64(gotLo[i]-lo.Data[ch*h*w+i])))
					maxErr = math.Max(maxErr, math.Abs(float64(gotHi[i]-hi.Data[ch*h*w+i])))
				}
			}
			t.Logf("%s: max abs error %.2g", name, maxErr)
			if maxErr > 1e-5 {
				t.Errorf("split differs from SPORCO's by %g > 1e-5", maxErr)
			}
		})
	}
}

func TestSymmetricIndex(t *testing.T) {
	// numpy.pad([0,1,2], 4, 'symmetric') = [1 2 2 1 0 | 0 1 2 | 2 1 0 0 1]
	want := []int{1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1}
	for i, w := range want {
		if g := symmetric(i-5, 3); g != w {
			t.Errorf("symmetric(%d, 3) = %d, want %d", i-5, g, w)
		}
	}
}
