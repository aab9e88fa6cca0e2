package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

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

// ReLU is max(x, 0).
type ReLU struct{ y, dx *tensor.Tensor }

// Params implements Layer.
func (*ReLU) Params() []*Param { return nil }

// Forward implements Layer.
func (l *ReLU) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	l.y = buf(l.y, x.Shape...)
	y := l.y.Data[:len(x.Data)]
	for i, v := range x.Data {
		y[i] = relu32(v)
	}
	return l.y
}

// Backward implements Layer; the derivative at 0 is taken as 0.
func (l *ReLU) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	y := l.y.Data[:len(dy.Data)]
	for i, g := range dy.Data {
		dy.Data[i] = maskPos(g, y[i]) // in place
	}
	return dy
}

// Sigmoid is 1 / (1 + exp(-x)).
type Sigmoid struct{ y, dx *tensor.Tensor }

// Params implements Layer.
func (*Sigmoid) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Sigmoid) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	l.y = buf(l.y, x.Shape...)
	for i, v := range x.Data {
		l.y.Data[i] = sigmoid(v)
	}
	return l.y
}

func sigmoid(v float32) float32 { return float32(1 / (1 + math.Exp(-float64(v)))) }

// Backward implements Layer: dx = dy * y * (1 - y).
func (l *Sigmoid) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	for i, g := range dy.Data {
		y := l.y.Data[i]
		dy.Data[i] = g * y * (1 - y) // in place
	}
	return dy
}

// Dropout zeroes each value with probability P in training mode and scales
// the others by 1/(1-P) (inverted dropout); it is the identity in eval
// mode. Its masks come from Rng, which the trainer reseeds per epoch.
type Dropout struct {
	P    float64
	Rng  *rand.Rand
	mask []float32
	y    *tensor.Tensor
	dx   *tensor.Tensor
	on   bool
}

// Params implements Layer.
func (*Dropout) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Dropout) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	l.on = train && l.P > 0
	if !l.on {
		return x
	}
	if len(l.mask) != len(x.Data) {
		l.mask = make([]float32, len(x.Data))
	}
	scale := float32(1 / (1 - l.P))
	l.y = buf(l.y, x.Shape...)
	for i, v := range x.Data {
		m := float32(0)
		if l.Rng.Float64() >= l.P {
			m = scale
		}
		l.mask[i] = m
		l.y.Data[i] = v * m
	}
	return l.y
}

// Backward implements Layer.
func (l *Dropout) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	if !l.on {
		return dy
	}
	l.dx = buf(l.dx, dy.Shape...)
	for i, g := range dy.Data {
		l.dx.Data[i] = g * l.mask[i]
	}
	return l.dx
}

// Dense is a fully connected layer y = x W^T + b with W (Out, In); inputs of
// more than two dimensions are flattened to (N, In).
type Dense struct {
	Weight, Bias *Param
	In, Out      int
	Gemm         Gemm
	Threads      int // goroutines, each multiplying a block of rows
	x            *tensor.Tensor
	y, dx        *tensor.Tensor
}

// denseMinRows is the smallest block of rows worth a goroutine.
const denseMinRows = 16

// rowBlocks runs fn on contiguous blocks of [0, n) rows, on up to threads
// goroutines with at least denseMinRows rows each.
func rowBlocks(threads, n int, fn func(lo, hi int)) {
	parallelFor(min(threads, n/denseMinRows), n, func(_, lo, hi int) { fn(lo, hi) })
}

// NewDense returns a dense layer with PyTorch's default initialization,
// weights uniform in [-1/sqrt(in), 1/sqrt(in)] drawn from rng, and zero
// bias (small initial logits keep the first steps stable).
func NewDense(in, out int, rng *rand.Rand) *Dense {
	l := &Dense{Weight: newParam("weight", true, out, in), Bias: newParam("bias", false, out), In: in, Out: out, Gemm: DefaultGemm()}
	a := 1 / math.Sqrt(float64(in))
	for i := range l.Weight.W {
		l.Weight.W[i] = float32((2*rng.Float64() - 1) * a)
	}
	return l
}

