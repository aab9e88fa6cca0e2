package csc

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/internal/cputime"
	"github.com/stl-defense/stl/tensor"
)

// BenchOptions configures Benchmark.
type BenchOptions struct {
	// Quick runs fewer repetitions (for smoke tests), not comparable.
	Quick bool
	// Workers is the worker count of the batch throughput case (2).
	Workers int
}

// BenchResult is one benchmark case. Times are wall-clock seconds; CPU
// figures are the CPU time of the benchmark's thread (the process's for
// cdl_iteration, which runs its own goroutine, and for batch, where equal
// CPU per image on 1 and N workers means the work scales perfectly; Linux
// only, 0 elsewhere), steadier than wall time on a shared machine.
type BenchResult struct {
	Case          string  `json:"case"`
	Input         string  `json:"input"`
	Threads       int     `json:"threads"`
	Unit          string  `json:"unit"` // what Seconds is per
	Count         int     `json:"count"`
	Seconds       float64 `json:"seconds"`               // wall seconds per unit
	CPUSeconds    float64 `json:"cpu_seconds,omitempty"` // thread CPU seconds per unit (single-thread cases)
	Iterations    float64 `json:"iterations,omitempty"`  // mean ADMM iterations per image
	Objective     float64 `json:"objective"`             // objective reached (mean per image, or total for CDL)
	Goal          float64 `json:"goal_seconds,omitempty"`
	SPORCO        float64 `json:"sporco_seconds,omitempty"`
	FFTBound      float64 `json:"fft_bound_seconds,omitempty"` // 2 x 64 transforms per iteration, measured
	Speedup       float64 `json:"speedup,omitempty"`           // batch: throughput relative to one worker
	ImagesPerS    float64 `json:"images_per_second,omitempty"`
	Solver        string  `json:"solver,omitempty"`                // solver case: "plain" or "accelerated"; warm case: "cold" or "warm"; method case: "admm" or "active-set"
	ImagesPerCPUS float64 `json:"images_per_cpu_second,omitempty"` // solver case: images per CPU second (per core)
	Lambda        float64 `json:"lambda,omitempty"`                // method case: CBPDN's lambda
	// ObjectiveMaxRel is, for the second half of a warm or method pair,
	// the largest relative objective difference to the first half's on
	// any image (positive: above it).
	ObjectiveMaxRel float64 `json:"objective_max_rel,omitempty"`
	FFT             string  `json:"fft"`
	Kernels         string  `json:"kernels"`
}

