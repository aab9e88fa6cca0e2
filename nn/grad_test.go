package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stl-defense/stl/nn/dnnl"
	"github.com/stl-defense/stl/tensor"
)

func randTensor(rng *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

// projLoss is sum(r * y) in float64.
func projLoss(y, r *tensor.Tensor) float64 {
	var s float64
	for i, v := range y.Data {
		s += float64(v) * float64(r.Data[i])
	}
	return s
}

// checkGrads compares the analytic gradients of L = sum(r * layer(x)) with
// central differences, for the input and every trainable parameter, on up
// to maxCheck coordinates each.
func checkGrads(t *testing.T, name string, l Layer, x *tensor.Tensor, train bool, eps, tol float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	y := l.Forward(x, train)
	r := randTensor(rng, y.Shape...)
	params := collectParams(l, "")
	dx := l.Backward(r.Clone(), GradMode{Input: true, Params: true}) // Backward may consume its argument
	dxc := append([]float32(nil), dx.Data...)
	grads := map[*Param][]float32{}
	for _, p := range params {
		if !p.Buffer {
			grads[p] = append([]float32(nil), p.G...)
		}
	}
	// Buffers (BN running stats) change in train forward; save and restore.
	saved := map[*Param][]float32{}
	for _, p := range params {
		if p.Buffer {
			saved[p] = append([]float32(nil), p.W...)
		}
	}
	restore := func() {
		for p, w := range saved {
			copy(p.W, w)
		}
	}
	f := func() float64 { restore(); return projLoss(l.Forward(x, train), r) }
	check := func(what string, vals []float32, analytic []float32) {
		t.Helper()
		idx := rng.Perm(len(vals))
		if len(idx) > 40 {
			idx = idx[:40]
		}
		var maxErr, maxRef float64
		for _, i := range idx {
			old := vals[i]
			vals[i] = old + float32(eps)
			fp := f()
			vals[i] = old - float32(eps)
			fm := f()
			vals[i] = old
			num := (fp - fm) / (2 * eps)
			maxErr = math.Max(maxErr, math.Abs(num-float64(analytic[i])))
			maxRef = math.Max(maxRef, math.Abs(num))
		}
		if maxErr > tol*math.Max(maxRef, 1) {
			t.Errorf("%s: d/d%s: max abs error %.3g (max |grad| %.3g), tol %.3g", name, what, maxErr, maxRef, tol)
		}
		if maxRef == 0 {
			t.Errorf("%s: d/d%s: all numeric gradients zero, test is vacuous", name, what)
		}
	}
	check("input", x.Data, dxc)
	for _, p := range params {
		if !p.Buffer {
			check(p.Name, p.W, grads[p])
		}
	}
}

func TestLayerGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// keepAway moves values away from 0 so that ReLU/max kinks are not
	// crossed by the finite-difference step.
	keepAway := func(x *tensor.Tensor) *tensor.Tensor {
		for i, v := range x.Data {
			if v >= 0 && v < 0.05 {
				x.Data[i] = v + 0.05
			} else if v < 0 && v > -0.05 {
				x.Data[i] = v - 0.05
			}
		}
		return x
	}
	cases := []struct {
		name  string
		layer func() Layer
		shape []int
		train bool
		tol   float64
	}{
		// Max pooling needs values far apart (no near-ties) for finite
		// differences: the "distinct" inputs below.
		{"conv3x3s1p1", func() Layer { return NewConv2D(3, 4, 3, 3, 1, 1, true, 1, rng) }, []int{2, 3, 6, 5}, false, 2e-3},
		{"conv3x3s2p1", func() Layer { return NewConv2D(2, 3, 3, 3, 2, 1, true, 2, rng) }, []int{3, 2, 7, 6}, false, 2e-3},
		{"conv5x3s1p0", func() Layer { return NewConv2D(2, 3, 5, 3, 1, 0, false, 2, rng) }, []int{2, 2, 7, 6}, false, 2e-3},
		{"conv-gonum", func() Layer {
			c := NewConv2D(2, 3, 3, 3, 1, 2, true, 2, rng)
			c.Backend = "im2col-gonum"
			return c
		}, []int{2, 2, 5, 5}, false, 2e-3},
		{"dense", func() Layer { return NewDense(12, 5, rng) }, []int{3, 3, 2, 2}, false, 2e-3},
		// Two blocks of denseMinRows rows (batch and output units).
		{"dense-threads", func() Layer { d := NewDense(6, 2*denseMinRows, rng); d.Threads = 2; return d }, []int{2 * denseMinRows, 6}, false, 2e-3},
		{"bn-train", func() Layer { return NewBatchNorm2D(3, 2) }, []int{4, 3, 3, 3}, true, 5e-3},
		{"bn-eval", func() Layer {
			b := NewBatchNorm2D(3, 1)
			for i := range b.Gamma.W {
				b.Gamma.W[i], b.Beta.W[i], b.RunMean.W[i], b.RunVar.W[i] = 1.5, 0.2, 0.3, 2
			}
			return b
		}, []int{2, 3, 3, 3}, false, 2e-3},
		{"bn-relu-train", func() Layer { b := NewBatchNorm2D(3, 2); b.ReLU = true; return b }, []int{4, 3, 3, 3}, true, 5e-3},
		{"bn-relu-eval", func() Layer {
			b := NewBatchNorm2D(2, 1)
			b.ReLU = true
			b.Beta.W[0], b.RunMean.W[1] = 0.3, -0.2
			return b
		}, []int{2, 2, 3, 3}, false, 2e-3},
		{"residual-relu", func() Layer {
			return &Residual{Body: NewConv2D(2, 2, 3, 3, 1, 1, true, 1, rng), ReLU: true}
		}, []int{2, 2, 4, 4}, false, 2e-3},
		{"relu", func() Layer { return &ReLU{} }, []int{2, 3, 4, 4}, false, 2e-3},
		{"sigmoid", func() Layer { return &Sigmoid{} }, []int{2, 3, 4, 4}, false, 2e-3},
		{"maxpool2", func() Layer { return &MaxPool2D{K: 2, Stride: 2, Threads: 2} }, []int{2, 3, 6, 6}, false, 2e-3},
		{"maxpool2-odd", func() Layer { return &MaxPool2D{K: 2, Stride: 2, Threads: 2} }, []int{2, 3, 7, 5}, false, 2e-3},
		{"maxpool3s2", func() Layer { return &MaxPool2D{K: 3, Stride: 2} }, []int{2, 2, 7, 7}, false, 2e-3},
		{"avgpool2", func() Layer { return &AvgPool2D{K: 2, Stride: 2} }, []int{2, 3, 6, 6}, false, 2e-3},
		{"upsample2", func() Layer { return &Upsample{Factor: 2} }, []int{2, 3, 3, 4}, false, 2e-3},
		{"gap", func() Layer { return &GlobalAvgPool{} }, []int{2, 3, 3, 4}, false, 2e-3},
		{"normalize", func() Layer { return &Normalize{Mean: []float32{0.4, 0.5, 0.6}, Std: []float32{0.2, 0.25, 0.3}} }, []int{2, 3, 3, 3}, false, 2e-3},
		// minParallel values: two goroutines.
		{"normalize-threads", func() Layer {
			return &Normalize{Mean: []float32{0.4, 0.5, 0.6}, Std: []float32{0.2, 0.25, 0.3}, Threads: 2}
		}, []int{3, 3, 64, 64}, false, 2e-3},
		{"shortcutA", func() Layer { return &ShortcutA{In: 2, Out: 4, Stride: 2} }, []int{2, 2, 6, 6}, false, 2e-3},
		{"residual-block", func() Layer {
			return &Residual{
				Body:     NewSequential(NewConv2D(2, 4, 3, 3, 2, 1, false, 1, rng), NewBatchNorm2D(4, 1), &Sigmoid{}, NewConv2D(4, 4, 3, 3, 1, 1, false, 1, rng), NewBatchNorm2D(4, 1)),
				Shortcut: &ShortcutA{In: 2, Out: 4, Stride: 2},
			}
		}, []int{3, 2, 6, 6}, true, 1e-2},
		{"dropout-eval", func() Layer { return &Dropout{P: 0.5} }, []int{2, 3}, false, 2e-3},
		{"dropout-train", func() Layer { return &fixedDropout{Dropout{P: 0.3, Rng: rand.New(rand.NewPCG(3, 3))}} }, []int{4, 5}, true, 2e-3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := keepAway(randTensor(rng, c.shape...))
			if strings.HasPrefix(c.name, "maxpool") {
				for i, p := range rng.Perm(len(x.Data)) {
					x.Data[i] = 0.1*float32(p) - 3
				}
			}
			checkGrads(t, c.name, c.layer(), x, c.train, 1e-2, c.tol)
		})
	}
}