// Params implements Layer.
func (l *Dense) Params() []*Param { return []*Param{l.Weight, l.Bias} }

// Forward implements Layer.
func (l *Dense) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n := x.Shape[0]
	if x.Len() != n*l.In {
		panic(fmt.Sprintf("nn: dense input %v, want %d features", x.Shape, l.In))
	}
	l.x = x
	l.y = buf(l.y, n, l.Out)
	rowBlocks(l.Threads, n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(l.y.Data[i*l.Out:(i+1)*l.Out], l.Bias.W)
		}
		l.Gemm.Sgemm(false, true, hi-lo, l.Out, l.In, 1, x.Data[lo*l.In:], l.In, l.Weight.W, l.In, 1, l.y.Data[lo*l.Out:], l.Out)
	})
	return l.y
}

// Backward implements Layer.
func (l *Dense) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	n := l.x.Shape[0]
	if mode.Params {
		// Blocks of output units: rows of dW.
		rowBlocks(l.Threads, l.Out, func(lo, hi int) {
			l.Gemm.Sgemm(true, false, hi-lo, l.In, n, 1, dy.Data[lo:], l.Out, l.x.Data, l.In, 0, l.Weight.G[lo*l.In:], l.In)
			for o := lo; o < hi; o++ {
				var s float32
				for i := 0; i < n; i++ {
					s += dy.Data[i*l.Out+o]
				}
				l.Bias.G[o] = s
			}
		})
	}
	if !mode.Input {
		return nil
	}
	l.dx = buf(l.dx, l.x.Shape...)
	rowBlocks(l.Threads, n, func(lo, hi int) {
		l.Gemm.Sgemm(false, false, hi-lo, l.In, l.Out, 1, dy.Data[lo*l.Out:], l.Out, l.Weight.W, l.In, 0, l.dx.Data[lo*l.In:], l.In)
	})
	return l.dx
}

// MaxPool2D takes the maximum over K x K windows with stride Stride (no
// padding; the output is floor((H-K)/Stride)+1). Ties go to the first
// maximum in row-major window order.
type MaxPool2D struct {
	K, Stride int
	Threads   int
	pool      *gradPool
	x, y, dx  *tensor.Tensor
	arg       []int32
}

// Params implements Layer.
func (*MaxPool2D) Params() []*Param { return nil }

// Forward implements Layer.
func (l *MaxPool2D) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh, ow := (h-l.K)/l.Stride+1, (w-l.K)/l.Stride+1
	l.x = x
	l.y = buf(l.y, n, c, oh, ow)
	if !(l.K == 2 && l.Stride == 2) && len(l.arg) != len(l.y.Data) {
		l.arg = make([]int32, len(l.y.Data))
	}
	parallelFor(l.Threads, n*c, func(_, lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := x.Data[pl*h*w : (pl+1)*h*w]
			dst := l.y.Data[pl*oh*ow : (pl+1)*oh*ow]
			if l.K == 2 && l.Stride == 2 {
				maxPool2x2(dst, src, w, oh, ow)
				continue
			}
			arg := l.arg[pl*oh*ow : (pl+1)*oh*ow]
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					best, bi := float32(math.Inf(-1)), int32(-1)
					for a := 0; a < l.K; a++ {
						row := (i*l.Stride + a) * w
						for b := 0; b < l.K; b++ {
							idx := row + j*l.Stride + b
							if v := src[idx]; v > best || bi < 0 {
								best, bi = v, int32(idx)
							}
						}
					}
					dst[i*ow+j], arg[i*ow+j] = best, bi
				}
			}
		}
	})
	return l.y
}

