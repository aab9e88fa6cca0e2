package torchvision

import (
	"fmt"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/nn/graph"
)

// builder assembles a network from a state_dict.
type builder struct {
	b       graph.Builder
	w       *weights
	threads int
}

// convBN adds the convolution prefix+conv (square filter, padding
// filter/2, bias when the state_dict has one) with the batch norm
// prefix+bn folded into it, and a ReLU when relu is set. It returns the
// output and the number of output channels.
func (b *builder) convBN(x graph.Value, conv, bn string, stride int, relu bool) (graph.Value, int, error) {
	w, shape, err := b.w.get(conv+".weight", 4)
	if err != nil {
		return 0, 0, err
	}
	if shape[2] != shape[3] || shape[2]%2 == 0 {
		return 0, 0, &nn.MismatchError{File: b.w.file, Name: conv + ".weight", Got: shape, Reason: "want an odd square filter"}
	}
	spec := graph.ConvSpec{Weight: w, Shape: [4]int(shape), Strides: [2]int{stride, stride}}
	p := shape[2] / 2
	spec.Pads = [4]int{p, p, p, p}
	if b.w.has(conv + ".bias") {
		if spec.Bias, _, err = b.w.get(conv+".bias", 1); err != nil {
			return 0, 0, err
		}
	}
	var v [4][]float32
	for i, n := range []string{"weight", "bias", "running_mean", "running_var"} {
		if v[i], _, err = b.w.get(bn+"."+n, 1); err != nil {
			return 0, 0, err
		}
	}
	if spec, err = spec.FoldBatchNorm(v[0], v[1], v[2], v[3], 1e-5); err != nil {
		return 0, 0, fmt.Errorf("torchvision: %s: %w", bn, err)
	}
	op, err := graph.NewConv(spec, b.threads)
	if err != nil {
		return 0, 0, fmt.Errorf("torchvision: %s: %w", conv, err)
	}
	y := b.b.Node(conv, "Conv+BatchNorm", op, conv, x)
	if relu {
		y = b.relu(y, bn+".relu")
	}
	return y, shape[0], nil
}

func (b *builder) relu(x graph.Value, name string) graph.Value {
	return b.b.Node(name, "ReLU", graph.Layer{L: &nn.ReLU{}}, name, x)
}

// linear adds the dense layer name (weight and bias).
func (b *builder) linear(x graph.Value, name string) (graph.Value, error) {
	w, shape, err := b.w.get(name+".weight", 2)
	if err != nil {
		return 0, err
	}
	bias, _, err := b.w.get(name+".bias", 1)
	if err != nil {
		return 0, err
	}
	op, err := graph.NewLinear(w, shape[0], shape[1], bias, b.threads)
	if err != nil {
		return 0, fmt.Errorf("torchvision: %s: %w", name, err)
	}
	return b.b.Node(name, "Linear", op, name, x), nil
}

// resnetLayers gives the blocks per stage and whether they are
// bottlenecks (torchvision's resnet constructors).
var resnetLayers = map[string]struct {
	blocks     [4]int
	bottleneck bool
}{
	"resnet18": {[4]int{2, 2, 2, 2}, false}, "resnet34": {[4]int{3, 4, 6, 3}, false},
	"resnet50": {[4]int{3, 4, 6, 3}, true}, "resnet101": {[4]int{3, 4, 23, 3}, true}, "resnet152": {[4]int{3, 8, 36, 3}, true},
}

