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

func TestBatch(t *testing.T) {
	x := New(4, 2, 3)
	for i := range x.Data {
		x.Data[i] = float32(i)
	}
	tests := []struct {
		name      string
		lo, hi    int
		wantShape []int
		wantFirst float32
	}{
		{"all", 0, 4, []int{4, 2, 3}, 0},
		{"middle", 1, 3, []int{2, 2, 3}, 6},
		{"last", 3, 4, []int{1, 2, 3}, 18},
		{"empty", 2, 2, []int{0, 2, 3}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := x.Batch(tc.lo, tc.hi)
			if !SameShape(b, &Tensor{Shape: tc.wantShape}) || len(b.Data) != b.Len() {
				t.Fatalf("shape %v with %d values, want %v", b.Shape, len(b.Data), tc.wantShape)
			}
			if len(b.Data) > 0 && b.Data[0] != tc.wantFirst {
				t.Fatalf("first value %v, want %v", b.Data[0], tc.wantFirst)
			}
		})
	}
	x.Batch(1, 2).Data[0] = -7
	if x.Data[6] != -7 {
		t.Fatal("Batch does not share Data")
	}
	for _, r := range [][2]int{{-1, 1}, {2, 1}, {0, 5}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Batch(%d, %d) did not panic", r[0], r[1])
				}
			}()
			x.Batch(r[0], r[1])
		}()
	}
}

func TestArgmax(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name string
		v    []float32
		want int
	}{
		{"empty", nil, -1},
		{"one", []float32{3}, 0},
		{"last", []float32{1, 2, 3}, 2},
		{"first of ties", []float32{1, 5, 5, 2}, 1},
		{"negative", []float32{-3, -1, -2}, 1},
		{"NaN later", []float32{1, nan, 0}, 0},
		{"NaN first", []float32{nan, 9}, 0},
	}
	for _, tc := range tests {
		if got := Argmax(tc.v); got != tc.want {
			t.Errorf("%s: Argmax(%v) = %d, want %d", tc.name, tc.v, got, tc.want)
		}
	}
	z := &Tensor{Shape: []int{3, 2}, Data: []float32{0, 1, 4, 3, 2, 2}}
	dst := make([]int, 0, 8)
	got := z.ArgmaxRows(dst)
	if len(got) != 3 || got[0] != 1 || got[1] != 0 || got[2] != 0 || &got[0] != &dst[:1][0] {
		t.Fatalf("ArgmaxRows = %v (reused dst: %v)", got, &got[0] == &dst[:1][0])
	}
	if got := z.ArgmaxRows(nil); len(got) != 3 {
		t.Fatalf("ArgmaxRows(nil) = %v", got)
	}
}