// fixedDropout replays the first mask so that finite differences see the
// same function.
type fixedDropout struct{ Dropout }

func (l *fixedDropout) Forward(x *tensor.Tensor, train bool) *tensor.Tensor {
	if l.mask == nil {
		return l.Dropout.Forward(x, train)
	}
	l.y = buf(l.y, x.Shape...)
	for i, v := range x.Data {
		l.y.Data[i] = v * l.mask[i]
	}
	return l.y
}

// TestMaxPoolTies: with equal values in a window the whole gradient goes
// to one entry (the first in row-major order), in both pooling paths.
func TestMaxPoolTies(t *testing.T) {
	for _, k := range []int{2, 3} {
		l := &MaxPool2D{K: k, Stride: k}
		x := tensor.New(1, 1, k, k) // all zeros: a k x k tie
		l.Forward(x, false)
		dy := tensor.New(1, 1, 1, 1)
		dy.Data[0] = 1
		dx := l.Backward(dy, GradMode{Input: true})
		if dx.Data[0] != 1 {
			t.Errorf("K=%d: dx = %v, want the gradient on the first entry", k, dx.Data)
		}
		var s float32
		for _, v := range dx.Data {
			s += v
		}
		if s != 1 {
			t.Errorf("K=%d: gradient sum %g, want 1", k, s)
		}
	}
}

func TestLossGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	logits := randTensor(rng, 4, 5)
	labels := []int{0, 3, 4, 1}
	targets := tensor.New(4, 5)
	for i := range targets.Data {
		targets.Data[i] = rng.Float32()
	}
	probs := tensor.New(4, 5)
	for i := range probs.Data {
		probs.Data[i] = 0.1 + 0.8*rng.Float32()
	}
	cases := []struct {
		name string
		x    *tensor.Tensor
		f    func(x, g *tensor.Tensor) float64
	}{
		{"softmax-ce", logits, func(x, g *tensor.Tensor) float64 { l, _, _ := SoftmaxCrossEntropy(x, labels, 0, g); return l }},
		{"softmax-ce-smooth", logits, func(x, g *tensor.Tensor) float64 { l, _, _ := SoftmaxCrossEntropy(x, labels, 0.1, g); return l }},
		{"bce-logits", logits, func(x, g *tensor.Tensor) float64 { l, _ := BCEWithLogits(x, targets, g); return l }},
		{"bce", probs, func(x, g *tensor.Tensor) float64 { l, _ := BCE(x, targets, g); return l }},
		{"mse", logits, func(x, g *tensor.Tensor) float64 { l, _ := MSE(x, targets, g); return l }},
	}
	for _, c := range cases {
		g := tensor.New(c.x.Shape...)
		c.f(c.x, g)
		for i := range c.x.Data {
			old := c.x.Data[i]
			const eps = 1e-3
			c.x.Data[i] = old + eps
			fp := c.f(c.x, nil)
			c.x.Data[i] = old - eps
			fm := c.f(c.x, nil)
			c.x.Data[i] = old
			num := (fp - fm) / (2 * eps)
			if math.Abs(num-float64(g.Data[i])) > 1e-3*math.Max(1, math.Abs(num)) {
				t.Errorf("%s: grad[%d] = %g, numeric %g", c.name, i, g.Data[i], num)
			}
		}
	}
}