// maxPool2x2 is the 2x2, stride-2 case of MaxPool2D.Forward on one plane.
// It keeps no arg-max (branch-free max is several times faster than
// tracking the index); the backward pass finds the maximum again.
func maxPool2x2(dst, src []float32, w, oh, ow int) {
	for i := 0; i < oh; i++ {
		r0 := src[2*i*w : 2*i*w+2*ow]
		r1 := src[(2*i+1)*w : (2*i+1)*w+2*ow]
		d := dst[i*ow : (i+1)*ow]
		for j := range d {
			d[j] = max(max(r0[2*j], r0[2*j+1]), max(r1[2*j], r1[2*j+1]))
		}
	}
}

// maxPool2x2Back routes each output gradient to the first window entry (in
// row-major order) equal to the output, the one Forward's max picked. It
// writes every entry of dx without branches (which entry holds the maximum
// is unpredictable: a switch mispredicts about half the time and ran 4x
// slower); the rows and columns no window covers (odd sizes) are zeroed.
func maxPool2x2Back(dx, dy, src, y []float32, h, w, oh, ow int) {
	if h != 2*oh || w != 2*ow {
		clear(dx)
	}
	for i := 0; i < oh; i++ {
		s0, s1 := src[2*i*w:2*i*w+2*ow], src[(2*i+1)*w:(2*i+1)*w+2*ow]
		d0, d1 := dx[2*i*w:2*i*w+2*ow], dx[(2*i+1)*w:(2*i+1)*w+2*ow]
		ys, gs := y[i*ow:(i+1)*ow], dy[i*ow:(i+1)*ow]
		for j := range ys {
			m, g := ys[j], math.Float32bits(gs[j])
			a, b := s0[2*j:2*j+2:2*j+2], s1[2*j:2*j+2:2*j+2]
			e0 := b2u(a[0] == m)
			e1 := b2u(a[1] == m) &^ e0
			e2 := b2u(b[0] == m) &^ (e0 | e1)
			e3 := 1 &^ (e0 | e1 | e2)
			o0, o1 := d0[2*j:2*j+2:2*j+2], d1[2*j:2*j+2:2*j+2]
			o0[0] = math.Float32frombits(g & -e0)
			o0[1] = math.Float32frombits(g & -e1)
			o1[0] = math.Float32frombits(g & -e2)
			o1[1] = math.Float32frombits(g & -e3)
		}
	}
}

// b2u is 1 for true and 0 for false (compiled to a SETcc, no branch).
func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Backward implements Layer: the gradient goes to the window's maximum.
func (l *MaxPool2D) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	ohw := l.y.Shape[2] * l.y.Shape[3]
	l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
	fast := l.K == 2 && l.Stride == 2
	parallelFor(l.Threads, n*c, func(_, lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			dst := l.dx.Data[pl*h*w : (pl+1)*h*w]
			if fast {
				maxPool2x2Back(dst, dy.Data[pl*ohw:(pl+1)*ohw], l.x.Data[pl*h*w:(pl+1)*h*w], l.y.Data[pl*ohw:(pl+1)*ohw], h, w, l.y.Shape[2], l.y.Shape[3])
				continue
			}
			clear(dst)
			for i, g := range dy.Data[pl*ohw : (pl+1)*ohw] {
				dst[l.arg[pl*ohw+i]] += g
			}
		}
	})
	return l.dx
}

// AvgPool2D averages over K x K windows with stride Stride (no padding).
type AvgPool2D struct {
	K, Stride int
	x, y, dx  *tensor.Tensor
}

// Params implements Layer.
func (*AvgPool2D) Params() []*Param { return nil }

// Forward implements Layer.
func (l *AvgPool2D) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh, ow := (h-l.K)/l.Stride+1, (w-l.K)/l.Stride+1
	l.x = x
	l.y = buf(l.y, n, c, oh, ow)
	inv := 1 / float32(l.K*l.K)
	for pl := 0; pl < n*c; pl++ {
		src, dst := x.Data[pl*h*w:(pl+1)*h*w], l.y.Data[pl*oh*ow:(pl+1)*oh*ow]
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				var s float32
				for a := 0; a < l.K; a++ {
					for b := 0; b < l.K; b++ {
						s += src[(i*l.Stride+a)*w+j*l.Stride+b]
					}
				}
				dst[i*ow+j] = s * inv
			}
		}
	}
	return l.y
}

