package defense

import (
	"fmt"

	"github.com/stl-defense/stl/tensor"
)

// areaResize resamples every image of x, an (N, C, H, W) batch, to
// (N, C, h, w) by area averaging: each output pixel is the mean of the input
// area it covers, with fractional pixels weighted by their overlap (the
// rule of OpenCV's INTER_AREA). It is exact block averaging when H and W are
// multiples of h and w, and the identity when the sizes agree (a copy is
// returned). The paper downsamples images to 32x32 before the DAE (section
// 5.1).
func areaResize(x *tensor.Tensor, h, w int) (*tensor.Tensor, error) {
	n, c, H, W, err := x.NCHW()
	if err != nil {
		return nil, err
	}
	if h < 1 || w < 1 || H < 1 || W < 1 {
		return nil, fmt.Errorf("defense: cannot resize %dx%d images to %dx%d", H, W, h, w)
	}
	if H == h && W == w {
		return x.Clone(), nil
	}
	ry, rx := areaWeights(H, h), areaWeights(W, w)
	out := tensor.New(n, c, h, w)
	tmp := make([]float64, h*W) // rows resampled, columns not yet
	for p := 0; p < n*c; p++ {
		src := x.Data[p*H*W : (p+1)*H*W]
		clear(tmp)
		for oy, ws := range ry {
			row := tmp[oy*W : (oy+1)*W]
			for _, t := range ws {
				in := src[t.i*W : (t.i+1)*W]
				for j, v := range in {
					row[j] += t.w * float64(v)
				}
			}
		}
		dst := out.Data[p*h*w : (p+1)*h*w]
		for oy := 0; oy < h; oy++ {
			row := tmp[oy*W : (oy+1)*W]
			for ox, ws := range rx {
				var s float64
				for _, t := range ws {
					s += t.w * row[t.i]
				}
				dst[oy*w+ox] = float32(s)
			}
		}
	}
	return out, nil
}

type tap struct {
	i int
	w float64
}

// areaWeights returns, for each of the m output samples along an axis of n
// input samples, the input indices it overlaps and their weights (summing
// to 1). Output k covers input coordinates [k n/m, (k+1) n/m).
func areaWeights(n, m int) [][]tap {
	out := make([][]tap, m)
	scale := float64(n) / float64(m)
	for k := range out {
		lo, hi := float64(k)*scale, float64(k+1)*scale
		for i := int(lo); i < n && float64(i) < hi; i++ {
			a, b := max(lo, float64(i)), min(hi, float64(i+1))
			if b > a {
				out[k] = append(out[k], tap{i, (b - a) / scale})
			}
		}
	}
	return out
}