// Benchmark runs the engine's speed benchmarks on the embedded sample
// (SampleDictionary; SampleImage img32_hi and img128_hi; 32x32 tiles cut
// from img128 and img128_hi at offsets drawn from a fixed seed) and hands
// each case to emit:
//
//   - iteration: one CBPDN ADMM iteration, single thread, on img32_hi
//     and img128_hi (goals 0.38 ms and 8.2 ms; SPORCO 3.8 ms and 82 ms);
//   - image: one 32x32 tile with the default stopping rule, single thread,
//     mean over 256 tiles (goal 24 ms; SPORCO 0.24 s);
//   - solver: the plain and the accelerated solver (Options.Accelerated)
//     side by side on the same 256 32x32 and 64 64x64 tiles, single
//     thread: iterations, objective and images per CPU second;
//   - warm: the STL projection of tiles of img128 plus seeded sign noise
//     of 2/255 and 8/255, cold and warm-started from the clean tiles'
//     states (ProjectFrom), interleaved by 8 images, one worker: the
//     iterations, objective and images per CPU second of each (256 32x32
//     and 64 64x64 tiles);
//   - method: the STL projection of unrelated tiles of img128 (as stl
//     defend's) by ADMM and by MethodActiveSet, interleaved by 8 images,
//     one worker: 256 32x32 and 64 64x64 tiles at lambda 0.2, 64 32x32
//     tiles at 0.05 and 0.5; the iterations, objective, largest relative
//     objective difference and images per CPU second of each;
//   - cdl_iteration: one dictionary learning iteration on 256 highpass
//     32x32 tiles, 64 filters 8x8x3, single thread (goal 0.6 s; SPORCO
//     5.86 s);
//   - batch: STL projection throughput of 256 tiles on 1 and on
//     opt.Workers workers.
//
// Single-thread cases lock their goroutine to one OS thread.
func Benchmark(ctx context.Context, opt BenchOptions, emit func(BenchResult) error) error {
	if opt.Workers <= 0 {
		opt.Workers = 2
	}
	d := SampleDictionary()
	base := BenchResult{FFT: fft.Implementation, Kernels: kernelImpl, Threads: 1}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// Per-iteration cases.
	for _, c := range []struct {
		name         string
		iters        int
		goal, sporco float64
	}{{"img32_hi", 200, 0.38e-3, 3.8e-3}, {"img128_hi", 50, 8.2e-3, 82e-3}} {
		img, _ := SampleImage(c.name)
		_, _, h, w, _ := img.NCHW()
		iters := c.iters
		if opt.Quick {
			iters /= 10
		}
		o := DefaultOptions()
		o.ADMM.MaxIter, o.ADMM.RelStopTol, o.Workers = iters, 0, 1
		coder, ws, err := benchCoder(d, o, h, w)
		if err != nil {
			return err
		}
		if _, err := coder.solveOne(ctx, ws, img.Data, nil); err != nil { // warm up
			return err
		}
		// Repeat the solve until enough CPU time has passed for the
		// clock's resolution (getrusage ticks) not to matter.
		minCPU := 500 * time.Millisecond
		if opt.Quick {
			minCPU = 50 * time.Millisecond
		}
		var r *Result
		total := 0
		t0, c0 := time.Now(), threadCPU()
		for total == 0 || threadCPU()-c0 < minCPU {
			if r, err = coder.solveOne(ctx, ws, img.Data, nil); err != nil {
				return err
			}
			total += r.Iterations
		}
		wall, cpu := time.Since(t0).Seconds(), (threadCPU() - c0).Seconds()
		res := base
		res.Case, res.Input, res.Unit, res.Count = "iteration", c.name, "ADMM iteration", r.Iterations
		res.Seconds, res.CPUSeconds = wall/float64(total), cpu/float64(total)
		res.Objective, res.Goal, res.SPORCO = r.Objective, c.goal, c.sporco
		res.FFTBound = fftBound(ws, minCPU)
		if err := emit(res); err != nil {
			return err
		}
	}

	n := 256
	if opt.Quick {
		n = 16
	}
	img128, _ := SampleImage("img128")
	img128hi, _ := SampleImage("img128_hi")
	tilesHi := cutTiles(img128hi, n, 32, 1)
	tiles := cutTiles(img128, n, 32, 1)

	// Per-image cases: the default stopping rule at 32x32, then the plain
	// and accelerated solvers side by side at 32x32 and 64x64.
	if err := imageCase(ctx, base, d, tilesHi, "image", "", emit); err != nil {
		return err
	}
	for _, ts := range []*tensor.Tensor{tilesHi, cutTiles(img128hi, n/4, 64, 1)} {
		if err := imageCase(ctx, base, d, ts, "solver", "plain", emit); err != nil {
			return err
		}
		if err := imageCase(ctx, base, d, ts, "solver", "accelerated", emit); err != nil {
			return err
		}
	}

	// Warm starts: perturbed tiles projected cold and from the clean
	// tiles' states, interleaved.
	img128s := []*tensor.Tensor{cutTiles(img128, n, 32, 5), cutTiles(img128, n/4, 64, 5)}
	for _, clean := range img128s {
		for _, eps := range []float32{2, 8} {
			if err := warmCase(ctx, base, d, clean, eps, emit); err != nil {
				return err
			}
		}
	}

	// Methods: ADMM and the active set on unrelated tiles, as stl
	// defend projects them, at the paper's lambda (its Table 1 setting
	// and the default) and at the ends of the Figure 5 sweep.
	for _, c := range []struct {
		ts     *tensor.Tensor
		lambda float64
	}{{tiles, 0.2}, {cutTiles(img128, n/4, 64, 1), 0.2}, {tiles.Batch(0, n/4), 0.05}, {tiles.Batch(0, n/4), 0.5}} {
		if err := methodCase(ctx, base, d, c.ts, c.lambda, emit); err != nil {
			return err
		}
	}

	// CDL case.
	{
		lo := DefaultLearnOptions()
		lo.Workers = 1
		lo.Iterations = 3
		if opt.Quick {
			lo.Iterations = 2
		}
		var last LearnStats
		var first time.Duration
		t0 := time.Now()
		var c1 time.Duration
		_, err := Learn(ctx, tilesHi, lo, LearnRecorderFunc(func(s LearnStats) {
			if s.Iter == 0 {
				first, c1 = time.Since(t0), cputime.Process()
			}
			last = s
		}))
		if err != nil {
			return err
		}
		// The first iteration includes the setup; report the others.
		k := float64(lo.Iterations - 1)
		res := base
		res.Case, res.Input, res.Unit, res.Count = "cdl_iteration", fmt.Sprintf("%d 32x32 tiles of img128_hi, 64 filters 8x8x3", n), "outer iteration", lo.Iterations-1
		res.Seconds = (time.Since(t0) - first).Seconds() / k
		res.CPUSeconds = (cputime.Process() - c1).Seconds() / k // Learn runs its own goroutine
		res.Objective, res.Goal, res.SPORCO = last.Objective, 0.6, 5.86
		if err := emit(res); err != nil {
			return err
		}
	}

	// Batch projection throughput.
	runtime.UnlockOSThread()
	var single float64
	for _, workers := range []int{1, opt.Workers} {
		po := DefaultProjectOptions()
		po.CSC.Workers = workers
		p, err := NewProjection(d, po)
		if err != nil {
			return err
		}
		out := tensor.New(tiles.Shape...)
		t0, c0 := time.Now(), cputime.Process()
		st, err := p.ProjectBatch(ctx, out, tiles, nil)
		if err != nil {
			return err
		}
		secs := time.Since(t0).Seconds()
		cpu := (cputime.Process() - c0).Seconds()
		var obj float64
		for _, s := range st {
			obj += s.Objective
		}
		res := base
		res.Case, res.Input, res.Unit, res.Count, res.Threads = "batch", fmt.Sprintf("STL projection, %d 32x32 tiles of img128", n), "image", n, workers
		res.Seconds, res.ImagesPerS, res.Objective = secs/float64(n), float64(n)/secs, obj/float64(n)
		res.CPUSeconds = cpu / float64(n) // process CPU per image: equal for 1 and N workers means perfect scaling
		if workers == 1 {
			single = res.ImagesPerS
		}
		res.Speedup = res.ImagesPerS / single
		if err := emit(res); err != nil {
			return err
		}
		if opt.Workers == 1 {
			break
		}
	}
	return nil
}