// Backward implements Layer.
func (l *AvgPool2D) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	oh, ow := l.y.Shape[2], l.y.Shape[3]
	l.dx = buf(l.dx, l.x.Shape...)
	inv := 1 / float32(l.K*l.K)
	for pl := 0; pl < n*c; pl++ {
		dst, g := l.dx.Data[pl*h*w:(pl+1)*h*w], dy.Data[pl*oh*ow:(pl+1)*oh*ow]
		clear(dst)
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				v := g[i*ow+j] * inv
				for a := 0; a < l.K; a++ {
					for b := 0; b < l.K; b++ {
						dst[(i*l.Stride+a)*w+j*l.Stride+b] += v
					}
				}
			}
		}
	}
	return l.dx
}

// Upsample repeats every pixel Factor x Factor times (nearest neighbour).
type Upsample struct {
	Factor int
	pool   *gradPool
	x, y   *tensor.Tensor
	dx     *tensor.Tensor
}

// Params implements Layer.
func (*Upsample) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Upsample) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	f := l.Factor
	l.x = x
	l.y = buf(l.y, n, c, h*f, w*f)
	W := w * f
	for pl := 0; pl < n*c; pl++ {
		src, dst := x.Data[pl*h*w:(pl+1)*h*w], l.y.Data[pl*h*w*f*f:(pl+1)*h*w*f*f]
		for i := 0; i < h*f; i++ {
			srow, drow := src[(i/f)*w:(i/f+1)*w], dst[i*W:(i+1)*W]
			for j := range drow {
				drow[j] = srow[j/f]
			}
		}
	}
	return l.y
}

// Backward implements Layer: each input pixel gets the sum of its copies.
func (l *Upsample) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	f := l.Factor
	W := w * f
	l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
	for pl := 0; pl < n*c; pl++ {
		dst, src := l.dx.Data[pl*h*w:(pl+1)*h*w], dy.Data[pl*h*w*f*f:(pl+1)*h*w*f*f]
		clear(dst)
		for i := 0; i < h*f; i++ {
			srow, drow := src[i*W:(i+1)*W], dst[(i/f)*w:(i/f+1)*w]
			for j, v := range srow {
				drow[j/f] += v
			}
		}
	}
	return l.dx
}

// GlobalAvgPool averages each channel over its pixels: (N, C, H, W) to
// (N, C).
type GlobalAvgPool struct {
	x, y, dx *tensor.Tensor
}

// Params implements Layer.
func (*GlobalAvgPool) Params() []*Param { return nil }

// Forward implements Layer.
func (l *GlobalAvgPool) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Len() / (n * c)
	l.x = x
	l.y = buf(l.y, n, c)
	for pl := 0; pl < n*c; pl++ {
		var s float32
		for _, v := range x.Data[pl*hw : (pl+1)*hw] {
			s += v
		}
		l.y.Data[pl] = s / float32(hw)
	}
	return l.y
}

// Backward implements Layer.
func (l *GlobalAvgPool) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c := l.x.Shape[0], l.x.Shape[1]
	hw := l.x.Len() / (n * c)
	l.dx = buf(l.dx, l.x.Shape...)
	for pl := 0; pl < n*c; pl++ {
		g := dy.Data[pl] / float32(hw)
		d := l.dx.Data[pl*hw : (pl+1)*hw]
		for i := range d {
			d[i] = g
		}
	}
	return l.dx
}

// Flatten reshapes (N, ...) to (N, D) without copying.
type Flatten struct {
	in []int
	y  tensor.Tensor
	dx tensor.Tensor
}

// Params implements Layer.
func (*Flatten) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Flatten) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	l.in = append(l.in[:0], x.Shape...)
	l.y = tensor.Tensor{Shape: []int{x.Shape[0], x.Len() / x.Shape[0]}, Data: x.Data}
	return &l.y
}

