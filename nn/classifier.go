package nn

import (
	"context"
	"fmt"
	"sync"

	"github.com/stl-defense/stl/tensor"
)

// ChunkSize is the number of images a Classifier or DAE pushes through the
// network at once in inference; larger batches are processed in chunks to
// bound memory.
const ChunkSize = 128

// Classifier is an image classifier (vgg-small or resnet-20) with its input
// normalization built in: inputs are (N, C, H, W) pixels in [0, 1] and
// outputs (N, K) logits. It satisfies attack.Model. Its methods are safe for
// concurrent use (they are serialized by a mutex).
type Classifier struct {
	mu     sync.Mutex
	cfg    ClassifierConfig
	net    *Sequential
	drops  []*Dropout
	params []*Param
	gbuf   *tensor.Tensor
	Meta   Metadata // provenance saved with the weights
}

// NewClassifier validates cfg and builds a freshly initialized classifier.
func NewClassifier(cfg ClassifierConfig) (*Classifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Mean = append([]float32(nil), cfg.Mean...)
	cfg.Std = append([]float32(nil), cfg.Std...)
	net, drops := buildClassifier(cfg)
	sharePool(net, newGradPool())
	return &Classifier{cfg: cfg, net: net, drops: drops, params: collectParams(net, "")}, nil
}

// Config returns the configuration the classifier was built with.
func (m *Classifier) Config() ClassifierConfig { return m.cfg }

// Params returns the parameters and buffers in a fixed order, with dotted
// names. The slices alias the model's weights.
func (m *Classifier) Params() []*Param { return m.params }

// InputShape implements attack.Model.
func (m *Classifier) InputShape() (c, h, w int) { return m.cfg.Channels, m.cfg.Height, m.cfg.Width }

// NumClasses implements attack.Model.
func (m *Classifier) NumClasses() int { return m.cfg.Classes }

// SetThreads changes the number of goroutines per layer (results stay
// deterministic for a given count).
func (m *Classifier) SetThreads(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 1 {
		n = 1
	}
	m.cfg.Threads = n
	setThreads(m.net, n)
}

func setThreads(l Layer, n int) {
	eachLayer(l, func(l Layer) {
		switch v := l.(type) {
		case *Conv2D:
			v.Close()
			v.Threads = n
		case *BatchNorm2D:
			v.Threads = n
		case *MaxPool2D:
			v.Threads = n
		case *Residual:
			v.Threads = n
		case *Dense:
			v.Threads = n
		case *Normalize:
			v.Threads = n
		}
	})
}

// checkInput validates an image batch against the expected (C, H, W).
func checkInput(op string, x *tensor.Tensor, c, h, w int) error {
	if x == nil {
		return fmt.Errorf("%s: nil input", op)
	}
	if len(x.Shape) != 4 || x.Shape[1] != c || x.Shape[2] != h || x.Shape[3] != w || x.Shape[0] < 1 {
		return &tensor.ShapeError{Op: op, Want: []int{-1, c, h, w}, Got: x.Shape}
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Logits implements attack.Model: inference-mode logits (N, K) of x (N, C,
// H, W), computed in chunks of ChunkSize, with each batch norm folded into
// the convolution before it (one pass fewer over the activations; equal to
// the layer-by-layer result up to float32 rounding). The result is newly allocated. It
// returns a *tensor.ShapeError for a wrong input shape and ctx's error when
// cancelled between chunks.
func (m *Classifier) Logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	if err := checkInput("nn.Classifier.Logits", x, m.cfg.Channels, m.cfg.Height, m.cfg.Width); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logits(ctx, x)
}

// logits is Logits on a checked x; the caller holds m.mu (or trains m).
func (m *Classifier) logits(ctx context.Context, x *tensor.Tensor) (*tensor.Tensor, error) {
	n, k := x.Shape[0], m.cfg.Classes
	out := tensor.New(n, k)
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+ChunkSize, n)
		y := m.net.inferLayout(x.Batch(lo, hi))
		copy(out.Batch(lo, hi).Data, y.Data)
	}
	return out, nil
}

// InputGrad implements attack.Model. For a batch of at most ChunkSize
// images it runs one inference-mode forward (batch norms folded, as in
// Logits) and backward pass; larger
// batches are forwarded once in chunks to get all logits for seed, then
// each chunk is forwarded again and backpropagated. Both results are newly
// allocated.
func (m *Classifier) InputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (logits, grad *tensor.Tensor, err error) {
	if err := checkInput("nn.Classifier.InputGrad", x, m.cfg.Channels, m.cfg.Height, m.cfg.Width); err != nil {
		return nil, nil, err
	}
	if seed == nil {
		return nil, nil, fmt.Errorf("nn.Classifier.InputGrad: nil seed")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inputGrad(ctx, x, seed)
}

// inputGrad is InputGrad on a checked x; the caller holds m.mu (or trains
// m).
func (m *Classifier) inputGrad(ctx context.Context, x *tensor.Tensor, seed func(logits, g *tensor.Tensor)) (logits, grad *tensor.Tensor, err error) {
	n, k := x.Shape[0], m.cfg.Classes
	logits = tensor.New(n, k)
	grad = tensor.New(x.Shape...)
	g := tensor.New(n, k)
	if n <= ChunkSize {
		copy(logits.Data, m.net.forwardInfer(x).Data)
		seed(logits, g)
		dx := m.net.Backward(g, GradMode{Input: true})
		copy(grad.Data, dx.Data)
		return logits, grad, nil
	}
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hi := min(lo+ChunkSize, n)
		copy(logits.Batch(lo, hi).Data, m.net.forwardInfer(x.Batch(lo, hi)).Data)
	}
	seed(logits, g)
	for lo := 0; lo < n; lo += ChunkSize {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hi := min(lo+ChunkSize, n)
		m.net.forwardInfer(x.Batch(lo, hi))
		dx := m.net.Backward(g.Batch(lo, hi), GradMode{Input: true})
		copy(grad.Batch(lo, hi).Data, dx.Data)
	}
	return logits, grad, nil
}

// trainStep runs a training-mode forward on x, computes the loss with
// labels, backpropagates into the parameter gradients, and returns the
// loss and the number of correct predictions. The caller holds no lock:
// training owns the model.
func (m *Classifier) trainStep(x *tensor.Tensor, labels []int, smoothing float64) (float64, int, error) {
	y := m.net.Forward(x, true)
	m.gbuf = buf(m.gbuf, y.Shape...)
	g := m.gbuf
	loss, correct, err := SoftmaxCrossEntropy(y, labels, smoothing, g)
	if err != nil {
		return 0, 0, err
	}
	m.net.Backward(g, GradMode{Params: true})
	return loss, correct, nil
}
