package nn

import (
	"fmt"
)

// Im2colConv is the portable ConvKernel: each image is unfolded into a
// (C*R*S, OH*OW) column matrix and multiplied by the (K, C*R*S) weight
// matrix with a Gemm. Images are split over threads goroutines in
// contiguous chunks; partial weight gradients are summed in worker order.
type Im2colConv struct {
	p       ConvParams
	gemm    Gemm
	threads int
	cols    [][]float32 // per worker, C*R*S*OH*OW
	dws     [][]float32 // per worker partial weight gradients
}

// NewIm2colConv returns an Im2colConv for p using gemm and threads
// goroutines (at least 1).
func NewIm2colConv(p ConvParams, gemm Gemm, threads int) (*Im2colConv, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if threads < 1 {
		threads = 1
	}
	return &Im2colConv{p: p, gemm: gemm, threads: threads, cols: make([][]float32, threads), dws: make([][]float32, threads)}, nil
}

func (c *Im2colConv) col(w int) []float32 {
	p := c.p
	oh, ow := p.OutHW()
	if c.cols[w] == nil {
		c.cols[w] = make([]float32, p.C*p.R*p.S*oh*ow)
	}
	return c.cols[w]
}

func (c *Im2colConv) check(name string, got, want int) error {
	if got != want {
		return fmt.Errorf("nn: im2col conv %s: length %d, want %d", name, got, want)
	}
	return nil
}

func (c *Im2colConv) lens() (src, dst, w int) {
	p := c.p
	oh, ow := p.OutHW()
	return p.N * p.C * p.H * p.W, p.N * p.K * oh * ow, p.K * p.C * p.R * p.S
}

// Forward implements ConvKernel.
func (c *Im2colConv) Forward(dst, src, weight, bias []float32) error {
	ls, ld, lw := c.lens()
	if err := firstErr(c.check("dst", len(dst), ld), c.check("src", len(src), ls), c.check("weight", len(weight), lw)); err != nil {
		return err
	}
	p := c.p
	if bias != nil && len(bias) != p.K {
		return c.check("bias", len(bias), p.K)
	}
	oh, ow := p.OutHW()
	ohw, crs := oh*ow, p.C*p.R*p.S
	parallelFor(c.threads, p.N, func(w, lo, hi int) {
		col := c.col(w)
		for n := lo; n < hi; n++ {
			im2col(col, src[n*p.C*p.H*p.W:(n+1)*p.C*p.H*p.W], p, oh, ow)
			out := dst[n*p.K*ohw : (n+1)*p.K*ohw]
			c.gemm.Sgemm(false, false, p.K, ohw, crs, 1, weight, crs, col, ohw, 0, out, ohw)
			if bias != nil {
				for k := 0; k < p.K; k++ {
					b := bias[k]
					row := out[k*ohw : (k+1)*ohw]
					for i := range row {
						row[i] += b
					}
				}
			}
		}
	})
	return nil
}

// BackwardData implements ConvKernel.
func (c *Im2colConv) BackwardData(dsrc, ddst, weight []float32) error {
	ls, ld, lw := c.lens()
	if err := firstErr(c.check("dsrc", len(dsrc), ls), c.check("ddst", len(ddst), ld), c.check("weight", len(weight), lw)); err != nil {
		return err
	}
	p := c.p
	oh, ow := p.OutHW()
	ohw, crs, chw := oh*ow, p.C*p.R*p.S, p.C*p.H*p.W
	parallelFor(c.threads, p.N, func(w, lo, hi int) {
		col := c.col(w)
		for n := lo; n < hi; n++ {
			c.gemm.Sgemm(true, false, crs, ohw, p.K, 1, weight, crs, ddst[n*p.K*ohw:(n+1)*p.K*ohw], ohw, 0, col, ohw)
			col2im(dsrc[n*chw:(n+1)*chw], col, p, oh, ow)
		}
	})
	return nil
}

