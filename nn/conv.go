package nn

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/stl-defense/stl/tensor"
)

// Conv2D is a 2-D convolution layer with weight (K, C, R, S) and an
// optional bias (K). It caches one ConvKernel per input batch shape.
type Conv2D struct {
	P            ConvParams // N, H, W are taken from the input
	Weight, Bias *Param     // Bias nil when the layer has none
	Threads      int
	Backend      string         // "" for the default (see ConvBackendEnv)
	kernels      []cachedKernel // most recently used first
	pool         *gradPool
	x, y, dx     *tensor.Tensor
	wf, bf       []float32 // weights and bias with a batch norm folded in (forwardFoldedBN)
	folded       bool      // the last forward used wf and bf
	yb           []float32 // blocked-layout output of inferAct
}

// NewConv2D returns a convolution from c to k channels with an r x s
// filter, the given stride and padding, and a bias when bias is set. The
// weights are drawn by He (Kaiming) normal initialization, std
// sqrt(2 / (c*r*s)), from rng.
func NewConv2D(c, k, r, s, stride, pad int, bias bool, threads int, rng *rand.Rand) *Conv2D {
	l := &Conv2D{P: ConvParams{C: c, K: k, R: r, S: s, StrideH: stride, StrideW: stride, PadH: pad, PadW: pad}, Threads: threads}
	l.Weight = newParam("weight", true, k, c, r, s)
	std := math.Sqrt(2 / float64(c*r*s))
	for i := range l.Weight.W {
		l.Weight.W[i] = float32(rng.NormFloat64() * std)
	}
	if bias {
		l.Bias = newParam("bias", false, k)
	}
	return l
}

// Params implements Layer.
func (l *Conv2D) Params() []*Param {
	if l.Bias != nil {
		return []*Param{l.Weight, l.Bias}
	}
	return []*Param{l.Weight}
}

type cachedKernel struct {
	p ConvParams
	k ConvKernel
}

// maxKernels bounds the kernels a layer caches: training batches, the last
// partial batch and inference chunks are typically all it sees.
const maxKernels = 4

// kern returns the cached kernel for this batch shape, building it (and
// evicting the least recently used one) when needed.
func (l *Conv2D) kern(n, h, w int) ConvKernel {
	p := l.P
	p.N, p.H, p.W = n, h, w
	for i, c := range l.kernels {
		if c.p == p {
			if i > 0 {
				copy(l.kernels[1:i+1], l.kernels[:i])
				l.kernels[0] = c
			}
			return c.k
		}
	}
	var group *KernelGroup
	if l.pool != nil {
		group = l.pool.group
	}
	k, err := newConvKernel(l.Backend, p, l.Threads, group)
	if err != nil {
		panic(fmt.Sprintf("nn: conv kernel: %v", err))
	}
	if len(l.kernels) == maxKernels {
		l.kernels[maxKernels-1].k.Close()
		l.kernels = l.kernels[:maxKernels-1]
	}
	l.kernels = append([]cachedKernel{{p, k}}, l.kernels...)
	return k
}

// Close releases the cached kernels.
func (l *Conv2D) Close() {
	for _, c := range l.kernels {
		c.k.Close()
	}
	l.kernels = nil
}

// reluForwarder is implemented by kernels that can apply max(0, .) to the
// forward output in the same pass.
type reluForwarder interface {
	ForwardReLU(dst, src, weight, bias []float32) error
}

