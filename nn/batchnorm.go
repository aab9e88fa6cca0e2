package nn

import (
	"math"

	"github.com/stl-defense/stl/tensor"
)

// BatchNorm2D normalizes each channel of an NCHW batch (Ioffe and Szegedy
// 2015): y = gamma * (x - mu) / sqrt(var + Eps) + beta. In training mode mu
// and var are the batch statistics (biased variance) and the running
// averages are updated with Momentum (running = (1-m) running + m batch,
// unbiased variance, as PyTorch); in eval mode the running averages are
// used and the layer is an affine map. With ReLU set the layer applies
// max(y, 0) as well (a fused BN + ReLU: one pass over memory instead of
// two).
type BatchNorm2D struct {
	Gamma, Beta     *Param
	RunMean, RunVar *Param // buffers
	Eps, Momentum   float64
	ReLU            bool
	Threads         int
	x, y, dx        *tensor.Tensor
	mean, invStd    []float32 // statistics used by the last Forward
	train           bool
	folded          bool // the last forward was Conv2D.forwardFoldedBN (x unknown)
}

// NewBatchNorm2D returns a batch norm over c channels with gamma 1, beta 0,
// running mean 0, running variance 1, Eps 1e-5 and Momentum 0.1.
func NewBatchNorm2D(c, threads int) *BatchNorm2D {
	l := &BatchNorm2D{Gamma: newParam("weight", false, c), Beta: newParam("bias", false, c),
		RunMean: newBuffer("running_mean", c), RunVar: newBuffer("running_var", c), Eps: 1e-5, Momentum: 0.1, Threads: threads}
	for i := 0; i < c; i++ {
		l.Gamma.W[i], l.RunVar.W[i] = 1, 1
	}
	l.mean, l.invStd = make([]float32, c), make([]float32, c)
	return l
}

// Params implements Layer.
func (l *BatchNorm2D) Params() []*Param { return []*Param{l.Gamma, l.Beta, l.RunMean, l.RunVar} }

// relu32 is max(v, 0) without a branch (the sign bit clears the value).
func relu32(v float32) float32 {
	b := math.Float32bits(v)
	return math.Float32frombits(b &^ uint32(int32(b)>>31))
}

// Forward implements Layer.
func (l *BatchNorm2D) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Len() / (n * c)
	l.x, l.train, l.folded = x, train, false
	l.y = buf(l.y, x.Shape...)
	parallelFor(l.Threads, c, func(_, lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var mean, inv float64
			if train {
				// Shifted sums (shift = first value) keep the variance
				// accurate without a second pass; see shiftedSums.
				k := x.Data[ch*hw]
				var s, ss float64
				for i := 0; i < n; i++ {
					a, b := shiftedSums(x.Data[(i*c+ch)*hw:(i*c+ch+1)*hw], k)
					s += a
					ss += b
				}
				cnt := float64(n * hw)
				mean = float64(k) + s/cnt
				vr := math.Max((ss-s*s/cnt)/cnt, 0)
				inv = 1 / math.Sqrt(vr+l.Eps)
				unb := vr
				if cnt > 1 {
					unb = vr * cnt / (cnt - 1)
				}
				m := l.Momentum
				l.RunMean.W[ch] = float32((1-m)*float64(l.RunMean.W[ch]) + m*mean)
				l.RunVar.W[ch] = float32((1-m)*float64(l.RunVar.W[ch]) + m*unb)
			} else {
				mean = float64(l.RunMean.W[ch])
				inv = 1 / math.Sqrt(float64(l.RunVar.W[ch])+l.Eps)
			}
			l.mean[ch], l.invStd[ch] = float32(mean), float32(inv)
			g := float32(float64(l.Gamma.W[ch]) * inv)
			sh := l.Beta.W[ch] - g*float32(mean)
			for i := 0; i < n; i++ {
				off := (i*c + ch) * hw
				src, dst := x.Data[off:off+hw], l.y.Data[off:off+hw]
				if l.ReLU {
					affineReLU(dst, src, g, sh)
				} else {
					for j, v := range src {
						dst[j] = g*v + sh
					}
				}
			}
		}
	})
	return l.y
}

