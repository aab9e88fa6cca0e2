package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/stl-defense/stl/tensor"
)

// ConvParams describes one 2-D convolution over an NCHW batch: N images of
// C channels and H x W pixels, K output channels, R x S filters, strides
// and zero padding. It mirrors nn/dnnl.ConvParams.
type ConvParams struct{ N, C, H, W, K, R, S, StrideH, StrideW, PadH, PadW int }

// OutHW returns the output height and width, floor((H + 2 PadH - R) /
// StrideH) + 1 and likewise for the width.
func (p ConvParams) OutHW() (oh, ow int) {
	return (p.H+2*p.PadH-p.R)/p.StrideH + 1, (p.W+2*p.PadW-p.S)/p.StrideW + 1
}

// Validate reports parameters that describe no convolution.
func (p ConvParams) Validate() error {
	if p.N < 1 || p.C < 1 || p.H < 1 || p.W < 1 || p.K < 1 || p.R < 1 || p.S < 1 ||
		p.StrideH < 1 || p.StrideW < 1 || p.PadH < 0 || p.PadW < 0 {
		return fmt.Errorf("nn: invalid convolution %+v", p)
	}
	if oh, ow := p.OutHW(); oh < 1 || ow < 1 {
		return fmt.Errorf("nn: convolution %+v has an empty output", p)
	}
	return nil
}

// ConvKernel computes one convolution shape (cross-correlation, as in every
// deep-learning library) forward and backward on raw NCHW slices:
//
//	dst[n,k,oh,ow] = bias[k] + sum_{c,r,s} weight[k,c,r,s] * src[n,c,oh*sh-ph+r,ow*sw-pw+s]
//
// with zero padding. Weight is (K, C, R, S), bias (K) or nil. Every method
// overwrites its destinations. A kernel owns scratch memory and is not safe
// for concurrent use.
type ConvKernel interface {
	Forward(dst, src, weight, bias []float32) error
	BackwardData(dsrc, ddst, weight []float32) error
	BackwardWeights(dweight, dbias, src, ddst []float32) error // dbias may be nil
	Close()
}

// ConvBackend builds kernels for one implementation. threads is the number
// of goroutines (or library threads) a kernel may use. group, when not nil,
// is shared by the kernels of one network, which never run concurrently: a
// backend may keep memory there that all of them use (oneDNN's Workspace).
type ConvBackend func(p ConvParams, threads int, group *KernelGroup) (ConvKernel, error)

// KernelGroup holds backend state shared by the convolution kernels of one
// network. It is safe for concurrent use.
type KernelGroup struct {
	mu   sync.Mutex
	vals map[string]any
}

// Value returns the value stored under key, creating it with create on
// first use.
func (g *KernelGroup) Value(key string, create func() (any, error)) (any, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v, ok := g.vals[key]; ok {
		return v, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	if g.vals == nil {
		g.vals = map[string]any{}
	}
	g.vals[key] = v
	return v, nil
}

var (
	backendsMu sync.Mutex
	backends   = map[string]ConvBackend{
		"im2col": func(p ConvParams, threads int, _ *KernelGroup) (ConvKernel, error) {
			return NewIm2colConv(p, DefaultGemm(), threads)
		},
		"im2col-gonum": func(p ConvParams, threads int, _ *KernelGroup) (ConvKernel, error) {
			return NewIm2colConv(p, GonumGemm{}, threads)
		},
	}
	// preferred lists backends tried in order when none is named.
	preferred = []string{"im2col"}
)

// RegisterConvBackend makes a convolution implementation selectable by
// name; first puts it at the head of the default order. It is meant for
// init functions.
func RegisterConvBackend(name string, b ConvBackend, first bool) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	backends[name] = b
	if first {
		preferred = append([]string{name}, preferred...)
	}
}

// ConvBackends returns the registered backend names, the default first.
func ConvBackends() []string {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	out := append([]string(nil), preferred...)
	for n := range backends {
		found := false
		for _, p := range out {
			found = found || p == n
		}
		if !found {
			out = append(out, n)
		}
	}
	return out
}

// ConvBackendEnv is the environment variable that overrides the default
// convolution backend ("im2col", "im2col-gonum", and "dnnl" and
// "dnnl-direct" when available).
const ConvBackendEnv = "STL_CONV"

// newConvKernel builds a kernel with the named backend, or with the
// environment's or the default one when name is empty, falling back to
// im2col when a preferred backend cannot build this shape.
func newConvKernel(name string, p ConvParams, threads int, group *KernelGroup) (ConvKernel, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if name == "" {
		name = os.Getenv(ConvBackendEnv)
	}
	backendsMu.Lock()
	var order []string
	if name != "" {
		if _, ok := backends[name]; !ok {
			backendsMu.Unlock()
			return nil, fmt.Errorf("nn: unknown convolution backend %q", name)
		}
		order = []string{name}
	} else {
		order = append(order, preferred...)
	}
	bs := make([]ConvBackend, len(order))
	for i, n := range order {
		bs[i] = backends[n]
	}
	backendsMu.Unlock()
	var lastErr error
	for _, b := range bs {
		k, err := b(p, threads, group)
		if err == nil {
			return k, nil
		}
		lastErr = err
	}
	if name == "" {
		return NewIm2colConv(p, DefaultGemm(), threads)
	}
	return nil, lastErr
}

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
	l.x, l.folded = x, true
	bn.x, bn.train, bn.folded = nil, false, true
	bn.y = buf(bn.y, n, K, oh, ow)
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
