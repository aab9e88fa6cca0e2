package nn

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"

	"github.com/stl-defense/stl/internal/option"
)

// Architecture names accepted by ClassifierConfig.Arch.
const (
	ArchVGGSmall = "vgg-small"
	ArchResNet20 = "resnet-20"
	ArchDAE      = "dae"
)

// ClassifierArch describes a classifier architecture ClassifierConfig.Arch
// accepts.
type ClassifierArch struct {
	Name string
	// SizeMultiple is what the input height and width must be multiples
	// of: the network's total downsampling.
	SizeMultiple int
	// Dropout reports whether the network has the dropout layers
	// ClassifierConfig.Dropout configures.
	Dropout bool
}

// classifierArchs are the classifier architectures, the default first.
var classifierArchs = []ClassifierArch{
	{Name: ArchVGGSmall, SizeMultiple: 8, Dropout: true},
	{Name: ArchResNet20, SizeMultiple: 4},
}

// ClassifierArchs returns the classifier architectures, the default first.
// The caller may modify the returned slice.
func ClassifierArchs() []ClassifierArch { return append([]ClassifierArch(nil), classifierArchs...) }

// ClassifierArchNames returns the names of ClassifierArchs, in order.
func ClassifierArchNames() []string {
	names := make([]string, len(classifierArchs))
	for i, a := range classifierArchs {
		names[i] = a.Name
	}
	return names
}

// LookupClassifierArch returns the named classifier architecture and
// whether it exists.
func LookupClassifierArch(name string) (ClassifierArch, bool) {
	i := slices.IndexFunc(classifierArchs, func(a ClassifierArch) bool { return a.Name == name })
	if i < 0 {
		return ClassifierArch{}, false
	}
	return classifierArchs[i], true
}

// CIFAR-10 per-channel pixel statistics, the default input normalization.
var (
	CIFARMean = []float32{0.4914, 0.4822, 0.4465}
	CIFARStd  = []float32{0.2470, 0.2435, 0.2616}
)

// ClassifierConfig describes a classifier to build. The zero value is not
// valid; start from DefaultClassifierConfig.
type ClassifierConfig struct {
	Arch     string    `json:"arch"`     // ArchVGGSmall (default) or ArchResNet20
	Channels int       `json:"channels"` // input shape; default 3 x 32 x 32 (32, 64 and 128 px are supported)
	Height   int       `json:"height"`
	Width    int       `json:"width"`
	Classes  int       `json:"classes"` // number of logits; default 10
	Mean     []float32 `json:"mean"`    // per-channel input normalization; default CIFARMean
	Std      []float32 `json:"std"`     // default CIFARStd
	Dropout  float64   `json:"dropout"` // dropout before the vgg-small dense layers; default 0
	Seed     uint64    `json:"seed"`    // initialization seed; default 1
	Threads  int       `json:"threads"` // goroutines per layer; default runtime.NumCPU()
	// ConvBackend names the convolution implementation, "" for the
	// default (see ConvBackendEnv). Not saved.
	ConvBackend string `json:"-"`
}

// DefaultClassifierConfig returns vgg-small for 32 x 32 RGB CIFAR-10.
func DefaultClassifierConfig() ClassifierConfig {
	return ClassifierConfig{Arch: ArchVGGSmall, Channels: 3, Height: 32, Width: 32, Classes: 10,
		Mean: append([]float32(nil), CIFARMean...), Std: append([]float32(nil), CIFARStd...), Seed: 1, Threads: runtime.NumCPU()}
}