// Backward implements Layer. With a fused ReLU, dy is first masked where
// the output is 0. In training mode it differentiates through the batch
// statistics, with xhat = (x - mu) * invstd recomputed from x:
// dx = gamma*invstd * (dy - mean(dy) - xhat mean(dy xhat)).
func (l *BatchNorm2D) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if l.folded {
		// The scale is in the convolution's folded weights, which its
		// Backward uses: only the ReLU's mask is left here.
		if mode.Params {
			panic("nn: BatchNorm2D: parameter gradients after a forward folded into the convolution")
		}
		if !mode.Input {
			return nil
		}
		if l.ReLU {
			parallelElems(l.Threads, len(dy.Data), func(lo, hi int) {
				d, y := dy.Data[lo:hi], l.y.Data[lo:hi]
				for i, g := range d {
					d[i] = maskPos(g, y[i]) // in place
				}
			})
		}
		l.dx = dy
		return dy
	}
	x := l.x
	n, c := l.y.Shape[0], l.y.Shape[1]
	hw := l.y.Len() / (n * c)
	if mode.Input {
		l.dx = dy // in place: each channel's sums are taken before its writes
	}
	// The sums over dy are needed for the parameter gradients and, in
	// training mode, for the statistics' share of dx; an eval-mode input
	// gradient (the attacks' case) is one scaling pass.
	sums := mode.Params || l.train
	parallelFor(l.Threads, c, func(_, lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var sdy, sdyx float64
			inv, mean := l.invStd[ch], l.mean[ch]
			for i := 0; i < n && sums; i++ {
				off := (i*c + ch) * hw
				d, xs := dy.Data[off:off+hw], x.Data[off:off+hw] // sums: x known (not folded)
				var a, b float64
				if l.ReLU {
					a, b = gradSumsReLU(d, xs, l.y.Data[off:off+hw], mean)
				} else {
					a, b = gradSums(d, xs, mean)
				}
				sdy += a
				sdyx += b * float64(inv)
			}
			if mode.Params {
				l.Gamma.G[ch] = float32(sdyx)
				l.Beta.G[ch] = float32(sdy)
			}
			if !mode.Input {
				continue
			}
			g := l.Gamma.W[ch] * inv
			var mdy, mdyx float32
			if l.train {
				cnt := float64(n * hw)
				mdy, mdyx = float32(sdy/cnt), float32(sdyx/cnt)
			}
			for i := 0; i < n; i++ {
				off := (i*c + ch) * hw
				d, o := dy.Data[off:off+hw], l.dx.Data[off:off+hw]
				var xs []float32 // read in training mode only (nil after a folded forward)
				if l.train {
					xs = x.Data[off : off+hw]
				}
				// o = g*(dy - mdy - (x-mean)*inv*mdyx) = g*dy - a*(x-mean) - b.
				a, b := g*inv*mdyx, g*mdy
				switch {
				case !l.train && l.ReLU: // eval: dx = g * mask(dy), x unread
					ys := l.y.Data[off : off+hw]
					o, ys = o[:len(d)], ys[:len(d)]
					for j, v := range d {
						o[j] = g * maskPos(v, ys[j])
					}
				case !l.train:
					o = o[:len(d)]
					for j, v := range d {
						o[j] = g * v
					}
				case l.ReLU:
					bnBackReLU(o, d, xs, l.y.Data[off:off+hw], g, a, b, mean)
				default:
					o, xs = o[:len(d)], xs[:len(d)]
					for j, v := range d {
						o[j] = g*v - a*(xs[j]-mean) - b
					}
				}
			}
		}
	})
	if !mode.Input {
		return nil
	}
	return l.dx
}

// The batch-norm sums below keep four independent float32 accumulators
// (one accumulator makes every add wait for the previous one), folded into
// float64 every sumBlock values to bound the rounding error. The passes
// are mostly memory-bound: measured 10-15% less CPU than one float64
// accumulator at the classifiers' shapes (BenchmarkLayers).
const sumBlock = 1024

