package nn

import (
	"github.com/stl-defense/stl/nn/dnnl"
	"github.com/stl-defense/stl/tensor"
)

// Inference with activations in the convolution kernels' own layout.
//
// oneDNN computes convolutions on channel-blocked activations (nChw8c with
// AVX2, nChw16c with AVX-512), so a layer on NCHW arrays reorders its input
// into that layout and its output back on every call. In resnet-20's
// inference at batch 128 on AVX2 these reorders took about 15% of the time
// and the residual additions a pass of their own each. Classifier.Logits
// therefore runs the network through inferLayout, which leaves activations
// in the kernels' layout between the layers that can take it:
// convolutions (with the batch norm after them folded in and its ReLU
// fused, as in forwardFoldedBN), residual blocks of convolutions and batch
// norms (whose last convolution adds the shortcut with oneDNN's sum
// post-op and applies the block's ReLU in the same pass, writing into the
// shortcut's buffer), the option-A shortcut and global average pooling.
// A convolution writes the blocked layout only when the next layer takes
// it; every other layer gets NCHW. The logits equal forwardInfer's up to
// float32 rounding.
//
// The pass is inference only: no Backward may follow it (InputGrad uses
// forwardInfer), and a residual block with the identity shortcut writes
// its output over its input, which is always a buffer of the layer before.

// fwdVariant selects a forward pass of a layoutKernel: src and dst in the
// kernel's blocked layout or NCHW, dst's prior contents added (sum) before
// the ReLU (relu).
type fwdVariant struct{ srcBlocked, dstBlocked, sum, relu bool }

// layoutKernel is implemented by convolution kernels that can compute on
// activations in a channel-blocked layout (the oneDNN backends).
type layoutKernel interface {
	// activationBlock returns the channel block b of the layout nChw{b}c
	// (dnnl.Blocked(b)) the kernel computes in, 0 for none.
	activationBlock() int
	// forwardVariant is Forward in the variant v.
	forwardVariant(dst, src, weight, bias []float32, v fwdVariant) error
}

// act is an activation of the inference pass: the tensor t when block is
// 0, else an (n, c, h, w) batch stored in data in the layout
// dnnl.Blocked(block).
type act struct {
	t                 *tensor.Tensor
	n, c, h, w, block int
	data              []float32
}

func plainAct(t *tensor.Tensor) act { return act{t: t} }

// dims returns a's batch, channels, height and width; ok is false for a
// plain tensor that is not 4-D.
func (a act) dims() (n, c, h, w int, ok bool) {
	if a.block > 0 {
		return a.n, a.c, a.h, a.w, true
	}
	if s := a.t.Shape; len(s) == 4 {
		return s[0], s[1], s[2], s[3], true
	}
	return 0, 0, 0, 0, false
}

// plain returns a in NCHW, converting a blocked activation into a new
// tensor.
func (a act) plain() *tensor.Tensor {
	if a.block == 0 {
		return a.t
	}
	t := tensor.New(a.n, a.c, a.h, a.w)
	dnnl.Blocked(a.block).ToNCHW(t.Data, a.data, a.n, a.c, a.h, a.w)
	return t
}

// blockedBuf returns b resized to hold an (n, c, h, w) batch in
// nChw{block}c, reallocated when too small.
func blockedBuf(b []float32, n, c, h, w, block int) []float32 {
	size := dnnl.Blocked(block).Len(n, c, h, w)
	if cap(b) < size {
		return make([]float32, size)
	}
	return b[:size]
}

// inferLayout is forwardInfer of s with activations kept in the kernels'
// layout where they can be (see above); the result is NCHW.
func (s *Sequential) inferLayout(x *tensor.Tensor) *tensor.Tensor {
	return s.inferAct(plainAct(x)).plain()
}

func (s *Sequential) inferAct(x act) act {
	for i := 0; i < len(s.Layers); i++ {
		switch l := s.Layers[i].(type) {
		case *Conv2D:
			var bn *BatchNorm2D
			if b, ok := next(s.Layers, i).(*BatchNorm2D); ok && len(b.Gamma.W) == l.P.K {
				bn = b
				i++
			}
			x = l.inferAct(x, bn, next(s.Layers, i))
		case *Residual:
			x = l.inferAct(x)
		case *GlobalAvgPool:
			x = plainAct(l.inferAct(x))
		default:
			x = plainAct(forwardInfer(l, x.plain()))
		}
	}
	return x
}

