package nn

import (
	"context"
	"math/rand/v2"
	"os"
	"time"

	"github.com/stl-defense/stl/internal/cputime"
	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/tensor"
)

// BenchOptions configures Bench.
type BenchOptions struct {
	Arch    string // default ArchVGGSmall
	Size    int    // image side; default 32
	Batch   int    // default 128
	Threads int    // default 1
	Iters   int    // timed iterations per figure after one warm-up; default 5
	Backend string // convolution backend, "" for the default
}

// DefaultBenchOptions returns vgg-small, 32 px, batch 128, one thread, 5
// iterations.
func DefaultBenchOptions() BenchOptions {
	return BenchOptions{Arch: ArchVGGSmall, Size: 32, Batch: 128, Threads: 1, Iters: 5}
}

// Validate returns an *OptionError for the first invalid field (the
// architecture and size are checked when the network is built).
func (o BenchOptions) Validate() error {
	switch {
	case o.Iters < 1:
		return option.New("nn", "BenchOptions.Iters", o.Iters, "want >= 1")
	case o.Batch < 2:
		return option.New("nn", "BenchOptions.Batch", o.Batch, "want >= 2")
	case o.Threads < 1:
		return option.New("nn", "BenchOptions.Threads", o.Threads, "want >= 1")
	}
	return nil
}

// BenchResult holds throughputs in images per second.
type BenchResult struct {
	Arch          string  `json:"arch"`
	Threads       int     `json:"threads"`
	Batch         int     `json:"batch"`
	Size          int     `json:"size"`
	Backend       string  `json:"backend"`
	TrainImgS     float64 `json:"train_img_s"`      // forward + backward + SGD step, training mode
	InferImgS     float64 `json:"infer_img_s"`      // Logits
	InputGradImgS float64 `json:"input_grad_img_s"` // InputGrad with a cross-entropy seed
	// CPU seconds of the whole process (all threads, user + system) per
	// wall second of each timed phase: about Threads on a quiet machine,
	// less when other processes take the cores, more when OpenMP workers
	// spin beside Go threads. Images per CPU-second are ImgS / CPU; 0 where
	// the system does not report CPU time.
	TrainCPU     float64 `json:"train_cpu"`
	InferCPU     float64 `json:"infer_cpu"`
	InputGradCPU float64 `json:"input_grad_cpu"`
}

// Bench measures training, inference and input-gradient throughput of a
// freshly initialized network on random images. It is single-use work for
// the "stl bench nn" command and benchmarks; figures are noisy on a shared
// machine.
func Bench(ctx context.Context, o BenchOptions) (BenchResult, error) {
	if err := o.Validate(); err != nil {
		return BenchResult{}, err
	}
	c := DefaultClassifierConfig()
	c.Arch, c.Height, c.Width, c.Threads, c.ConvBackend = o.Arch, o.Size, o.Size, o.Threads, o.Backend
	m, err := NewClassifier(c)
	if err != nil {
		return BenchResult{}, err
	}
	backend := o.Backend
	if backend == "" {
		backend = os.Getenv(ConvBackendEnv)
	}
	if backend == "" {
		backend = ConvBackends()[0]
	}
	res := BenchResult{Arch: o.Arch, Threads: o.Threads, Batch: o.Batch, Size: o.Size, Backend: backend}
	rng := rand.New(rand.NewPCG(1, 2))
	x := tensor.New(o.Batch, 3, o.Size, o.Size)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	labels := make([]int, o.Batch)
	for i := range labels {
		labels[i] = rng.IntN(c.Classes)
	}
	opt, _ := NewSGD(DefaultSGDOptions())
	seed := func(logits, g *tensor.Tensor) {
		SoftmaxCrossEntropy(logits, labels, 0, g)
	}
	timeIt := func(f func() error) (imgS, cpu float64, err error) {
		if err := f(); err != nil { // warm-up: kernels, buffers
			return 0, 0, err
		}
		t0, c0 := time.Now(), cputime.Process()
		for i := 0; i < o.Iters; i++ {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			if err := f(); err != nil {
				return 0, 0, err
			}
		}
		wall := time.Since(t0).Seconds()
		return float64(o.Batch*o.Iters) / wall, (cputime.Process() - c0).Seconds() / wall, nil
	}
	if res.TrainImgS, res.TrainCPU, err = timeIt(func() error {
		_, _, err := m.trainStep(x, labels, 0)
		opt.Step(m.params, 1e-3)
		return err
	}); err != nil {
		return res, err
	}
	if res.InferImgS, res.InferCPU, err = timeIt(func() error { _, err := m.Logits(ctx, x); return err }); err != nil {
		return res, err
	}
	if res.InputGradImgS, res.InputGradCPU, err = timeIt(func() error { _, _, err := m.InputGrad(ctx, x, seed); return err }); err != nil {
		return res, err
	}
	return res, nil
}