// BackwardWeights implements ConvKernel.
func (c *Im2colConv) BackwardWeights(dweight, dbias, src, ddst []float32) error {
	ls, ld, lw := c.lens()
	if err := firstErr(c.check("dweight", len(dweight), lw), c.check("src", len(src), ls), c.check("ddst", len(ddst), ld)); err != nil {
		return err
	}
	p := c.p
	if dbias != nil && len(dbias) != p.K {
		return c.check("dbias", len(dbias), p.K)
	}
	oh, ow := p.OutHW()
	ohw, crs, chw := oh*ow, p.C*p.R*p.S, p.C*p.H*p.W
	nw := c.threads
	if nw > p.N {
		nw = p.N
	}
	parallelFor(c.threads, p.N, func(w, lo, hi int) {
		col := c.col(w)
		dw := dweight
		if w > 0 {
			if c.dws[w] == nil {
				c.dws[w] = make([]float32, lw)
			}
			dw = c.dws[w]
		}
		for n := lo; n < hi; n++ {
			im2col(col, src[n*chw:(n+1)*chw], p, oh, ow)
			beta := float32(1)
			if n == lo {
				beta = 0
			}
			c.gemm.Sgemm(false, true, p.K, crs, ohw, 1, ddst[n*p.K*ohw:(n+1)*p.K*ohw], ohw, col, ohw, beta, dw, crs)
		}
	})
	for w := 1; w < nw; w++ {
		dw := c.dws[w]
		for i := range dweight {
			dweight[i] += dw[i]
		}
	}
	if dbias != nil {
		for k := 0; k < p.K; k++ {
			var s float64
			for n := 0; n < p.N; n++ {
				for _, v := range ddst[(n*p.K+k)*ohw : (n*p.K+k+1)*ohw] {
					s += float64(v)
				}
			}
			dbias[k] = float32(s)
		}
	}
	return nil
}

// Close implements ConvKernel; it releases the scratch memory.
func (c *Im2colConv) Close() { c.cols, c.dws = nil, nil }

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// validRange returns the output indices [lo, hi) for which o*stride-pad+r
// falls inside [0, size).
func validRange(out, size, stride, pad, r int) (lo, hi int) {
	// o*stride >= pad - r  and  o*stride <= size - 1 + pad - r
	lo = 0
	if d := pad - r; d > 0 {
		lo = (d + stride - 1) / stride
	}
	hi = out
	if u := size - 1 + pad - r; u < 0 {
		hi = 0
	} else if m := u/stride + 1; m < hi {
		hi = m
	}
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// im2col unfolds one (C, H, W) image into col (C*R*S, OH*OW).
func im2col(col, img []float32, p ConvParams, oh, ow int) {
	ohw := oh * ow
	for c := 0; c < p.C; c++ {
		plane := img[c*p.H*p.W : (c+1)*p.H*p.W]
		for r := 0; r < p.R; r++ {
			yl, yh := validRange(oh, p.H, p.StrideH, p.PadH, r)
			for s := 0; s < p.S; s++ {
				xl, xh := validRange(ow, p.W, p.StrideW, p.PadW, s)
				row := col[((c*p.R+r)*p.S+s)*ohw : ((c*p.R+r)*p.S+s+1)*ohw]
				clear(row[:yl*ow])
				clear(row[yh*ow:])
				for y := yl; y < yh; y++ {
					dst := row[y*ow : (y+1)*ow]
					iy := y*p.StrideH - p.PadH + r
					src := plane[iy*p.W : (iy+1)*p.W]
					clear(dst[:xl])
					clear(dst[xh:])
					if p.StrideW == 1 {
						off := -p.PadW + s
						copy(dst[xl:xh], src[xl+off:xh+off])
					} else {
						for x := xl; x < xh; x++ {
							dst[x] = src[x*p.StrideW-p.PadW+s]
						}
					}
				}
			}
		}
	}
}

// col2im folds col (C*R*S, OH*OW) back into img (C, H, W), summing
// overlaps; img is overwritten.
func col2im(img, col []float32, p ConvParams, oh, ow int) {
	clear(img)
	ohw := oh * ow
	for c := 0; c < p.C; c++ {
		plane := img[c*p.H*p.W : (c+1)*p.H*p.W]
		for r := 0; r < p.R; r++ {
			yl, yh := validRange(oh, p.H, p.StrideH, p.PadH, r)
			for s := 0; s < p.S; s++ {
				xl, xh := validRange(ow, p.W, p.StrideW, p.PadW, s)
				row := col[((c*p.R+r)*p.S+s)*ohw : ((c*p.R+r)*p.S+s+1)*ohw]
				for y := yl; y < yh; y++ {
					srow := row[y*ow : (y+1)*ow]
					iy := y*p.StrideH - p.PadH + r
					dst := plane[iy*p.W : (iy+1)*p.W]
					if p.StrideW == 1 {
						off := -p.PadW + s
						d := dst[xl+off : xh+off]
						sr := srow[xl:xh]
						for i := range d {
							d[i] += sr[i]
						}
					} else {
						for x := xl; x < xh; x++ {
							dst[x*p.StrideW-p.PadW+s] += srow[x]
						}
					}
				}
			}
		}
	}
}
