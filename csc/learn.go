package csc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/tensor"
)

// LearnOptions configures convolutional dictionary learning.
type LearnOptions struct {
	// Filters is the number M of filters (64, the paper's value).
	Filters int
	// Size is the filters' height and width (8).
	Size int
	// Lambda is the l1 weight of the coding step (0.2).
	Lambda float64
	// Iterations is the number of outer iterations, each one ADMM
	// iteration of the coding step and one of the dictionary step, as in
	// SPORCO's ConvBPDNDictLearn (100).
	Iterations int
	// Seed seeds the random initial dictionary (1).
	Seed uint64
	// ZeroMean selects the constraint set of the dictionary (Filters
	// filters d_m of Size x Size pixels and C channels d_{m,c}):
	//
	//   - true (the default): sum_{r,s} d_{m,c}(r,s) = 0 for every filter m
	//     and channel c, and sum_c ||d_{m,c}||_2^2 = 1 for every filter m
	//     (zero mean per channel, unit norm jointly over the channels).
	//     This is SPORCO's cnvrep.Pcn with zm=True (zeromean over the
	//     spatial axes, then normalise over the spatial and channel axes,
	//     dimN + dimC) and the released code's convention: the paper's
	//     CIFAR-10 dictionary (testdata/dict.npy) satisfies it (test
	//     TestPaperDictionaryConstraint). The STL codes highpass images, so
	//     zero-mean filters lose nothing.
	//   - false: only the unit norm jointly over the channels (SPORCO's
	//     default, ZeroMean False).
	//
	// In both, the norm is exactly 1 (the projection normalizes onto the
	// unit sphere, as SPORCO's normalise; a filter that is all zero stays
	// zero). No other constraint set is implemented: no per-channel norm.
	ZeroMean bool
	// CodeADMM and DictADMM configure the two ADMM solvers; MaxIter is
	// ignored (one iteration per outer iteration). Defaults: SPORCO's
	// dictionary-learning settings, relaxation 1.8, adaptive rho every 10
	// iterations by at most a factor 2 when the residual ratio exceeds 10.
	CodeADMM, DictADMM admm.Options
	// CodeRho0 (0 = 50*Lambda+1) and DictRho0 (1) are the initial penalties.
	CodeRho0, DictRho0 float64
	// Checkpoint, when not empty, is the path of a SPORCO-layout dictionary
	// .npy written atomically every CheckpointEvery iterations and at the
	// end, with a JSON sidecar (path + ".json") holding the iteration count.
	Checkpoint      string
	CheckpointEvery int // 10
	// Resume continues from Checkpoint when it exists: the dictionary and
	// the iteration count are restored; the ADMM variables restart from
	// zero coefficients (a warm start, not a bit-exact continuation).
	Resume bool
	// Workers is the number of goroutines (0 = GOMAXPROCS). Results do not
	// depend on it.
	Workers int
	// MaxMemory bounds the memory Learn may allocate for its state, in
	// bytes (8 GiB; 0 means no bound). Consensus ADMM keeps a dictionary
	// copy and a dual per image: about 2.5 MB per 32x32 colour image with
	// 64 filters. Learn returns a *MemoryError rather than exhausting memory.
	MaxMemory int64
}

// MemoryError reports a learning problem whose state would exceed
// LearnOptions.MaxMemory.
type MemoryError struct {
	Need, Max int64 // bytes
	Images    int
}

func (e *MemoryError) Error() string {
	return fmt.Sprintf("csc: learning on %d images needs about %.1f GB, more than the %.1f GB allowed (MaxMemory); use fewer images",
		e.Images, float64(e.Need)/1e9, float64(e.Max)/1e9)
}

// learnMemory estimates Learn's state in bytes: per image two (C, M, F)
// complex arrays, the (M, F) coefficient spectrum and two (M, H, W) maps.
func learnMemory(n, c, h, w, m int) int64 {
	f := int64(fft.ComplexLen(h, w))
	per := 8*(2*int64(c)*int64(m)*f+int64(m)*f+int64(c)*f) + 4*2*int64(m)*int64(h)*int64(w)
	return int64(n) * per
}

// DefaultLearnOptions returns the defaults documented on LearnOptions.
func DefaultLearnOptions() LearnOptions {
	a := admm.DefaultOptions()
	a.MaxIter = 1
	a.RhoPeriod = 10
	a.RhoScaling = 2
	a.RsdlRatio = 10
	a.RsdlTarget = 1
	return LearnOptions{Filters: 64, Size: 8, Lambda: 0.2, Iterations: 100, Seed: 1, ZeroMean: true,
		CodeADMM: a, DictADMM: a, DictRho0: 1, CheckpointEvery: 10, MaxMemory: 8 << 30}
}