// resnet builds torchvision's ResNet: a 7x7 stride-2 stem, a 3x3 stride-2
// max pool, four stages of basic or bottleneck blocks (the stride of 2 of
// stages 2-4 on the 3x3 convolution, torchvision's "v1.5"), global average
// pooling and fc.
func (b *builder) resnet(x graph.Value, arch string) (graph.Value, error) {
	cfg := resnetLayers[arch]
	x, _, err := b.convBN(x, "conv1", "bn1", 2, true)
	if err != nil {
		return 0, err
	}
	pool, err := graph.NewPool(graph.PoolSpec{Kernel: [2]int{3, 3}, Strides: [2]int{2, 2}, Pads: [4]int{1, 1, 1, 1}}, true)
	if err != nil {
		return 0, err
	}
	x = b.b.Node("maxpool", "MaxPool", pool, "maxpool", x)
	for stage, n := range cfg.blocks {
		if b.w.has(fmt.Sprintf("layer%d.%d.conv1.weight", stage+1, n)) {
			return 0, fmt.Errorf("torchvision: %s: layer%d has more than %d blocks: the weights are not those of %s", b.w.file, stage+1, n, arch)
		}
		for i := range n {
			stride := 1
			if stage > 0 && i == 0 {
				stride = 2
			}
			if x, err = b.block(x, fmt.Sprintf("layer%d.%d.", stage+1, i), stride, cfg.bottleneck); err != nil {
				return 0, err
			}
		}
	}
	x = b.b.Node("avgpool", "GlobalAveragePool", &graph.GlobalAvgPool{}, "avgpool", x)
	x = b.b.Node("flatten", "Flatten", &graph.Reshape{Axis: 1}, "flatten", x)
	return b.linear(x, "fc")
}

// block adds one residual block with prefix p.
func (b *builder) block(x graph.Value, p string, stride int, bottleneck bool) (graph.Value, error) {
	convs := []struct {
		stride int
		relu   bool
	}{{stride, true}, {1, false}}
	if bottleneck {
		convs = []struct {
			stride int
			relu   bool
		}{{1, true}, {stride, true}, {1, false}}
	}
	y := x
	var err error
	for i, c := range convs {
		if y, _, err = b.convBN(y, fmt.Sprintf("%sconv%d", p, i+1), fmt.Sprintf("%sbn%d", p, i+1), c.stride, c.relu); err != nil {
			return 0, err
		}
	}
	short := x
	if b.w.has(p + "downsample.0.weight") {
		if short, _, err = b.convBN(x, p+"downsample.0", p+"downsample.1", stride, false); err != nil {
			return 0, err
		}
	}
	sum := b.b.Node(p+"add", "Add", &graph.Binary{Op: graph.Add}, p+"add", y, short)
	return b.relu(sum, p+"relu"), nil
}

// vggConfigs are torchvision's VGG feature configurations: the number of
// 3x3 convolutions per stage, each stage ending in a 2x2 max pool.
var vggConfigs = map[string][5]int{
	"vgg11_bn": {1, 1, 2, 2, 2}, "vgg13_bn": {2, 2, 2, 2, 2},
	"vgg16_bn": {2, 2, 3, 3, 3}, "vgg19_bn": {2, 2, 4, 4, 4},
}

// vgg builds torchvision's VGG with batch norm: features (conv, BN, ReLU
// triples and max pools, numbered as nn.Sequential numbers them), a 7x7
// adaptive average pool, and the classifier (Linear, ReLU, Dropout,
// Linear, ReLU, Dropout, Linear; dropout is the identity in inference).
func (b *builder) vgg(x graph.Value, arch string) (graph.Value, error) {
	i := 0
	var err error
	for _, n := range vggConfigs[arch] {
		for range n {
			if x, _, err = b.convBN(x, fmt.Sprintf("features.%d", i), fmt.Sprintf("features.%d", i+1), 1, true); err != nil {
				return 0, err
			}
			i += 3
		}
		pool, err := graph.NewPool(graph.PoolSpec{Kernel: [2]int{2, 2}, Strides: [2]int{2, 2}}, true)
		if err != nil {
			return 0, err
		}
		name := fmt.Sprintf("features.%d", i)
		x = b.b.Node(name, "MaxPool", pool, name, x)
		i++
	}
	x = b.b.Node("avgpool", "AdaptiveAvgPool", &graph.AdaptiveAvgPool{OH: 7, OW: 7}, "avgpool", x)
	x = b.b.Node("flatten", "Flatten", &graph.Reshape{Axis: 1}, "flatten", x)
	for j, name := range []string{"classifier.0", "classifier.3", "classifier.6"} {
		if x, err = b.linear(x, name); err != nil {
			return 0, err
		}
		if j < 2 {
			x = b.relu(x, name+".relu")
		}
	}
	return x, nil
}