func TestSoftmaxCrossEntropyKnown(t *testing.T) {
	// Uniform logits over K classes: loss log K, gradient (1/K - onehot)/N.
	x := tensor.New(2, 4)
	g := tensor.New(2, 4)
	loss, _, err := SoftmaxCrossEntropy(x, []int{1, 2}, 0, g)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(loss-math.Log(4)) > 1e-6 {
		t.Errorf("loss %g, want log 4", loss)
	}
	if want := float32((0.25 - 1) / 2); math.Abs(float64(g.Data[1]-want)) > 1e-7 {
		t.Errorf("grad %g, want %g", g.Data[1], want)
	}
	if _, _, err := SoftmaxCrossEntropy(x, []int{1, 4}, 0, nil); err == nil {
		t.Error("label 4 of 4 classes accepted")
	}
	if _, _, err := SoftmaxCrossEntropy(x, []int{1}, 0, nil); err == nil {
		t.Error("label count mismatch accepted")
	}
}

// TestBatchNormInputOnly: asking only for the input gradient (the attacks'
// GradMode, which skips the parameter sums in eval mode) gives the same dx
// as asking for both, in both modes, with and without the fused ReLU.
func TestBatchNormInputOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		name        string
		train, relu bool
	}{{"eval", false, false}, {"eval-relu", false, true}, {"train", true, false}, {"train-relu", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			x := randTensor(rng, 3, 4, 5, 6)
			dy := randTensor(rng, x.Shape...)
			l := NewBatchNorm2D(4, 2)
			l.ReLU = c.relu
			for i := range l.Gamma.W {
				l.Gamma.W[i], l.Beta.W[i], l.RunMean.W[i], l.RunVar.W[i] = 0.5+float32(i), 0.1*float32(i), 0.2, 1.5
			}
			l.Forward(x, c.train)
			want := l.Backward(dy.Clone(), GradMode{Input: true, Params: true}).Clone()
			l.Forward(x, c.train)
			got := l.Backward(dy.Clone(), GradMode{Input: true})
			nonzero := false
			for i, v := range want.Data {
				if math.Abs(float64(got.Data[i]-v)) > 1e-6*math.Max(1, math.Abs(float64(v))) {
					t.Fatalf("dx[%d] = %g with Params false, %g with Params true", i, got.Data[i], v)
				}
				nonzero = nonzero || v != 0
			}
			if !nonzero {
				t.Fatal("dx all zero: test is vacuous")
			}
		})
	}
}

// TestFoldedInference: the inference pass with batch norms folded into the
// convolutions (Sequential.forwardInfer, used by InputGrad) gives the
// logits and input gradients of the plain eval-mode Forward, and the pass
// with activations in the kernels' blocked layout (inferLayout, used by
// Logits) its logits, for both classifiers and every convolution backend,
// with non-trivial running statistics.
func TestFoldedInference(t *testing.T) {
	for _, arch := range []string{ArchVGGSmall, ArchResNet20} {
		for _, backend := range ConvBackends() {
			t.Run(arch+"/"+backend, func(t *testing.T) {
				c := DefaultClassifierConfig()
				c.Arch, c.Height, c.Width, c.Threads, c.ConvBackend = arch, 16, 16, 2, backend
				net, _ := buildClassifier(c)
				sharePool(net, newGradPool())
				rng := rand.New(rand.NewPCG(5, 6))
				folded := 0
				for _, p := range collectParams(net, "") {
					switch localName(p.Name) {
					case "running_mean":
						folded++
						for i := range p.W {
							p.W[i] = 0.3 * float32(rng.NormFloat64())
						}
					case "running_var":
						for i := range p.W {
							p.W[i] = 0.5 + rng.Float32()
						}
					}
					if p.Shape[0] == len(p.W) && (localName(p.Name) == "weight" || localName(p.Name) == "bias") && len(p.Shape) == 1 {
						for i := range p.W { // BN gamma and beta (and dense biases)
							p.W[i] += 0.2 * float32(rng.NormFloat64())
						}
					}
				}
				if folded == 0 {
					t.Fatal("no batch norm: test is vacuous")
				}
				x := randTensor(rng, 4, 3, 16, 16)
				g := randTensor(rng, 4, 10)
				want := net.Forward(x, false).Clone()
				wantDx := net.Backward(g.Clone(), GradMode{Input: true}).Clone()
				gotLayout := net.inferLayout(x).Clone()
				checkBlockedConvs(t, net, arch, backend)
				got := net.forwardInfer(x).Clone()
				nfold := 0
				var count func(l Layer)
				count = func(l Layer) {
					if bn, ok := l.(*BatchNorm2D); ok && bn.folded {
						nfold++
					}
					if c, ok := l.(container); ok {
						for _, ch := range c.Children() {
							count(ch.layer)
						}
					}
				}
				count(net)
				if nfold != folded {
					t.Fatalf("%d of %d batch norms folded", nfold, folded)
				}
				gotDx := net.Backward(g.Clone(), GradMode{Input: true})
				for _, c := range []struct {
					what      string
					got, want *tensor.Tensor
				}{{"logits", got, want}, {"input gradient", gotDx, wantDx}, {"logits in the blocked layout", gotLayout, want}} {
					var scale float64
					for _, v := range c.want.Data {
						scale = math.Max(scale, math.Abs(float64(v)))
					}
					for i, v := range c.want.Data {
						if math.Abs(float64(c.got.Data[i]-v)) > 1e-4*math.Max(scale, 1e-3) {
							t.Fatalf("%s[%d] = %g folded, %g plain (max %g)", c.what, i, c.got.Data[i], v, scale)
						}
					}
				}
			})
		}
	}
}

