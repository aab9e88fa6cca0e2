package csc

import (
	"context"
	"math"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

// FuzzSolveInput feeds arbitrary shapes and values (as a file or flag could)
// to the layout conversions and the solver: they must return an error or a
// result, never panic.
func FuzzSolveInput(f *testing.F) {
	f.Add(uint8(8), uint8(8), uint8(3), uint8(2), uint8(3), uint8(2), uint8(2), float32(0.5), float32(0.2))
	f.Add(uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), float32(1), float32(0))
	f.Add(uint8(3), uint8(2), uint8(3), uint8(4), uint8(1), uint8(5), uint8(1), float32(math.NaN()), float32(-1))
	f.Add(uint8(0), uint8(4), uint8(1), uint8(1), uint8(1), uint8(1), uint8(1), float32(1), float32(0.2))
	f.Fuzz(func(t *testing.T, h, w, c, m, dc, r, s uint8, v, lambda float32) {
		h, w, m, r, s = h%20, w%20, m%5, r%6, s%6
		c, dc = c%4, dc%4
		img := tensor.New(int(h), int(w), int(c))
		for i := range img.Data {
			img.Data[i] = v * float32(i%7)
		}
		batch, err := ImagesFromSPORCO(img)
		if err != nil {
			return
		}
		raw := tensor.New(int(r), int(s), int(dc), int(m))
		for i := range raw.Data {
			raw.Data[i] = float32(i%5) - 2
		}
		d, err := dictionaryFromSPORCO(raw)
		if err != nil {
			return
		}
		opt := DefaultOptions()
		opt.Lambda = float64(lambda)
		opt.ADMM.MaxIter = 3
		opt.Workers = 1
		coder, err := NewCoder(d, opt)
		if err != nil {
			return
		}
		res, err := coder.SolveBatch(context.Background(), batch, nil)
		if err == nil && len(res) != batch.Shape[0] {
			t.Fatalf("%d results for %d images", len(res), batch.Shape[0])
		}
		p, err := NewProjection(d, ProjectOptions{CSC: opt, TikhonovLambda: 5, Pad: int(h % 5), Clip: true})
		if err != nil {
			return
		}
		out := tensor.New(batch.Shape...)
		if err := p.Project(context.Background(), out, batch); err == nil {
			for _, x := range out.Data {
				if x < 0 || x > 1 || x != x {
					t.Fatalf("projection value %v outside [0,1]", x)
				}
			}
		}
	})
}
