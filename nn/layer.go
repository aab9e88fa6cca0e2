package nn

import (
	"sync"

	"github.com/stl-defense/stl/tensor"
)

// Param is one named array of a network: a trainable weight with its
// gradient, or a buffer such as a batch-norm running mean (Buffer true, G
// nil) that is saved and loaded but not optimized.
type Param struct {
	Name   string    // full dotted name, set when the network is assembled
	Shape  []int     // shape of W
	W      []float32 // values
	G      []float32 // gradient, len(W); nil for buffers
	Decay  bool      // weight decay applies (conv and dense weights, not biases or BN)
	Buffer bool      // not trainable
}

func newParam(name string, decay bool, shape ...int) *Param {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return &Param{Name: name, Shape: append([]int(nil), shape...), W: make([]float32, n), G: make([]float32, n), Decay: decay}
}

func newBuffer(name string, shape ...int) *Param {
	p := newParam(name, false, shape...)
	p.G, p.Buffer = nil, true
	return p
}

// GradMode says which gradients a Backward call must produce.
type GradMode struct {
	Input  bool // return dL/dx (otherwise Backward may return nil)
	Params bool // set the G of every trainable Param of the layer
}

// Layer is one differentiable operation on (N, ...) batches.
//
// Forward computes the output for x and caches what Backward needs; train
// selects training behaviour (batch statistics, dropout). The returned
// tensor is owned by the layer and overwritten by its next Forward.
// Backward takes dL/dy for the last Forward and, as mode asks, returns
// dL/dx and overwrites the gradients of the layer's parameters. Backward
// consumes dy: element-wise layers (batch norm, ReLU, sigmoid, input
// normalization) compute dL/dx in place in dy's storage to save memory, so
// callers must not reuse dy; otherwise dL/dx is owned by the layer. Shapes are internal invariants: a network checks its input
// once at the boundary, layers panic on inconsistent shapes.
// Layers are not safe for concurrent use.
type Layer interface {
	Forward(x *tensor.Tensor, train bool) *tensor.Tensor
	Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor
	// Params returns the layer's own parameters and buffers (not those of
	// children), with local names.
	Params() []*Param
}

// container is a Layer made of other layers.
type container interface {
	Children() []namedLayer
}

type namedLayer struct {
	name  string
	layer Layer
}

// collectParams walks a layer tree and returns all parameters, renaming
// them with their dotted path ("3.body.0.weight").
func collectParams(l Layer, prefix string) []*Param {
	var out []*Param
	for _, p := range l.Params() {
		p.Name = prefix + localName(p.Name)
		out = append(out, p)
	}
	if c, ok := l.(container); ok {
		for _, ch := range c.Children() {
			out = append(out, collectParams(ch.layer, prefix+ch.name+".")...)
		}
	}
	return out
}

func localName(n string) string {
	for i := len(n) - 1; i >= 0; i-- {
		if n[i] == '.' {
			return n[i+1:]
		}
	}
	return n
}

// buf returns t when it already has the given shape, otherwise a new
// zero tensor. Layers use it to reuse their output buffers.
func buf(t *tensor.Tensor, shape ...int) *tensor.Tensor {
	if t != nil && len(t.Shape) == len(shape) {
		same := true
		for i := range shape {
			if t.Shape[i] != shape[i] {
				same = false
				break
			}
		}
		if same {
			return t
		}
	}
	return tensor.New(shape...)
}

// Sequential applies layers in order.
type Sequential struct {
	Layers []Layer
}

// NewSequential returns a Sequential of the given layers.
func NewSequential(layers ...Layer) *Sequential { return &Sequential{Layers: layers} }

// Forward implements Layer.
func (s *Sequential) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	for _, l := range s.Layers {
		x = l.Forward(x, train)
	}
	return x
}

// inferer is implemented by layers with a faster inference-mode forward
// pass after which Backward supports input gradients only
// (GradMode{Input: true}): the classifiers' Logits and InputGrad.
type inferer interface {
	forwardInfer(x *tensor.Tensor) *tensor.Tensor
}

// forwardInfer runs l in inference mode, through its inferer pass if any.
func forwardInfer(l Layer, x *tensor.Tensor) *tensor.Tensor {
	if v, ok := l.(inferer); ok {
		return v.forwardInfer(x)
	}
	return l.Forward(x, false)
}

// forwardInfer implements inferer: Forward(x, false) with every
// convolution that is followed by a batch norm computed as one convolution
// with the batch norm (and its ReLU) folded in (Conv2D.forwardFoldedBN).
func (s *Sequential) forwardInfer(x *tensor.Tensor) *tensor.Tensor {
	for i := 0; i < len(s.Layers); i++ {
		if c, ok := s.Layers[i].(*Conv2D); ok && i+1 < len(s.Layers) {
			if bn, ok := s.Layers[i+1].(*BatchNorm2D); ok && len(bn.Gamma.W) == c.P.K {
				x = c.forwardFoldedBN(x, bn)
				i++
				continue
			}
		}
		x = forwardInfer(s.Layers[i], x)
	}
	return x
}