// imageCase codes every tile of ts on one thread with the plain solver
// (solver "" or "plain") or the accelerated one (Options.Accelerated) and
// emits the mean iterations, objective and CPU time per image.
func imageCase(ctx context.Context, base BenchResult, d *Dictionary, ts *tensor.Tensor, name, solver string,
	emit func(BenchResult) error) error {
	n, _, h, w, _ := ts.NCHW()
	o := DefaultOptions()
	o.Workers = 1
	if solver == "accelerated" {
		o = o.Accelerated()
	}
	coder, ws, err := benchCoder(d, o, h, w)
	if err != nil {
		return err
	}
	defer coder.release(ws)
	var iters, obj float64
	t0, c0 := time.Now(), threadCPU()
	for i := 0; i < n; i++ {
		r, err := coder.solveOne(ctx, ws, ts.Sample(i).Data, nil)
		if err != nil {
			return err
		}
		iters += float64(r.Iterations)
		obj += r.Objective
	}
	res := base
	res.Case, res.Solver, res.Unit, res.Count = name, solver, "image", n
	res.Input = fmt.Sprintf("%d %dx%d tiles of img128_hi, default stopping", n, h, w)
	res.Seconds, res.CPUSeconds = time.Since(t0).Seconds()/float64(n), (threadCPU()-c0).Seconds()/float64(n)
	res.Iterations, res.Objective = iters/float64(n), obj/float64(n)
	if res.CPUSeconds > 0 {
		res.ImagesPerCPUS = 1 / res.CPUSeconds
	}
	if name == "image" {
		res.Goal, res.SPORCO = 24e-3, 0.24
	}
	return emit(res)
}

// benchCoder returns a Coder with options o and a workspace for h×w images.
func benchCoder(d *Dictionary, o Options, h, w int) (*Coder, *workspace, error) {
	coder, err := NewCoder(d, o)
	if err != nil {
		return nil, nil, err
	}
	ws, err := coder.newWorkspace(h, w)
	return coder, ws, err
}

// fftBound measures the thread CPU time of the 2 x M transforms of one
// iteration, the floor of an FFT-based ADMM iteration, repeating them for
// at least minCPU.
func fftBound(ws *workspace, minCPU time.Duration) float64 {
	reps := 0
	c0 := threadCPU()
	for reps == 0 || threadCPU()-c0 < minCPU {
		ws.batch.Forward(ws.xf, ws.x)
		ws.batch.InverseUnnormalized(ws.x, ws.xf)
		reps++
		if reps > 1e6 {
			break // no CPU clock on this system
		}
	}
	return (threadCPU() - c0).Seconds() / float64(reps)
}