// Validate reports the first invalid field as a *ConfigError.
func (c ClassifierConfig) Validate() error {
	bad := func(f string, v any, r string) error { return option.New("nn", "ClassifierConfig."+f, v, r) }
	arch, ok := LookupClassifierArch(c.Arch)
	if !ok {
		return bad("Arch", fmt.Sprintf("%q", c.Arch), fmt.Sprintf("unknown architecture (want %s)", strings.Join(ClassifierArchNames(), " or ")))
	}
	div := arch.SizeMultiple
	if c.Channels < 1 {
		return bad("Channels", c.Channels, "must be positive")
	}
	if c.Height < div || c.Width < div || c.Height%div != 0 || c.Width%div != 0 {
		return bad("Height/Width", fmt.Sprintf("%dx%d", c.Height, c.Width), fmt.Sprintf("%s needs multiples of %d", c.Arch, div))
	}
	if c.Classes < 2 {
		return bad("Classes", c.Classes, "need at least 2")
	}
	if len(c.Mean) != c.Channels || len(c.Std) != c.Channels {
		return bad("Mean/Std", fmt.Sprintf("%d and %d values", len(c.Mean), len(c.Std)), fmt.Sprintf("want %d values each", c.Channels))
	}
	for _, s := range c.Std {
		if !(s > 0) {
			return bad("Std", c.Std, "must be positive")
		}
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		return bad("Dropout", c.Dropout, "must be in [0, 1)")
	}
	if c.Threads < 1 {
		return bad("Threads", c.Threads, "must be positive")
	}
	return nil
}

func convBNReLU(in, out, stride, threads int, backend string, rng *rand.Rand) []Layer {
	c := NewConv2D(in, out, 3, 3, stride, 1, false, threads, rng)
	c.Backend = backend
	bn := NewBatchNorm2D(out, threads)
	bn.ReLU = true
	return []Layer{c, bn}
}

// buildClassifier assembles the network of a validated config.
func buildClassifier(c ClassifierConfig) (*Sequential, []*Dropout) {
	rng := rand.New(rand.NewPCG(c.Seed, 0x5eed))
	th := c.Threads
	net := NewSequential(&Normalize{Mean: append([]float32(nil), c.Mean...), Std: append([]float32(nil), c.Std...), Threads: th})
	dense := func(in, out int) *Dense {
		d := NewDense(in, out, rng)
		d.Threads = th
		return d
	}
	var drops []*Dropout
	switch c.Arch {
	case ArchVGGSmall:
		// [conv3x3 32, BN, ReLU] x2, maxpool, [64] x2, maxpool, [128] x2,
		// maxpool, dense 256, ReLU, dense K (the VGG-16 stand-in).
		in := c.Channels
		for _, w := range []int{32, 64, 128} {
			net.Layers = append(net.Layers, convBNReLU(in, w, 1, th, c.ConvBackend, rng)...)
			net.Layers = append(net.Layers, convBNReLU(w, w, 1, th, c.ConvBackend, rng)...)
			net.Layers = append(net.Layers, &MaxPool2D{K: 2, Stride: 2, Threads: th})
			in = w
		}
		feat := 128 * (c.Height / 8) * (c.Width / 8)
		net.Layers = append(net.Layers, &Flatten{})
		if c.Dropout > 0 {
			d := &Dropout{P: c.Dropout, Rng: rand.New(rand.NewPCG(c.Seed, 1))}
			drops = append(drops, d)
			net.Layers = append(net.Layers, d)
		}
		net.Layers = append(net.Layers, dense(feat, 256), &ReLU{})
		if c.Dropout > 0 {
			d := &Dropout{P: c.Dropout, Rng: rand.New(rand.NewPCG(c.Seed, 2))}
			drops = append(drops, d)
			net.Layers = append(net.Layers, d)
		}
		net.Layers = append(net.Layers, dense(256, c.Classes))
	case ArchResNet20:
		// He et al. 2016, section 4.2: conv 16, then 3 stages of 3 basic
		// blocks with 16, 32, 64 filters, option-A shortcuts, global
		// average pooling and a dense layer.
		net.Layers = append(net.Layers, convBNReLU(c.Channels, 16, 1, th, c.ConvBackend, rng)...)
		in := 16
		for stage, w := range []int{16, 32, 64} {
			for b := 0; b < 3; b++ {
				stride := 1
				if stage > 0 && b == 0 {
					stride = 2
				}
				body := NewSequential(convBNReLU(in, w, stride, th, c.ConvBackend, rng)...)
				c2 := NewConv2D(w, w, 3, 3, 1, 1, false, th, rng)
				c2.Backend = c.ConvBackend
				body.Layers = append(body.Layers, c2, NewBatchNorm2D(w, th))
				blk := &Residual{Body: body, ReLU: true, Threads: th}
				if stride != 1 || in != w {
					blk.Shortcut = &ShortcutA{In: in, Out: w, Stride: stride}
				}
				net.Layers = append(net.Layers, blk)
				in = w
			}
		}
		net.Layers = append(net.Layers, &GlobalAvgPool{}, dense(64, c.Classes))
	}
	return net, drops
}

