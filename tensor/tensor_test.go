package tensor

import (
	"errors"
	"math"
	"testing"
)

func TestFromData(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		shape   []int
		wantErr bool
	}{
		{"exact", 24, []int{2, 3, 4}, false},
		{"too few", 23, []int{2, 3, 4}, true},
		{"negative", 0, []int{-1, 0}, true},
		{"scalar", 1, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromData(make([]float32, tc.n), tc.shape...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestSampleIsView(t *testing.T) {
	x := New(3, 2, 2, 2)
	for i := range x.Data {
		x.Data[i] = float32(i)
	}
	s := x.Sample(1)
	if s.Len() != 8 || s.Data[0] != 8 || s.Shape[0] != 1 {
		t.Fatalf("sample 1 = %v %v", s.Shape, s.Data)
	}
	s.Data[0] = -1
	if x.Data[8] != -1 {
		t.Fatal("Sample does not share storage")
	}
}

func TestValidate(t *testing.T) {
	x := New(2, 2)
	if err := x.Validate(); err != nil {
		t.Fatal(err)
	}
	x.Data[3] = float32(math.NaN())
	var nf *NonFiniteError
	if err := x.Validate(); !errors.As(err, &nf) || nf.Index != 3 {
		t.Fatalf("Validate = %v, want NonFiniteError at 3", err)
	}
	y := &Tensor{Shape: []int{3}, Data: make([]float32, 2)}
	var se *ShapeError
	if err := y.Validate(); !errors.As(err, &se) {
		t.Fatalf("Validate = %v, want ShapeError", err)
	}
}

func TestNCHWAndClip(t *testing.T) {
	if _, _, _, _, err := New(2, 3).NCHW(); err == nil {
		t.Fatal("NCHW on 2-d tensor: want error")
	}
	n, c, h, w, err := New(1, 3, 4, 5).NCHW()
	if err != nil || n != 1 || c != 3 || h != 4 || w != 5 {
		t.Fatalf("NCHW = %d %d %d %d %v", n, c, h, w, err)
	}
	d := []float32{-1, 0.5, 2}
	Clip(d, 0, 1)
	if d[0] != 0 || d[1] != 0.5 || d[2] != 1 {
		t.Fatalf("Clip = %v", d)
	}
}
