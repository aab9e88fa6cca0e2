package csc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/internal/cputime"
	"github.com/stl-defense/stl/tensor"
)

// BenchmarkIteration measures one CBPDN ADMM iteration (single thread) on
// the reference highpass images and a 64x64 tile of img128_hi. Goals:
// 0.38 ms at 32x32, 8.2 ms at 128x128 (10x SPORCO). BenchmarkBatchImages
// gives the FFT floor of the same iteration.
func BenchmarkIteration(b *testing.B) {
	d := loadDict(b)
	for _, name := range []string{"img32_hi", "tile64_hi", "img128_hi"} {
		b.Run(name, func(b *testing.B) {
			var img *tensor.Tensor
			if name == "tile64_hi" {
				img = cutTiles(loadImage(b, "img128_hi"), 1, 64, 1)
			} else {
				img = loadImage(b, name)
			}
			opt := DefaultOptions()
			opt.ADMM.MaxIter = 1
			coder, _ := NewCoder(d, opt)
			_, _, h, w, _ := img.NCHW()
			ws, _ := coder.newWorkspace(h, w)
			ws.setSignal(img.Data)
			p := &problem{ws: ws, y: ws.y, u: ws.u, s: img.Data, dict: d, lambda: 0.2, lam64: 0.2}
			p.SetRho(11)
			b.ReportAllocs()
			c0 := cpuTime()
			for b.Loop() {
				p.XStep(11)
				p.Relax(1.8)
				p.YStep(11)
				p.UStep()
			}
			reportCPU(b, c0)
			obj, _, _ := p.Objective()
			b.ReportMetric(obj, "objective")
		})
	}
}

// tiles cuts n 32x32 tiles of img128_hi at seeded offsets.
func tiles(t testing.TB, n int) *tensor.Tensor {
	img := loadImage(t, "img128_hi")
	return cutTiles(img, n, 32, 1)
}

// BenchmarkImage32 solves 32x32 tiles with the default stopping rule, one
// image per op, single thread. Goal: 24 ms per image.
func BenchmarkImage32(b *testing.B) {
	d := loadDict(b)
	opt := DefaultOptions()
	opt.Workers = 1
	coder, _ := NewCoder(d, opt)
	ts := tiles(b, 16)
	ws, _ := coder.newWorkspace(32, 32)
	i := 0
	obj := 0.0
	c0 := cpuTime()
	for b.Loop() {
		r, err := coder.solveOne(context.Background(), ws, ts.Sample(i%16).Data, nil)
		if err != nil {
			b.Fatal(err)
		}
		obj += r.Objective
		i++
	}
	reportCPU(b, c0)
	b.ReportMetric(obj/float64(i), "objective")
}

// BenchmarkSolver codes 32x32 and 64x64 highpass tiles with the plain and
// the accelerated solver (Options.Accelerated) side by side, one image per
// op, single thread, cycling over 64 tiles: iterations and objective per
// image and images per CPU second.
func BenchmarkSolver(b *testing.B) {
	d := loadDict(b)
	img := loadImage(b, "img128_hi")
	for _, size := range []int{32, 64} {
		ts := cutTiles(img, 64, size, 1)
		for _, solver := range []string{"plain", "accelerated"} {
			b.Run(fmt.Sprintf("size=%d/%s", size, solver), func(b *testing.B) {
				opt := DefaultOptions()
				if solver == "accelerated" {
					opt = opt.Accelerated()
				}
				coder, _ := NewCoder(d, opt)
				ws, _ := coder.newWorkspace(size, size)
				i, iters, obj := 0, 0, 0.0
				c0 := cpuTime()
				for b.Loop() {
					r, err := coder.solveOne(context.Background(), ws, ts.Sample(i%64).Data, nil)
					if err != nil {
						b.Fatal(err)
					}
					iters += r.Iterations
					obj += r.Objective
					i++
				}
				cpu := cpuTime() - c0
				reportCPU(b, c0)
				b.ReportMetric(float64(iters)/float64(i), "iterations/image")
				b.ReportMetric(obj/float64(i), "objective/image")
				if cpu > 0 {
					b.ReportMetric(float64(i)/cpu.Seconds(), "images/cpu-s")
				}
			})
		}
	}
}

// BenchmarkBatch projects 32 tiles on 1 and 2 workers.
func BenchmarkBatch(b *testing.B) {
	d := loadDict(b)
	ts := tiles(b, 32)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			opt := DefaultProjectOptions()
			opt.CSC.Workers = w
			p, _ := NewProjection(d, opt)
			out := tensor.New(ts.Shape...)
			var st []ProjectStats
			for b.Loop() {
				st, _ = p.ProjectBatch(context.Background(), out, ts, nil)
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N)/32*1000, "ms/image")
			obj := 0.0
			for _, x := range st {
				obj += x.Objective
			}
			b.ReportMetric(obj/float64(len(st)), "objective")
		})
	}
}