// Validate returns an *OptionError for the first invalid field.
func (o LearnOptions) Validate() error {
	bad := func(f string, v any, want string) error { return &OptionError{Field: f, Value: v, Want: want} }
	switch {
	case o.Filters < 1:
		return bad("Filters", o.Filters, ">= 1")
	case o.Size < 1:
		return bad("Size", o.Size, ">= 1")
	case !(o.Lambda > 0) || math.IsInf(o.Lambda, 0):
		return bad("Lambda", o.Lambda, "finite, > 0")
	case o.Iterations < 0:
		return bad("Iterations", o.Iterations, ">= 0")
	case math.IsNaN(o.CodeRho0) || math.IsInf(o.CodeRho0, 0) || o.CodeRho0 < 0:
		return bad("CodeRho0", o.CodeRho0, "finite, >= 0")
	case !(o.DictRho0 > 0) || math.IsInf(o.DictRho0, 0):
		return bad("DictRho0", o.DictRho0, "finite, > 0")
	case o.Checkpoint != "" && o.CheckpointEvery < 1:
		return bad("CheckpointEvery", o.CheckpointEvery, ">= 1")
	case o.Workers < 0:
		return bad("Workers", o.Workers, ">= 0")
	case o.MaxMemory < 0:
		return bad("MaxMemory", o.MaxMemory, ">= 0 (0 = no bound)")
	}
	if err := o.CodeADMM.Validate(); err != nil {
		return fmt.Errorf("CodeADMM: %w", err)
	}
	if err := o.DictADMM.Validate(); err != nil {
		return fmt.Errorf("DictADMM: %w", err)
	}
	return nil
}

// LearnStats describes one outer iteration of dictionary learning.
type LearnStats struct {
	Iter int // 0-based, counting resumed iterations
	// Objective = DFid + Reg of the coefficient maps after this iteration's
	// coding step with the dictionary they were coded with (computed in
	// float64 from the Fourier domain by Parseval's theorem).
	Objective, DFid, Reg float64
	CodeRho, DictRho     float64
	// DictPrimal and DictDual are the dictionary step's normalized
	// residuals.
	DictPrimal, DictDual float64
	Elapsed              time.Duration
	// Dictionary is the dictionary after this iteration's update (the
	// consensus projected onto the constraint set of ZeroMean). It is
	// Learn's own and changes at the next iteration: read it during
	// RecordLearn only, and Clone what is kept.
	Dictionary *Dictionary `json:"-"`
}

// LearnRecorder receives the statistics of every outer iteration.
type LearnRecorder interface {
	RecordLearn(LearnStats)
}

// LearnRecorderFunc adapts a function to a LearnRecorder.
type LearnRecorderFunc func(LearnStats)

// RecordLearn implements LearnRecorder.
func (f LearnRecorderFunc) RecordLearn(s LearnStats) { f(s) }

// Learn learns a dictionary of opt.Filters filters of opt.Size² pixels and
// C channels from the (N, C, H, W) training images. It composes two ADMM
// solvers of package admm that hand their results to each other, warm
// started, as SPORCO's ConvBPDNDictLearn with the consensus dictionary
// update (dmethod "cns"; Choudhury et al. 2017) does: each outer iteration
// runs one CBPDN iteration on every image (each image its own ADMM state)
// with the current dictionary, then one iteration of the dictionary step on
// the new coefficient maps, in which every image k holds its own
// Fourier-domain dictionary copy d_k, solved by Sherman-Morrison, and the
// consensus g is the projection of the mean of d_k + u_k onto the
// constraint set (support Size×Size, optionally zero mean per channel, unit
// norm per filter over all its channels); g is the next dictionary.
//
// rec (may be nil) gets every iteration's statistics. Cancellation returns
// ctx.Err() after writing a checkpoint (if configured). Memory: about
// 2·N·C·M·H·(W/2+1) complex64 values for the dictionary step plus
// 2·N·M·H·W float32 for the coefficient maps (2.5 MB per 32x32 colour
// image with 64 filters); beyond opt.MaxMemory Learn returns a
// *MemoryError.
func Learn(ctx context.Context, images *tensor.Tensor, opt LearnOptions, rec LearnRecorder) (*Dictionary, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if images == nil {
		return nil, errors.New("csc: Learn: nil images")
	}
	n, c, h, w, err := images.NCHW()
	if err != nil {
		return nil, err
	}
	if n == 0 || c == 0 || h == 0 || w == 0 || len(images.Data) != n*c*h*w {
		return nil, &tensor.ShapeError{Op: "csc.Learn: empty or inconsistent images", Want: []int{-1, -1, -1, -1}, Got: images.Shape}
	}
	if h < opt.Size || w < opt.Size {
		return nil, &tensor.ShapeError{Op: fmt.Sprintf("csc.Learn: images %dx%d smaller than %dx%d filters", h, w, opt.Size, opt.Size),
			Want: []int{n, c, opt.Size, opt.Size}, Got: images.Shape}
	}
	if e := tensor.CheckFinite(images.Data); e != nil {
		return nil, &InputError{Index: e.(*tensor.NonFiniteError).Index / (c * h * w), Msg: e.Error(), Err: e}
	}
	if need := learnMemory(n, c, h, w, opt.Filters); opt.MaxMemory > 0 && need > opt.MaxMemory {
		return nil, &MemoryError{Need: need, Max: opt.MaxMemory, Images: n}
	}
	l, err := newLearner(images, n, c, h, w, opt)
	if err != nil {
		return nil, err
	}
	return l.run(ctx, rec)
}