// next returns the layer after layers[i], nil after the last.
func next(layers []Layer, i int) Layer {
	if i+1 < len(layers) {
		return layers[i+1]
	}
	return nil
}

// takesBlocked reports whether l's inference pass takes an (n, c, h, w)
// input in nChw{block}c without converting it.
func takesBlocked(l Layer, n, c, h, w, block int) bool {
	switch l := l.(type) {
	case *Conv2D:
		return l.blockAt(n, c, h, w) == block
	case *Residual:
		return l.blockedBody(n, c, h, w, block)
	case *GlobalAvgPool:
		return true
	}
	return false
}

// blockAt returns the activation block of l's kernel for an (n, c, h, w)
// input, 0 when it has none.
func (l *Conv2D) blockAt(n, c, h, w int) int {
	if c != l.P.C {
		return 0
	}
	if k, ok := l.kern(n, h, w).(layoutKernel); ok {
		return k.activationBlock()
	}
	return 0
}

// outHW returns the output height and width of l for an h x w input.
func (l *Conv2D) outHW(h, w int) (oh, ow int) {
	p := l.P
	p.H, p.W = h, w
	return p.OutHW()
}

// inferWeights returns the weights and bias of l followed by bn in inference
// mode (l's own when bn is nil) and whether a ReLU follows.
func (l *Conv2D) inferWeights(bn *BatchNorm2D) (w, b []float32, relu bool) {
	if bn == nil {
		if l.Bias != nil {
			b = l.Bias.W
		}
		return l.Weight.W, b, false
	}
	l.foldBN(bn)
	return l.wf, l.bf, bn.ReLU
}

// inferAct is the inference pass of l followed by bn (nil for none): in
// the kernel's blocked layout when the kernel has one and the input is
// blocked or the consumer, the layer after (nil for none), takes it.
func (l *Conv2D) inferAct(x act, bn *BatchNorm2D, consumer Layer) act {
	n, c, h, w, _ := x.dims()
	block := l.blockAt(n, c, h, w)
	K := l.P.K
	oh, ow := l.outHW(h, w)
	out := block > 0 && consumer != nil && takesBlocked(consumer, n, K, oh, ow, block)
	if block == 0 || x.block != block && !out {
		xt := x.plain()
		if bn != nil {
			return plainAct(l.forwardFoldedBN(xt, bn))
		}
		return plainAct(l.Forward(xt, false))
	}
	k := l.kern(n, h, w).(layoutKernel)
	wt, b, relu := l.inferWeights(bn)
	v := fwdVariant{srcBlocked: x.block == block, dstBlocked: out, relu: relu}
	src := x.data
	if !v.srcBlocked {
		src = x.plain().Data
	}
	if !out {
		l.y = buf(l.y, n, K, oh, ow)
		must(k.forwardVariant(l.y.Data, src, wt, b, v))
		return plainAct(l.y)
	}
	l.yb = blockedBuf(l.yb, n, K, oh, ow, block)
	must(k.forwardVariant(l.yb, src, wt, b, v))
	return act{n: n, c: K, h: oh, w: ow, block: block, data: l.yb}
}