// cpuTime returns the process's user+system CPU time (0 where not
// available). On a shared machine it is a steadier figure than wall time
// for single-threaded benchmarks.
func cpuTime() time.Duration { return cputime.Process() }

func reportCPU(b *testing.B, c0 time.Duration) {
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkCDLIteration runs dictionary learning on 256 32x32 highpass
// tiles with 64 filters 8x8x3 on one worker; each op is one outer
// iteration (setup excluded). Goal: 0.6 s.
func BenchmarkCDLIteration(b *testing.B) {
	ts := tiles(b, 256)
	opt := DefaultLearnOptions()
	opt.Workers = 1
	opt.Iterations = 0
	l, err := newLearner(ts, 256, 3, 32, 32, opt)
	if err != nil {
		b.Fatal(err)
	}
	var last LearnStats
	rec := LearnRecorderFunc(func(s LearnStats) { last = s })
	c0 := cpuTime()
	for b.Loop() {
		l.opt.Iterations = l.start + 1
		if _, err := l.run(context.Background(), rec); err != nil {
			b.Fatal(err)
		}
		l.start++
	}
	reportCPU(b, c0)
	b.ReportMetric(last.Objective, "objective")
}

// BenchmarkFormSolve times the Woodbury solve of one iteration (thread CPU
// time reported as cpu-ns/op).
func BenchmarkFormSolve(b *testing.B) {
	d := loadDict(b)
	for _, n := range []int{32, 128} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			runtime.LockOSThread()
			sp, _ := newSpectrum(d, n, n)
			rng := rand.New(rand.NewPCG(1, 2))
			x := randC(rng, sp.m*sp.f)
			dsf := randC(rng, sp.m*sp.f)
			t := make([]complex64, sp.scratchLen())
			c0 := threadCPU()
			for b.Loop() {
				sp.formSolve(x, dsf, 2, 1, t)
			}
			b.ReportMetric(float64(threadCPU()-c0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkTikhonov splits one 32x32 colour image (pad 16), the
// projection's pre-processing.
func BenchmarkTikhonov(b *testing.B) {
	img := loadImage(b, "img32")
	tk, _ := NewTikhonov(5, 16)
	lo, hi := make([]float32, 1024), make([]float32, 1024)
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		for c := 0; c < 3; c++ {
			tk.Split(lo, hi, img.Data[c*1024:(c+1)*1024], 32, 32)
		}
	}
	reportCPU(b, c0)
}

// BenchmarkWarmStart runs stl bench csc's warm cases (cold and
// warm-started projections of perturbed tiles, interleaved, one worker)
// once per op: 64 32x32 and 16 64x64 tiles, sign noise 2/255 and 8/255.
func BenchmarkWarmStart(b *testing.B) {
	d := loadDict(b)
	img := loadImage(b, "img128")
	for _, c := range []struct{ size, n int }{{32, 64}, {64, 16}} {
		clean := cutTiles(img, c.n, c.size, 5)
		for _, eps := range []float32{2, 8} {
			b.Run(fmt.Sprintf("size=%d/eps=%g", c.size, eps), func(b *testing.B) {
				for b.Loop() {
					err := warmCase(context.Background(), BenchResult{}, d, clean, eps, func(r BenchResult) error {
						b.ReportMetric(r.Iterations, r.Solver+"-iterations/image")
						b.ReportMetric(r.ImagesPerCPUS, r.Solver+"-images/cpu-s")
						b.ReportMetric(r.Objective, r.Solver+"-objective/image")
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkBatchImages measures the forward and inverse transforms of the
// M = 64 coefficient maps of one ADMM iteration (its FFT floor) for 1 to
// 16 images in one batch plan (FFTW's howmany = 64 x images), in thread
// CPU time per image: whether transforming several images' maps in one
// plan lowers the per-image floor.
func BenchmarkBatchImages(b *testing.B) {
	for _, n := range []int{32, 64} {
		for _, k := range []int{1, 2, 4, 8, 16} {
			b.Run(fmt.Sprintf("%dx%d/images=%d", n, n, k), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				p, err := fft.NewBatch(n, n, 64*k)
				if err != nil {
					b.Fatal(err)
				}
				s := fft.MakeFloat32(64 * k * n * n)
				rng := rand.New(rand.NewPCG(1, 1))
				for i := range s {
					s[i] = rng.Float32()
				}
				c := fft.MakeComplex64(64 * k * fft.ComplexLen(n, n))
				c0 := threadCPU()
				for b.Loop() {
					p.Forward(c, s)
					p.InverseUnnormalized(s, c)
				}
				b.ReportMetric(float64(threadCPU()-c0)/float64(b.N*k), "cpu-ns/image")
			})
		}
	}
}
