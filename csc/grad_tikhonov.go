package csc

import "fmt"

// LowpassAdjoint writes L^T g into dst, where L is the linear map from a
// channel s (h×w) to its lowpass part l (Split): the adjoint of symmetric
// padding, filtering and cropping is embedding g in the padded frame,
// filtering (the filter's response is real and even, so the filter is
// self-adjoint) and folding the padded frame back onto the h×w pixels it
// was copied from. The highpass map I - L has adjoint g - L^T g. Computed
// in float64. dst and g must not alias. Not safe for concurrent use (the
// Tikhonov's scratch).
func (t *Tikhonov) LowpassAdjoint(dst, g []float32, h, w int) error {
	if h <= 0 || w <= 0 || len(g) != h*w || len(dst) != h*w {
		return fmt.Errorf("csc: Tikhonov.LowpassAdjoint: want %d values per slice for %dx%d", h*w, h, w)
	}
	if err := t.resize(h, w); err != nil {
		return err
	}
	hp, wp, pd := t.hp, t.wp, t.pad
	clear(t.padded)
	for y := 0; y < h; y++ {
		row := t.padded[(y+pd)*wp+pd : (y+pd)*wp+pd+w]
		for x := range row {
			row[x] = float64(g[y*w+x])
		}
	}
	t.plan.Forward(t.half, t.padded)
	for i, a := range t.inv {
		t.half[i] *= complex(a, 0)
	}
	t.plan.Inverse(t.padded, t.half)
	acc := make([]float64, h*w)
	for y := 0; y < hp; y++ {
		sy := symmetric(y-pd, h)
		for x := 0; x < wp; x++ {
			acc[sy*w+symmetric(x-pd, w)] += t.padded[y*wp+x]
		}
	}
	for i, v := range acc {
		dst[i] = float32(v)
	}
	return nil
}