// warmCase projects clean plus sign noise of eps/255 on one worker, cold
// and warm-started from the clean tiles' states, alternating the two by
// chunks of 8 images so that both see the same machine load, and emits
// the mean iterations, objective and process CPU time per image of each.
func warmCase(ctx context.Context, base BenchResult, d *Dictionary, clean *tensor.Tensor, eps float32,
	emit func(BenchResult) error) error {
	n, _, h, w, _ := clean.NCHW()
	po := DefaultProjectOptions()
	po.CSC.Workers = 1
	p, err := NewProjection(d, po)
	if err != nil {
		return err
	}
	states := make([]*State, n)
	out := tensor.New(clean.Shape...)
	if _, err := p.ProjectFrom(ctx, out, clean, nil, states, nil); err != nil {
		return err
	}
	adv := perturbSign(clean, eps/255, 9)
	sums, err := interleaved(n, func(v, lo, hi int) ([]ProjectStats, error) {
		var from []*State
		if v == 1 {
			from = states[lo:hi]
		}
		return p.ProjectFrom(ctx, out.Batch(lo, hi), adv.Batch(lo, hi), from, nil, nil)
	})
	if err != nil {
		return err
	}
	input := fmt.Sprintf("STL projection, %d %dx%d tiles of img128 + sign noise %g/255, warm start: the clean tile's state", n, h, w, eps)
	return sums.emit(base, "warm", [2]string{"cold", "warm"}, input, emit)
}

// methodCase projects the tiles ts (unrelated images, as stl defend's) on
// one worker with CBPDN by ADMM and by MethodActiveSet at the given
// lambda, alternating the two by chunks of 8 images, and emits the mean
// iterations (ADMM iterations; the active set's outer iterations),
// objective, images per CPU second and, for the active set, the largest
// relative objective difference to ADMM's on any image.
func methodCase(ctx context.Context, base BenchResult, d *Dictionary, ts *tensor.Tensor, lambda float64,
	emit func(BenchResult) error) error {
	n, _, h, w, _ := ts.NCHW()
	var ps [2]*Projection
	for v, m := range []Method{MethodADMM, MethodActiveSet} {
		po := DefaultProjectOptions()
		po.CSC.Workers, po.CSC.Lambda, po.CSC.Method = 1, lambda, m
		var err error
		if ps[v], err = NewProjection(d, po); err != nil {
			return err
		}
	}
	out := tensor.New(ts.Shape...)
	sums, err := interleaved(n, func(v, lo, hi int) ([]ProjectStats, error) {
		return ps[v].ProjectBatch(ctx, out.Batch(lo, hi), ts.Batch(lo, hi), nil)
	})
	if err != nil {
		return err
	}
	base.Lambda = lambda
	input := fmt.Sprintf("STL projection, %d %dx%d tiles of img128, lambda %g", n, h, w, lambda)
	return sums.emit(base, "method", [2]string{MethodADMM.String(), MethodActiveSet.String()}, input, emit)
}

// benchSums accumulates two interleaved variants' projections.
type benchSums [2]struct {
	cpu, wall  time.Duration
	iters, obj float64
	objs       []float64 // per image
}

// interleaved runs project(v, lo, hi) for the variants v = 0 and 1 on the
// images [lo, hi) of n, alternating them by chunks of 8 images so that
// both see the same machine load, and sums their process CPU and wall
// time, iterations and objectives.
func interleaved(n int, project func(v, lo, hi int) ([]ProjectStats, error)) (*benchSums, error) {
	var sums benchSums
	const chunk = 8
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		for v := range sums {
			t0, c0 := time.Now(), cputime.Process()
			st, err := project(v, lo, hi)
			if err != nil {
				return nil, err
			}
			sums[v].cpu += cputime.Process() - c0
			sums[v].wall += time.Since(t0)
			for _, s := range st {
				sums[v].iters += float64(s.Iterations)
				sums[v].obj += s.Objective
				sums[v].objs = append(sums[v].objs, s.Objective)
			}
		}
	}
	return &sums, nil
}

// emit emits one result per variant, named names[v], the second with the
// largest relative objective difference to the first on any image.
func (sums *benchSums) emit(base BenchResult, name string, names [2]string, input string, emit func(BenchResult) error) error {
	for v := range sums {
		n := len(sums[v].objs)
		res := base
		res.Case, res.Solver, res.Unit, res.Count, res.Input = name, names[v], "image", n, input
		res.Seconds, res.CPUSeconds = sums[v].wall.Seconds()/float64(n), sums[v].cpu.Seconds()/float64(n)
		res.Iterations, res.Objective = sums[v].iters/float64(n), sums[v].obj/float64(n)
		if res.CPUSeconds > 0 {
			res.ImagesPerCPUS = 1 / res.CPUSeconds
		}
		if v == 1 {
			res.ObjectiveMaxRel = math.Inf(-1)
			for i, o := range sums[1].objs {
				ref := sums[0].objs[i]
				res.ObjectiveMaxRel = max(res.ObjectiveMaxRel, (o-ref)/ref)
			}
		}
		if err := emit(res); err != nil {
			return err
		}
	}
	return nil
}