// checkBlockedConvs checks, after inferLayout, that the convolutions of
// net that should have written the kernels' blocked layout did: with a
// oneDNN backend every convolution followed by another convolution or a
// residual block (vgg-small: the first of each stage; resnet-20: the first
// one and the first of each block); with another none.
func checkBlockedConvs(t *testing.T, net *Sequential, arch, backend string) {
	t.Helper()
	blocked, shortcuts := 0, 0
	eachLayer(net, func(l Layer) {
		switch v := l.(type) {
		case *Conv2D:
			if v.yb != nil {
				blocked++
			}
		case *ShortcutA:
			if v.yb != nil {
				shortcuts++
			}
		}
	})
	want, wantShortcuts := 0, 0
	if strings.HasPrefix(backend, "dnnl") {
		want = map[string]int{ArchVGGSmall: 3, ArchResNet20: 10}[arch]
		if arch == ArchResNet20 {
			wantShortcuts = 2
		}
	}
	if blocked != want || shortcuts != wantShortcuts {
		t.Errorf("%d convolutions and %d shortcuts wrote the blocked layout, want %d and %d", blocked, shortcuts, want, wantShortcuts)
	}
}

// TestBlockedLayers: the option-A shortcut and global average pooling give
// on blocked inputs (nChw8c and nChw16c, channel paddings that are and are
// not multiples of the block) exactly their NCHW results.
func TestBlockedLayers(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, block := range []int{8, 16} {
		for _, sc := range []ShortcutA{{In: 16, Out: 32, Stride: 2}, {In: 32, Out: 64, Stride: 2}, {In: 8, Out: 8, Stride: 1}, {In: 4, Out: 12, Stride: 3}} {
			t.Run(fmt.Sprintf("nChw%dc/%d-%d-s%d", block, sc.In, sc.Out, sc.Stride), func(t *testing.T) {
				x := randTensor(rng, 2, sc.In, 7, 6)
				l := dnnl.Blocked(block)
				xb := make([]float32, l.Len(2, sc.In, 7, 6))
				l.FromNCHW(xb, x.Data, 2, sc.In, 7, 6)
				want := sc.Forward(x, false)
				got := sc.inferBlocked(act{n: 2, c: sc.In, h: 7, w: 6, block: block, data: xb})
				gotPlain := got.plain()
				if !slices.Equal(gotPlain.Shape, want.Shape) || !slices.Equal(gotPlain.Data, want.Data) {
					t.Fatalf("shortcut: blocked result %v differs from NCHW %v", gotPlain.Shape, want.Shape)
				}
				pool := &GlobalAvgPool{}
				wantPool := pool.Forward(want, false).Clone()
				if gotPool := pool.inferAct(got); !slices.Equal(gotPool.Data, wantPool.Data) {
					t.Fatalf("pooling: blocked %v, NCHW %v", gotPool.Data[:4], wantPool.Data[:4])
				}
			})
		}
	}
}