// Backward implements Layer.
func (l *Flatten) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	l.dx = tensor.Tensor{Shape: append([]int(nil), l.in...), Data: dy.Data}
	return &l.dx
}

// Normalize maps pixels to (x - Mean[c]) / Std[c] per channel; it is the
// first layer of the classifiers, so their inputs are pixels in [0, 1].
type Normalize struct {
	Mean, Std []float32
	Threads   int // goroutines, each taking a block of image planes
	y, dx     *tensor.Tensor
}

// Params implements Layer; the statistics are fixed configuration.
func (*Normalize) Params() []*Param { return nil }

// Forward implements Layer.
func (l *Normalize) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c := x.Shape[0], x.Shape[1]
	hw := x.Len() / (n * c)
	l.y = buf(l.y, x.Shape...)
	planes(l.Threads, n*c, hw, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			m, s := l.Mean[pl%c], 1/l.Std[pl%c]
			src, dst := x.Data[pl*hw:(pl+1)*hw], l.y.Data[pl*hw:(pl+1)*hw]
			for i, v := range src {
				dst[i] = (v - m) * s
			}
		}
	})
	return l.y
}

// planes runs fn over blocks of [0, n) image planes of hw values each, on
// up to threads goroutines when there are at least minParallel values.
func planes(threads, n, hw int, fn func(lo, hi int)) {
	if n*hw < minParallel {
		threads = 1
	}
	parallelFor(threads, n, func(_, lo, hi int) { fn(lo, hi) })
}

// Backward implements Layer: dx = dy / Std[c].
func (l *Normalize) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c := dy.Shape[0], dy.Shape[1]
	hw := dy.Len() / (n * c)
	planes(l.Threads, n*c, hw, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			s := 1 / l.Std[pl%c]
			d := dy.Data[pl*hw : (pl+1)*hw]
			for i, v := range d {
				d[i] = v * s // in place
			}
		}
	})
	return dy
}

// Residual adds a body and a shortcut applied to the same input:
// y = Body(x) + Shortcut(x), with the identity when Shortcut is nil (He et
// al. 2016), followed by max(y, 0) when ReLU is set.
type Residual struct {
	Body     Layer
	Shortcut Layer
	ReLU     bool
	Threads  int // goroutines for the addition and its gradient
	y, dx    *tensor.Tensor
}

// Params implements Layer.
func (*Residual) Params() []*Param { return nil }

// Children implements container.
func (l *Residual) Children() []namedLayer {
	out := []namedLayer{{"body", l.Body}}
	if l.Shortcut != nil {
		out = append(out, namedLayer{"shortcut", l.Shortcut})
	}
	return out
}

// Forward implements Layer.
func (l *Residual) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	b := l.Body.Forward(x, train)
	s := x
	if l.Shortcut != nil {
		s = l.Shortcut.Forward(x, train)
	}
	return l.add(b, s)
}

// forwardInfer implements inferer.
func (l *Residual) forwardInfer(x *tensor.Tensor) *tensor.Tensor {
	b := forwardInfer(l.Body, x)
	s := x
	if l.Shortcut != nil {
		s = forwardInfer(l.Shortcut, x)
	}
	return l.add(b, s)
}

// add sets the output to b + s (and the ReLU).
func (l *Residual) add(b, s *tensor.Tensor) *tensor.Tensor {
	l.y = buf(l.y, b.Shape...)
	parallelElems(l.Threads, len(b.Data), func(lo, hi int) {
		y, bs, ss := l.y.Data[lo:hi], b.Data[lo:hi], s.Data[lo:hi]
		if l.ReLU {
			for i, v := range bs {
				y[i] = relu32(v + ss[i])
			}
		} else {
			for i, v := range bs {
				y[i] = v + ss[i]
			}
		}
	})
	return l.y
}