// blockedBody reports whether l's inference pass can run in nChw{block}c
// on an (n, c, h, w) input: its body is pairs of a convolution and a batch
// norm whose kernels all compute in that layout, the last batch norm
// without a ReLU (the block's ReLU follows the addition), and its shortcut
// the identity or option A, matching the body's output shape.
func (l *Residual) blockedBody(n, c, h, w, block int) bool {
	body, ok := l.Body.(*Sequential)
	if !ok || len(body.Layers) < 2 || len(body.Layers)%2 != 0 || block == 0 {
		return false
	}
	c0, h0, w0 := c, h, w
	for i := 0; i < len(body.Layers); i += 2 {
		conv, ok1 := body.Layers[i].(*Conv2D)
		bn, ok2 := body.Layers[i+1].(*BatchNorm2D)
		if !ok1 || !ok2 || len(bn.Gamma.W) != conv.P.K || conv.blockAt(n, c, h, w) != block ||
			i+2 == len(body.Layers) && bn.ReLU {
			return false
		}
		c = conv.P.K
		h, w = conv.outHW(h, w)
	}
	switch sc := l.Shortcut.(type) {
	case nil:
		return c == c0 && h == h0 && w == w0
	case *ShortcutA:
		return sc.In == c0 && sc.Out == c && sc.Out >= sc.In && sc.Stride >= 1 &&
			(h0+sc.Stride-1)/sc.Stride == h && (w0+sc.Stride-1)/sc.Stride == w
	}
	return false
}

// inferAct is the inference pass of l: in the blocked layout when x is
// blocked and blockedBody allows it (the last convolution adds the
// shortcut in place, see above), else forwardInfer.
func (l *Residual) inferAct(x act) act {
	if x.block == 0 || !l.blockedBody(x.n, x.c, x.h, x.w, x.block) {
		return plainAct(forwardInfer(l, x.plain()))
	}
	layers := l.Body.(*Sequential).Layers
	t := x
	for i := 0; i+2 < len(layers); i += 2 {
		t = layers[i].(*Conv2D).inferAct(t, layers[i+1].(*BatchNorm2D), layers[i+2])
	}
	s := x // the identity: the sum goes into the input's buffer
	if sc, ok := l.Shortcut.(*ShortcutA); ok {
		s = sc.inferBlocked(x)
	}
	last, bn := layers[len(layers)-2].(*Conv2D), layers[len(layers)-1].(*BatchNorm2D)
	k := last.kern(t.n, t.h, t.w).(layoutKernel)
	wt, b, _ := last.inferWeights(bn)
	must(k.forwardVariant(s.data, t.data, wt, b, fwdVariant{srcBlocked: true, dstBlocked: true, sum: true, relu: l.ReLU}))
	return s
}

// inferBlocked is Forward on a blocked input, giving a blocked output.
func (l *ShortcutA) inferBlocked(x act) act {
	b, st := x.block, l.Stride
	oh, ow := (x.h+st-1)/st, (x.w+st-1)/st
	l.yb = blockedBuf(l.yb, x.n, l.Out, oh, ow, b)
	clear(l.yb)
	inB, outB := (l.In+b-1)/b, (l.Out+b-1)/b
	pad := (l.Out - l.In) / 2
	for i := 0; i < x.n; i++ {
		for ch := 0; ch < l.In; ch++ {
			co := ch + pad
			src := x.data[(i*inB+ch/b)*x.h*x.w*b+ch%b:]
			dst := l.yb[(i*outB+co/b)*oh*ow*b+co%b:]
			for r := 0; r < oh; r++ {
				for q := 0; q < ow; q++ {
					dst[(r*ow+q)*b] = src[(r*st*x.w+q*st)*b]
				}
			}
		}
	}
	return act{n: x.n, c: l.Out, h: oh, w: ow, block: b, data: l.yb}
}

// inferAct is Forward on a plain or blocked input. The sums run over the
// pixels in the same order in both layouts, so the results are equal.
func (l *GlobalAvgPool) inferAct(x act) *tensor.Tensor {
	if x.block == 0 {
		return l.Forward(x.t, false)
	}
	b, hw := x.block, x.h*x.w
	cb := (x.c + b - 1) / b
	l.y = buf(l.y, x.n, x.c)
	var sums [16]float32
	for i := 0; i < x.n; i++ {
		for g := 0; g < cb; g++ {
			s := sums[:b]
			clear(s)
			blk := x.data[(i*cb+g)*hw*b : (i*cb+g+1)*hw*b]
			for p := 0; p < hw; p++ {
				for j, v := range blk[p*b : (p+1)*b] {
					s[j] += v
				}
			}
			for j := 0; j < b && g*b+j < x.c; j++ {
				l.y.Data[i*x.c+g*b+j] = s[j] / float32(hw)
			}
		}
	}
	return l.y
}