// shiftedSums returns sum(x-k) and sum((x-k)^2).
func shiftedSums(xs []float32, k float32) (s, ss float64) {
	for len(xs) > 0 {
		blk := xs[:min(len(xs), sumBlock)]
		xs = xs[len(blk):]
		var s0, s1, s2, s3, q0, q1, q2, q3 float32
		i := 0
		for ; i+4 <= len(blk); i += 4 {
			v := blk[i : i+4 : i+4]
			d0, d1, d2, d3 := v[0]-k, v[1]-k, v[2]-k, v[3]-k
			s0, s1, s2, s3 = s0+d0, s1+d1, s2+d2, s3+d3
			q0, q1, q2, q3 = q0+d0*d0, q1+d1*d1, q2+d2*d2, q3+d3*d3
		}
		for ; i < len(blk); i++ {
			d := blk[i] - k
			s0 += d
			q0 += d * d
		}
		s += float64(s0+s1) + float64(s2+s3)
		ss += float64(q0+q1) + float64(q2+q3)
	}
	return s, ss
}

// gradSums returns sum(d) and sum(d*(x-mean)).
func gradSums(d, xs []float32, mean float32) (a, b float64) {
	xs = xs[:len(d)]
	for len(d) > 0 {
		n := min(len(d), sumBlock)
		bd, bx := d[:n], xs[:n]
		d, xs = d[n:], xs[n:]
		var a0, a1, a2, a3, b0, b1, b2, b3 float32
		i := 0
		for ; i+4 <= n; i += 4 {
			g, v := bd[i:i+4:i+4], bx[i:i+4:i+4]
			a0, a1, a2, a3 = a0+g[0], a1+g[1], a2+g[2], a3+g[3]
			b0, b1, b2, b3 = b0+g[0]*(v[0]-mean), b1+g[1]*(v[1]-mean), b2+g[2]*(v[2]-mean), b3+g[3]*(v[3]-mean)
		}
		for ; i < n; i++ {
			a0 += bd[i]
			b0 += bd[i] * (bx[i] - mean)
		}
		a += float64(a0+a1) + float64(a2+a3)
		b += float64(b0+b1) + float64(b2+b3)
	}
	return a, b
}

// gradSumsReLU is gradSums of d masked where the ReLU output y is 0.
func gradSumsReLU(d, xs, ys []float32, mean float32) (a, b float64) {
	xs, ys = xs[:len(d)], ys[:len(d)]
	for len(d) > 0 {
		n := min(len(d), sumBlock)
		bd, bx, by := d[:n], xs[:n], ys[:n]
		d, xs, ys = d[n:], xs[n:], ys[n:]
		var a0, a1, a2, a3, b0, b1, b2, b3 float32
		i := 0
		for ; i+4 <= n; i += 4 {
			g, v, y := bd[i:i+4:i+4], bx[i:i+4:i+4], by[i:i+4:i+4]
			g0, g1, g2, g3 := maskPos(g[0], y[0]), maskPos(g[1], y[1]), maskPos(g[2], y[2]), maskPos(g[3], y[3])
			a0, a1, a2, a3 = a0+g0, a1+g1, a2+g2, a3+g3
			b0, b1, b2, b3 = b0+g0*(v[0]-mean), b1+g1*(v[1]-mean), b2+g2*(v[2]-mean), b3+g3*(v[3]-mean)
		}
		for ; i < n; i++ {
			g := maskPos(bd[i], by[i])
			a0 += g
			b0 += g * (bx[i] - mean)
		}
		a += float64(a0+a1) + float64(a2+a3)
		b += float64(b0+b1) + float64(b2+b3)
	}
	return a, b
}

// affineReLU sets dst = max(g*src + sh, 0).
func affineReLU(dst, src []float32, g, sh float32) {
	dst = dst[:len(src)]
	for j, v := range src {
		dst[j] = relu32(g*v + sh)
	}
}

// bnBackReLU sets o = g*mask(d) - a*(x-mean) - b, the training-mode
// batch-norm input gradient with the ReLU mask of y. o may be d.
func bnBackReLU(o, d, xs, ys []float32, g, a, b, mean float32) {
	o, xs, ys = o[:len(d)], xs[:len(d)], ys[:len(d)]
	for j, v := range d {
		o[j] = g*maskPos(v, ys[j]) - a*(xs[j]-mean) - b
	}
}

// maskPos returns g where y > 0 and 0 where y == 0, without a branch; y is
// a ReLU output, so never negative.
func maskPos(g, y float32) float32 {
	yb := math.Float32bits(y)
	return math.Float32frombits(math.Float32bits(g) & uint32(-int32(yb)>>31))
}