// Backward implements Layer.
//
// Layers may consume dy in place, so the shortcut's share is taken (the
// identity's copied into the output buffer) before the body runs.
func (l *Residual) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	// The identity shortcut's share is dy itself (masked): it is copied in
	// the masking pass.
	identity := mode.Input && l.Shortcut == nil
	if identity {
		l.dx = buf(l.dx, dy.Shape...)
	}
	if l.ReLU || identity {
		parallelElems(l.Threads, len(dy.Data), func(lo, hi int) {
			d := dy.Data[lo:hi]
			switch {
			case l.ReLU && identity:
				y, o := l.y.Data[lo:hi], l.dx.Data[lo:hi]
				for i, g := range d {
					g = maskPos(g, y[i])
					d[i], o[i] = g, g // in place, and the shortcut's copy
				}
			case l.ReLU:
				y := l.y.Data[lo:hi]
				for i, g := range d {
					d[i] = maskPos(g, y[i]) // in place
				}
			default:
				copy(l.dx.Data[lo:hi], d)
			}
		})
	}
	var ds *tensor.Tensor
	if mode.Input && l.Shortcut != nil {
		ds = l.Shortcut.Backward(dy, mode)
	}
	db := l.Body.Backward(dy, mode)
	if !mode.Input {
		return nil
	}
	if l.Shortcut != nil {
		l.dx = buf(l.dx, db.Shape...)
		parallelElems(l.Threads, len(db.Data), func(lo, hi int) {
			o, bs, ss := l.dx.Data[lo:hi], db.Data[lo:hi], ds.Data[lo:hi]
			for i, v := range bs {
				o[i] = v + ss[i]
			}
		})
		return l.dx
	}
	parallelElems(l.Threads, len(db.Data), func(lo, hi int) {
		o, bs := l.dx.Data[lo:hi], db.Data[lo:hi]
		for i, v := range bs {
			o[i] += v
		}
	})
	return l.dx
}

// ShortcutA is the parameter-free "option A" shortcut of the CIFAR ResNet
// (He et al. 2016, section 4.2): it subsamples the input with Stride and
// pads the channels with zeros, (Out-In)/2 before and the rest after.
type ShortcutA struct {
	In, Out, Stride int
	x, y, dx        *tensor.Tensor
}

// Params implements Layer.
func (*ShortcutA) Params() []*Param { return nil }

// Forward implements Layer.
func (l *ShortcutA) Forward(x *tensor.Tensor, _ bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	oh, ow := (h+l.Stride-1)/l.Stride, (w+l.Stride-1)/l.Stride
	pad := (l.Out - l.In) / 2
	l.x = x
	l.y = buf(l.y, n, l.Out, oh, ow)
	clear(l.y.Data)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			src := x.Data[(i*c+ch)*h*w : (i*c+ch+1)*h*w]
			dst := l.y.Data[(i*l.Out+ch+pad)*oh*ow : (i*l.Out+ch+pad+1)*oh*ow]
			for a := 0; a < oh; a++ {
				for b := 0; b < ow; b++ {
					dst[a*ow+b] = src[a*l.Stride*w+b*l.Stride]
				}
			}
		}
	}
	return l.y
}

// Backward implements Layer.
func (l *ShortcutA) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	if !mode.Input {
		return nil
	}
	n, c, h, w := l.x.Shape[0], l.x.Shape[1], l.x.Shape[2], l.x.Shape[3]
	oh, ow := l.y.Shape[2], l.y.Shape[3]
	pad := (l.Out - l.In) / 2
	l.dx = buf(l.dx, l.x.Shape...)
	clear(l.dx.Data)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			dst := l.dx.Data[(i*c+ch)*h*w : (i*c+ch+1)*h*w]
			src := dy.Data[(i*l.Out+ch+pad)*oh*ow : (i*l.Out+ch+pad+1)*oh*ow]
			for a := 0; a < oh; a++ {
				for b := 0; b < ow; b++ {
					dst[a*l.Stride*w+b*l.Stride] = src[a*ow+b]
				}
			}
		}
	}
	return l.dx
}