// DAEConfig describes the denoising auto-encoder of section 3.4 (the
// official implementation's network): an encoder of Levels x [conv3x3
// Filters, BN, ReLU, maxpool 2], a mirrored decoder of Levels x [conv3x3
// Filters, BN, ReLU, upsample 2] and a conv3x3 to Channels with a sigmoid.
// The latent code is Filters x H/2^Levels x W/2^Levels (4x4x32 at 32 px).
type DAEConfig struct {
	Channels    int    `json:"channels"` // default 3 x 32 x 32
	Height      int    `json:"height"`
	Width       int    `json:"width"`
	Filters     int    `json:"filters"` // default 32
	Levels      int    `json:"levels"`  // default 3
	Seed        uint64 `json:"seed"`    // default 1
	Threads     int    `json:"threads"` // default runtime.NumCPU()
	ConvBackend string `json:"-"`       // "" for the default (see ConvBackendEnv)
}

// DefaultDAEConfig returns the paper's DAE for 32 x 32 RGB images.
func DefaultDAEConfig() DAEConfig {
	return DAEConfig{Channels: 3, Height: 32, Width: 32, Filters: 32, Levels: 3, Seed: 1, Threads: runtime.NumCPU()}
}

// Validate reports the first invalid field as a *ConfigError.
func (c DAEConfig) Validate() error {
	bad := func(f string, v any, r string) error { return option.New("nn", "DAEConfig."+f, v, r) }
	if c.Channels < 1 {
		return bad("Channels", c.Channels, "must be positive")
	}
	if c.Levels < 1 || c.Levels > 6 {
		return bad("Levels", c.Levels, "must be in [1, 6]")
	}
	d := 1 << c.Levels
	if c.Height < d || c.Width < d || c.Height%d != 0 || c.Width%d != 0 {
		return bad("Height/Width", fmt.Sprintf("%dx%d", c.Height, c.Width), fmt.Sprintf("need multiples of %d", d))
	}
	if c.Filters < 1 {
		return bad("Filters", c.Filters, "must be positive")
	}
	if c.Threads < 1 {
		return bad("Threads", c.Threads, "must be positive")
	}
	return nil
}

func buildDAE(c DAEConfig) (enc, dec *Sequential) {
	rng := rand.New(rand.NewPCG(c.Seed, 0xdae))
	enc, dec = NewSequential(), NewSequential()
	in := c.Channels
	for i := 0; i < c.Levels; i++ {
		enc.Layers = append(enc.Layers, convBNReLU(in, c.Filters, 1, c.Threads, c.ConvBackend, rng)...)
		enc.Layers = append(enc.Layers, &MaxPool2D{K: 2, Stride: 2, Threads: c.Threads})
		in = c.Filters
	}
	for i := 0; i < c.Levels; i++ {
		dec.Layers = append(dec.Layers, convBNReLU(c.Filters, c.Filters, 1, c.Threads, c.ConvBackend, rng)...)
		dec.Layers = append(dec.Layers, &Upsample{Factor: 2})
	}
	out := NewConv2D(c.Filters, c.Channels, 3, 3, 1, 1, true, c.Threads, rng)
	out.Backend = c.ConvBackend
	dec.Layers = append(dec.Layers, out) // the sigmoid is applied by DAE (BCE with logits in training)
	return enc, dec
}