// TestFoldedBackwardRefusesParams: parameter gradients need the
// convolution's own output, which a folded forward does not compute.
func TestFoldedBackwardRefusesParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	s := NewSequential(NewConv2D(2, 3, 3, 3, 1, 1, false, 1, rng), NewBatchNorm2D(3, 1))
	y := s.forwardInfer(randTensor(rng, 2, 2, 5, 5))
	defer func() {
		if recover() == nil {
			t.Error("Backward with Params after a folded forward did not panic")
		}
	}()
	s.Backward(y.Clone(), GradMode{Input: true, Params: true})
}

// TestResidualThreads: the residual addition and its gradient split over
// goroutines (tensors of at least minParallel elements) give bitwise the
// results of one goroutine, with and without a shortcut layer and ReLU.
func TestResidualThreads(t *testing.T) {
	for _, c := range []struct {
		name     string
		relu     bool
		shortcut bool
	}{{"identity", false, false}, {"identity-relu", true, false}, {"shortcut-relu", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, 9))
			x := randTensor(rng, 2, 4, 64, 64)
			if x.Len() < minParallel {
				t.Fatal("input too small to run in parallel")
			}
			dy := randTensor(rng, 2, 4, 64, 64)
			var ys, dxs [2]*tensor.Tensor
			for i, th := range []int{1, 2} {
				l := &Residual{Body: &Sigmoid{}, ReLU: c.relu, Threads: th}
				if c.shortcut {
					l.Shortcut = &Normalize{Mean: []float32{0.1, 0.2, 0.3, 0.4}, Std: []float32{1, 2, 3, 4}}
				}
				ys[i] = l.Forward(x, true).Clone()
				dxs[i] = l.Backward(dy.Clone(), GradMode{Input: true}).Clone()
			}
			for i := range ys[0].Data {
				if ys[0].Data[i] != ys[1].Data[i] || dxs[0].Data[i] != dxs[1].Data[i] {
					t.Fatalf("element %d: y %g / %g, dx %g / %g on 1 / 2 goroutines", i, ys[0].Data[i], ys[1].Data[i], dxs[0].Data[i], dxs[1].Data[i])
				}
			}
		})
	}
}

// TestBackwardStopsAtFirstTrainable: a parameters-only Backward leaves
// out the input gradients no layer needs (the first convolution's, behind a
// parameter-free normalization) and gives the parameter gradients of a
// Backward that computes them all.
func TestBackwardStopsAtFirstTrainable(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	build := func() (*Sequential, *Conv2D) {
		r := rand.New(rand.NewPCG(1, 1))
		conv := NewConv2D(2, 3, 3, 3, 1, 1, true, 1, r)
		return NewSequential(&Normalize{Mean: []float32{0.1, 0.2}, Std: []float32{0.5, 2}}, conv,
			NewBatchNorm2D(3, 1), &ReLU{}, NewConv2D(3, 2, 3, 3, 1, 1, false, 1, r)), conv
	}
	x, dy := randTensor(rng, 2, 2, 5, 5), randTensor(rng, 2, 2, 5, 5)
	var grads [2][]float32
	for i, mode := range []GradMode{{Params: true}, {Params: true, Input: true}} {
		net, conv := build()
		net.Forward(x, true)
		dx := net.Backward(dy.Clone(), mode)
		if got := dx != nil; got != mode.Input {
			t.Errorf("%+v: input gradient returned: %v", mode, got)
		}
		if got := conv.dx != nil; got != mode.Input {
			t.Errorf("%+v: first convolution computed its input gradient: %v", mode, got)
		}
		for _, p := range collectParams(net, "") {
			grads[i] = append(grads[i], p.G...)
		}
	}
	if !slices.Equal(grads[0], grads[1]) {
		t.Error("parameter gradients differ when the input gradient is skipped")
	}
}
