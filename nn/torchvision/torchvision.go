// Package torchvision loads PyTorch classifiers of torchvision's standard
// architectures (ResNet-18/34/50/101/152 of He et al. 2016, VGG-11/13/16/19
// with batch norm of Simonyan and Zisserman 2015) from their state_dict
// saved as safetensors, by tensor name, into package graph: the network
// torchvision's forward computes, on the project's kernels, with the input
// normalization in front so that inputs are pixels in [0, 1].
//
// Channel widths and the number of classes are read from the tensors'
// shapes, so width-reduced variants and fine-tuned heads load as well; the
// block structure must be the architecture's.
package torchvision

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/nlpodyssey/safetensors"

	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/nn/graph"
)

// ImageNet's per-channel pixel statistics, torchvision's normalization and
// the default.
var (
	ImageNetMean = []float32{0.485, 0.456, 0.406}
	ImageNetStd  = []float32{0.229, 0.224, 0.225}
)

// Archs lists the architecture names Load accepts, as torchvision's
// constructors are named.
var Archs = []string{"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"}

// Options says how to build a state_dict's network.
type Options struct {
	Arch    string    `json:"arch"`          // one of Archs
	Size    int       `json:"size,omitzero"` // input height and width in pixels; default 224
	Mean    []float32 `json:"mean,omitempty"`
	Std     []float32 `json:"std,omitempty"` // input normalization; default ImageNetMean, ImageNetStd
	Threads int       `json:"-"`             // goroutines per kernel; default 1
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if o.Size == 0 {
		o.Size = 224
	}
	if o.Mean == nil {
		o.Mean = ImageNetMean
	}
	if o.Std == nil {
		o.Std = ImageNetStd
	}
	o.Threads = max(o.Threads, 1)
	return o
}

// Validate reports the first invalid field as an *option.Error.
func (o Options) Validate() error {
	o = o.withDefaults()
	bad := func(f string, v any, r string) error { return option.New("torchvision", "Options."+f, v, r) }
	if !slices.Contains(Archs, o.Arch) {
		return bad("Arch", fmt.Sprintf("%q", o.Arch), "want one of "+strings.Join(Archs, ", "))
	}
	if o.Size < 16 || o.Size > 2048 {
		return bad("Size", o.Size, "want 16 to 2048 pixels")
	}
	if len(o.Mean) != 3 || len(o.Std) != 3 {
		return bad("Mean/Std", fmt.Sprintf("%v/%v", o.Mean, o.Std), "want 3 values each (RGB)")
	}
	for _, s := range o.Std {
		if !(s > 0) {
			return bad("Std", o.Std, "must be positive")
		}
	}
	return nil
}

// ParseSpec reads a model argument of the form ARCH[@SIZE]:FILE, for
// example "resnet50:weights.safetensors" or "resnet18@32:w.safetensors".
// ok is false when spec does not start with an architecture name (it is
// then a plain path).
func ParseSpec(spec string) (path string, o Options, ok bool, err error) {
	head, path, found := strings.Cut(spec, ":")
	if !found {
		return spec, o, false, nil
	}
	arch, size, sized := strings.Cut(head, "@")
	if !slices.Contains(Archs, arch) {
		return spec, o, false, nil
	}
	o.Arch = arch
	if sized {
		if _, err := fmt.Sscanf(size, "%d", &o.Size); err != nil || fmt.Sprint(o.Size) != size {
			return path, o, true, fmt.Errorf("torchvision: model %q: size %q is not a number of pixels", spec, size)
		}
	}
	return path, o, true, o.Validate()
}

// Sidecar returns the options stored next to a weights file, in the file's
// name with ".json" appended ({"arch": ..., "size": ..., "mean": [...],
// "std": [...]}), over base; a missing sidecar returns base.
func Sidecar(path string, base Options) (Options, error) {
	b, err := os.ReadFile(path + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return base, nil
	}
	if err != nil {
		return base, fmt.Errorf("torchvision: %w", err)
	}
	o := base
	if err := json.Unmarshal(b, &o); err != nil {
		return base, fmt.Errorf("torchvision: %s.json: %w", path, err)
	}
	if base.Arch != "" {
		o.Arch = base.Arch // the command line names it
	}
	if base.Size != 0 {
		o.Size = base.Size
	}
	return o, nil
}

// Load reads a state_dict saved as safetensors and builds the network of
// o.Arch from it. Every tensor of the architecture must be present (F32)
// with a fitting shape, and no other (num_batches_tracked counters aside).
func Load(path string, o Options) (*graph.Model, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("torchvision: %w", err)
	}
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return nil, fmt.Errorf("torchvision: %s: %w", path, err)
	}
	w := &weights{st: st, file: path, used: map[string]bool{}}
	b := &builder{w: w, threads: o.Threads}
	x := b.b.Input("x")
	norm, err := graph.NewNormalize(o.Mean, o.Std, o.Threads)
	if err != nil {
		return nil, err
	}
	x = b.b.Node("normalize", "Normalize", norm, "normalize", x)
	if strings.HasPrefix(o.Arch, "resnet") {
		x, err = b.resnet(x, o.Arch)
	} else {
		x, err = b.vgg(x, o.Arch)
	}
	if err != nil {
		return nil, fmt.Errorf("torchvision: reading %s as %s: %w", path, o.Arch, err)
	}
	for _, n := range st.Names() {
		if !w.used[n] && !strings.HasSuffix(n, "num_batches_tracked") {
			return nil, fmt.Errorf("torchvision: %s: unexpected tensor %q: the weights are not those of %s", path, n, o.Arch)
		}
	}
	g, err := b.b.Build(x)
	if err != nil {
		return nil, fmt.Errorf("torchvision: %w", err)
	}
	m, err := graph.NewModel(g, 3, o.Size, o.Size)
	if err != nil {
		return nil, fmt.Errorf("torchvision: %s as %s at %d px: %w", path, o.Arch, o.Size, err)
	}
	return m, nil
}

// weights reads named tensors of a state_dict.
type weights struct {
	st   safetensors.SafeTensors
	file string
	used map[string]bool
}

func (w *weights) has(name string) bool {
	_, ok := w.st.Tensor(name)
	return ok
}

// get returns the values and shape of tensor name, which must have rank
// dims.
func (w *weights) get(name string, dims int) ([]float32, []int, error) {
	v, ok := w.st.Tensor(name)
	if !ok {
		return nil, nil, &nn.MismatchError{File: w.file, Name: name, Reason: "missing"}
	}
	if v.DType() != safetensors.F32 {
		return nil, nil, &nn.MismatchError{File: w.file, Name: name, Reason: fmt.Sprintf("dtype %s, want F32", v.DType())}
	}
	shape := make([]int, len(v.Shape()))
	for i, d := range v.Shape() {
		shape[i] = int(d)
	}
	if len(shape) != dims {
		return nil, nil, &nn.MismatchError{File: w.file, Name: name, Got: shape, Reason: fmt.Sprintf("shape %v, want %d dimensions", shape, dims)}
	}
	b := v.Data()
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	w.used[name] = true
	return out, shape, nil
}