// forwardFoldedBN computes bn(l(x)) in inference mode as one convolution
// with the batch norm folded into it: with s = gamma / sqrt(var + Eps) from
// the running statistics, w'[k] = s[k] w[k] and b'[k] = s[k] (b[k] - mean[k])
// + beta[k]; with bn.ReLU the kernel applies the ReLU when it can
// (reluForwarder), else a pass in Go. This saves the batch norm's pass over
// the activations. It leaves l and bn in the state their Backward needs for
// an input gradient (GradMode{Input: true}), which then differentiates the
// folded convolution: bn's Backward only applies the ReLU's mask (or
// nothing), l's multiplies by the folded weights. Neither can produce
// parameter gradients after it (they need the convolution's own output).
func (l *Conv2D) forwardFoldedBN(x *tensor.Tensor, bn *BatchNorm2D) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	if c != l.P.C {
		panic(fmt.Sprintf("nn: conv input has %d channels, want %d", c, l.P.C))
	}
	k := l.kern(n, h, w)
	oh, ow := l.kernels[0].p.OutHW()
	l.foldBN(bn)
	l.x, l.folded = x, true
	bn.x, bn.train, bn.folded = nil, false, true
	bn.y = buf(bn.y, n, l.P.K, oh, ow)
	y := bn.y.Data
	if r, ok := k.(reluForwarder); ok && bn.ReLU {
		must(r.ForwardReLU(y, x.Data, l.wf, l.bf))
		return bn.y
	}
	must(k.Forward(y, x.Data, l.wf, l.bf))
	if bn.ReLU {
		for i, v := range y {
			y[i] = relu32(v)
		}
	}
	return bn.y
}

// foldBN sets l.wf and l.bf to the weights and bias of l followed by bn in
// inference mode (see forwardFoldedBN), and bn's mean and invStd to the
// statistics it used.
func (l *Conv2D) foldBN(bn *BatchNorm2D) {
	K := l.P.K
	per := len(l.Weight.W) / K
	if len(l.wf) != len(l.Weight.W) {
		l.wf, l.bf = make([]float32, len(l.Weight.W)), make([]float32, K)
	}
	for ch := 0; ch < K; ch++ {
		inv := 1 / math.Sqrt(float64(bn.RunVar.W[ch])+bn.Eps)
		mean := bn.RunMean.W[ch]
		bn.mean[ch], bn.invStd[ch] = mean, float32(inv)
		s := float32(float64(bn.Gamma.W[ch]) * inv)
		b := -mean
		if l.Bias != nil {
			b += l.Bias.W[ch]
		}
		l.bf[ch] = s*b + bn.Beta.W[ch]
		for i, v := range l.Weight.W[ch*per : (ch+1)*per] {
			l.wf[ch*per+i] = s * v
		}
	}
}

// backwardBoth is implemented by kernels that compute both backward passes
// in one call more cheaply than separately (oneDNN reorders dy once).
type backwardBoth interface {
	Backward(dsrc, dweight, dbias, src, ddst, weight []float32) error
}

// Forward implements Layer.
func (l *Conv2D) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	n, c, h, w := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	if c != l.P.C {
		panic(fmt.Sprintf("nn: conv input has %d channels, want %d", c, l.P.C))
	}
	k := l.kern(n, h, w)
	oh, ow := l.kernels[0].p.OutHW()
	l.x, l.folded = x, false
	l.y = buf(l.y, n, l.P.K, oh, ow)
	var b []float32
	if l.Bias != nil {
		b = l.Bias.W
	}
	must(k.Forward(l.y.Data, x.Data, l.Weight.W, b))
	return l.y
}

// Backward implements Layer.
func (l *Conv2D) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	k := l.kern(l.x.Shape[0], l.x.Shape[2], l.x.Shape[3])
	if l.folded {
		if mode.Params {
			panic("nn: Conv2D: parameter gradients after a forward with a batch norm folded in")
		}
		if !mode.Input {
			return nil
		}
		l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
		must(k.BackwardData(l.dx.Data, dy.Data, l.wf))
		return l.dx
	}
	if kb, ok := k.(backwardBoth); ok && mode.Params && mode.Input {
		var db []float32
		if l.Bias != nil {
			db = l.Bias.G
		}
		l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
		must(kb.Backward(l.dx.Data, l.Weight.G, db, l.x.Data, dy.Data, l.Weight.W))
		return l.dx
	}
	if mode.Params {
		var db []float32
		if l.Bias != nil {
			db = l.Bias.G
		}
		must(k.BackwardWeights(l.Weight.G, db, l.x.Data, dy.Data))
	}
	if !mode.Input {
		return nil
	}
	l.dx = l.pool.get(l.dx, dy, l.x.Shape...)
	must(k.BackwardData(l.dx.Data, dy.Data, l.Weight.W))
	return l.dx
}

func must(err error) {
	if err != nil {
		panic("nn: " + err.Error())
	}
}