// learner is the state of one Learn call: the consensus dictionary, the
// per-image states and the two solvers.
type learner struct {
	opt        LearnOptions
	imgs       *tensor.Tensor
	n, c, h, w int
	f, hw      int
	m          int
	dict       *Dictionary
	gf, gfOld  []complex64 // consensus dictionary DFT (C, M, F)
	acc        []complex64 // mean of d_k + u_k (C, M, F)
	per        []cdlImage
	workers    int
	dstep      *dictStep // the dictionary step as an admm.Problem
	dsolver    *admm.Solver
	start      int
	weights    []float64 // Parseval weights per frequency
}

func newLearner(images *tensor.Tensor, n, c, h, w int, opt LearnOptions) (*learner, error) {
	l := &learner{opt: opt, imgs: images, n: n, c: c, h: h, w: w, f: fft.ComplexLen(h, w), hw: h * w, m: opt.Filters}
	l.workers = opt.Workers
	if l.workers <= 0 {
		l.workers = runtime.GOMAXPROCS(0)
	}
	l.workers = min(l.workers, n)
	l.dict = randomDictionary(opt.Filters, c, opt.Size, opt.Seed, opt.ZeroMean)
	if opt.Resume && opt.Checkpoint != "" {
		if err := l.resume(); err != nil {
			return nil, err
		}
	}
	// Parseval: columns 0 and w/2 (w even) of the half spectrum count once.
	wc := w/2 + 1
	l.weights = make([]float64, l.f)
	for k := range l.weights {
		col := k % wc
		wt := 2.0
		if col == 0 || (w%2 == 0 && col == w/2) {
			wt = 1
		}
		l.weights[k] = wt / float64(h*w)
	}
	cf := c * l.m * l.f
	l.gf = make([]complex64, cf)
	l.gfOld = make([]complex64, cf)
	l.acc = make([]complex64, cf)
	plan, err := fft.New(h, w)
	if err != nil {
		return nil, err
	}
	l.dictToFourier(plan)
	if err := l.initImages(plan); err != nil {
		return nil, err
	}
	l.dstep = &dictStep{l: l, plan: plan}
	if l.dsolver, err = admm.New(l.dstep, opt.DictADMM, opt.DictRho0); err != nil {
		return nil, err
	}
	return l, nil
}

// forEach runs fn(worker, i) for i in [0, n) on the learner's workers.
// Each index is handled exactly once; what a call computes must depend on
// i only, so results do not depend on the number of workers.
func (l *learner) forEach(ctx context.Context, n int, fn func(worker, i int)) error {
	var wg sync.WaitGroup
	next := make(chan int)
	for g := 0; g < l.workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := range next {
				fn(g, i)
			}
		}(g)
	}
	var err error
	for i := 0; i < n; i++ {
		if err = ctx.Err(); err != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return err
}

func (l *learner) run(ctx context.Context, rec LearnRecorder) (*Dictionary, error) {
	t0 := time.Now()
	ws := make([]*workspace, l.workers)
	l.dstep.scratch = make([][]float32, l.workers)
	for g := range l.dstep.scratch {
		l.dstep.scratch[g] = make([]float32, 5*l.f)
	}
	l.dstep.ws = ws
	for it := l.start; it < l.opt.Iterations; it++ {
		if err := ctx.Err(); err != nil {
			l.checkpoint(it)
			return nil, err
		}
		if err := l.codeStep(ctx, ws); err != nil {
			l.checkpoint(it)
			return nil, err
		}
		// Dictionary step: one iteration of the generic ADMM loop.
		dres, err := l.dsolver.RunN(ctx, 1, nil)
		if err != nil {
			l.checkpoint(it)
			return nil, err
		}
		st := LearnStats{Iter: it, DictRho: dres.Last.Rho, DictPrimal: dres.Last.Primal, DictDual: dres.Last.Dual, Dictionary: l.dict}
		st.Elapsed = time.Since(t0)
		codeRho := 0.0
		for k := range l.per {
			st.DFid += l.per[k].obj[0]
			st.Reg += l.per[k].obj[1]
			codeRho += l.per[k].solver.Rho()
		}
		st.Reg *= l.opt.Lambda
		st.Objective = st.DFid + st.Reg
		st.CodeRho = codeRho / float64(l.n)
		if rec != nil {
			rec.RecordLearn(st)
		}
		if l.opt.Checkpoint != "" && (it+1)%l.opt.CheckpointEvery == 0 {
			if err := l.checkpoint(it + 1); err != nil {
				return nil, err
			}
		}
	}
	if l.opt.Checkpoint != "" && l.start < l.opt.Iterations {
		if err := l.checkpoint(l.opt.Iterations); err != nil {
			return nil, err
		}
	}
	return l.dict, nil
}