// Backward implements Layer. Inner layers propagate the input gradient as
// far as it is needed: to the first layer when mode.Input is set, else to
// the first layer with trainable parameters, which computes none (in the
// classifiers the first convolution's input gradient, which only the
// parameter-free input normalization before it would take, is skipped).
func (s *Sequential) Backward(dy *tensor.Tensor, mode GradMode) *tensor.Tensor {
	first := 0
	if !mode.Input {
		first = len(s.Layers)
		for i, l := range s.Layers {
			if trainable(l) {
				first = i
				break
			}
		}
	}
	for i := len(s.Layers) - 1; i >= first; i-- {
		m := mode
		m.Input = mode.Input || i > first
		dy = s.Layers[i].Backward(dy, m)
	}
	if !mode.Input {
		return nil
	}
	return dy
}

// trainable reports whether l or a layer below it has a parameter that is
// not a buffer.
func trainable(l Layer) (t bool) {
	eachLayer(l, func(l Layer) {
		for _, p := range l.Params() {
			t = t || !p.Buffer
		}
	})
	return t
}

// Params implements Layer; a Sequential has no parameters of its own.
func (s *Sequential) Params() []*Param { return nil }

// Children implements container.
func (s *Sequential) Children() []namedLayer {
	out := make([]namedLayer, len(s.Layers))
	for i, l := range s.Layers {
		out[i] = namedLayer{itoa(i), l}
	}
	return out
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// parallelFor splits [0, n) into at most threads contiguous chunks and runs
// fn(worker, lo, hi) for each on its own goroutine, waiting for all. The
// partition depends only on n and threads, which keeps reductions in worker
// order deterministic.
func parallelFor(threads, n int, fn func(worker, lo, hi int)) {
	if threads < 1 {
		threads = 1
	}
	if threads > n {
		threads = n
	}
	if threads <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < threads; w++ {
		lo, hi := w*n/threads, (w+1)*n/threads
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(w, lo, hi)
		}()
	}
	wg.Wait()
}

// minParallel is the number of elements below which parallelElems stays
// on one goroutine: starting and joining goroutines costs a few
// microseconds, the time of a pass over about this many floats.
const minParallel = 1 << 15

// parallelElems runs fn over contiguous chunks of [0, n) on at most threads
// goroutines (one for small n) and waits for all.
func parallelElems(threads, n int, fn func(lo, hi int)) {
	if n < minParallel {
		threads = 1
	}
	parallelFor(threads, n, func(_, lo, hi int) { fn(lo, hi) })
}

// gradPool shares input-gradient buffers among the layers of one network:
// an input gradient is dead once the layer before has consumed it, so two
// buffers per shape serve a whole chain (the one that is not the incoming
// gradient is handed out). Residual blocks keep their own output buffers,
// which the pool never hands out. A nil pool falls back to the layer's own
// buffer. Not safe for concurrent use (one per network).
type gradPool struct {
	bufs  map[[5]int][2]*tensor.Tensor
	group *KernelGroup // convolution backend state of the network
}

// get returns a tensor of the given shape whose storage differs from
// avoid's; own is the caller's buffer, used when p is nil.
func (p *gradPool) get(own, avoid *tensor.Tensor, shape ...int) *tensor.Tensor {
	if p == nil || len(shape) > 4 {
		return buf(own, shape...)
	}
	var key [5]int
	key[0] = len(shape)
	copy(key[1:], shape)
	pair := p.bufs[key]
	for i, t := range pair {
		if t == nil {
			t = tensor.New(shape...)
			pair[i] = t
			p.bufs[key] = pair
		}
		if avoid == nil || len(avoid.Data) == 0 || &avoid.Data[0] != &t.Data[0] {
			return t
		}
	}
	panic("nn: gradPool: both buffers alias the incoming gradient")
}

// eachLayer calls f on l and on every layer below it, parents first.
func eachLayer(l Layer, f func(Layer)) {
	f(l)
	if c, ok := l.(container); ok {
		for _, ch := range c.Children() {
			eachLayer(ch.layer, f)
		}
	}
}

// sharePool gives every pooled layer of a network the same gradPool.
func sharePool(l Layer, p *gradPool) {
	eachLayer(l, func(l Layer) {
		switch v := l.(type) {
		case *Conv2D:
			v.pool = p
		case *MaxPool2D:
			v.pool = p
		case *Upsample:
			v.pool = p
		}
	})
}

func newGradPool() *gradPool {
	return &gradPool{bufs: map[[5]int][2]*tensor.Tensor{}, group: &KernelGroup{}}
}
