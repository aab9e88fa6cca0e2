package csc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/stl-defense/stl/admm"
	"github.com/stl-defense/stl/fft"
	"github.com/stl-defense/stl/internal/safefile"
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
	// ZeroMean constrains every channel of every filter to zero mean
	// (true, as the paper's dictionary; the STL codes highpass images).
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

type cdlImage struct {
	y, u   []float32   // CBPDN state (M, H*W)
	sf     []complex64 // image DFT (C, F)
	prob   *problem
	solver *admm.Solver
	// dictionary step
	du  []complex64 // scaled dual u_k (C, M, F)
	dk  []complex64 // this iteration's d_k (C, M, F)
	yf  []complex64 // DFT of y (M, F)
	obj [2]float64  // data fidelity, l1 norm (before lambda)
	nrm [3]float64  // ||d_k||², ||d_k - g||², ||u_k||²
}

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
		if d, it, err := readCheckpoint(opt.Checkpoint); err == nil {
			if d.M != l.m || d.C != c || d.R != opt.Size || d.S != opt.Size {
				return nil, fmt.Errorf("csc: checkpoint %s holds a %dx%dx%dx%d dictionary, options want %dx%dx%dx%d",
					opt.Checkpoint, d.M, d.C, d.R, d.S, l.m, c, opt.Size, opt.Size)
			}
			l.dict, l.start = d, it
		} else if !errors.Is(err, os.ErrNotExist) {
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
	l.per = make([]cdlImage, n)
	tmp := fft.MakeFloat32(l.hw)
	for k := range l.per {
		p := &l.per[k]
		p.y = fft.MakeFloat32(l.m * l.hw)
		p.u = fft.MakeFloat32(l.m * l.hw)
		p.sf = make([]complex64, c*l.f)
		p.du = make([]complex64, cf)
		p.dk = make([]complex64, cf)
		p.yf = fft.MakeComplex64(l.m * l.f)
		s := images.Data[k*c*l.hw : (k+1)*c*l.hw]
		for ch := 0; ch < c; ch++ {
			copy(tmp, s[ch*l.hw:(ch+1)*l.hw])
			plan.Forward(p.sf[ch*l.f:(ch+1)*l.f], tmp)
		}
		p.prob = &problem{y: p.y, u: p.u, s: s, lambda: float32(opt.Lambda), lam64: opt.Lambda}
		ao := opt.CodeADMM
		if ao.RsdlTarget == 0 {
			ao.RsdlTarget = 1 + math.Pow(18.3, math.Log10(opt.Lambda)+1)
		}
		rho0 := opt.CodeRho0
		if rho0 == 0 {
			rho0 = 50*opt.Lambda + 1
		}
		if p.solver, err = admm.New(p.prob, ao, rho0); err != nil {
			return nil, err
		}
	}
	l.dstep = &dictStep{l: l, plan: plan}
	if l.dsolver, err = admm.New(l.dstep, opt.DictADMM, opt.DictRho0); err != nil {
		return nil, err
	}
	return l, nil
}

// randomDictionary draws Gaussian filters from seed and projects them onto
// the constraint set.
func randomDictionary(m, c, size int, seed uint64, zeroMean bool) *Dictionary {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	d := &Dictionary{M: m, C: c, R: size, S: size, Filters: make([]float32, m*c*size*size)}
	for i := range d.Filters {
		d.Filters[i] = float32(rng.NormFloat64())
	}
	project(d, zeroMean)
	return d
}

// project makes every channel of every filter zero-mean (optionally) and
// every filter unit norm over all its channels (SPORCO's cnvrep.Pcn, which
// normalizes onto the unit sphere; all-zero filters stay zero).
func project(d *Dictionary, zeroMean bool) {
	rs := d.R * d.S
	for m := 0; m < d.M; m++ {
		f := d.Filters[m*d.C*rs : (m+1)*d.C*rs]
		if zeroMean {
			for c := 0; c < d.C; c++ {
				ch := f[c*rs : (c+1)*rs]
				mean := 0.0
				for _, v := range ch {
					mean += float64(v)
				}
				mean /= float64(rs)
				for i := range ch {
					ch[i] = float32(float64(ch[i]) - mean)
				}
			}
		}
		nrm := 0.0
		for _, v := range f {
			nrm += float64(v) * float64(v)
		}
		if nrm > 0 {
			s := 1 / math.Sqrt(nrm)
			for i := range f {
				f[i] = float32(float64(f[i]) * s)
			}
		}
	}
}

// dictToFourier computes gf, the DFT of the zero-padded dictionary, in the
// (C, M, F) layout of the dictionary step.
func (l *learner) dictToFourier(plan fft.RealPlan2D) {
	d := l.dict
	pad := fft.MakeFloat32(l.hw)
	for m := 0; m < d.M; m++ {
		for c := 0; c < d.C; c++ {
			clear(pad)
			base := (m*d.C + c) * d.R * d.S
			for r := 0; r < d.R; r++ {
				copy(pad[r*l.w:r*l.w+d.S], d.Filters[base+r*d.S:base+(r+1)*d.S])
			}
			plan.Forward(l.gf[(c*l.m+m)*l.f:(c*l.m+m+1)*l.f], pad)
		}
	}
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
		// Coding step: one CBPDN iteration per image with the current
		// dictionary.
		sp, err := newSpectrum(l.dict, l.h, l.w)
		if err != nil {
			return nil, err
		}
		for g := range ws {
			if ws[g], err = newWorkspace(sp); err != nil {
				return nil, err
			}
		}
		err = l.forEach(ctx, l.n, func(g, k int) {
			p := &l.per[k]
			w := ws[g]
			copy(w.sf, p.sf)
			w.computeDSf()
			p.prob.ws, p.prob.dict = w, l.dict
			if _, err := p.solver.RunN(ctx, 1, nil); err != nil {
				return // cancellation; reported by forEach
			}
			// Hand the coefficient maps to the dictionary step.
			w.batch.Forward(p.yf, p.y)
		})
		if err != nil {
			l.checkpoint(it)
			return nil, err
		}
		// Dictionary step: one iteration of the generic ADMM loop.
		dres, err := l.dsolver.RunN(ctx, 1, nil)
		if err != nil {
			l.checkpoint(it)
			return nil, err
		}
		st := LearnStats{Iter: it, DictRho: dres.Last.Rho, DictPrimal: dres.Last.Primal, DictDual: dres.Last.Dual}
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

// dictStep is the dictionary update of dictionary learning as an
// admm.Problem (consensus form, Boyd et al. 2010 section 7.1; Choudhury et
// al. 2017): one dictionary copy d_k per training image k, the constraint
// d_k = g for all k, f(d) = sum_k 1/2 ||X_k d_k - s_k||^2 with X_k the
// image's coefficient maps, and g(g) the indicator of the constraint set
// (support Size x Size, optional zero mean per channel, unit norm per
// filter). The d_k and the scaled duals u_k live in the Fourier domain.
type dictStep struct {
	l       *learner
	plan    fft.RealPlan2D
	ws      []*workspace // per worker, for the batched transforms
	scratch [][]float32  // per worker, for the x-step kernel
	alpha   float32
	res     admm.Residuals
}

// XStep computes, for every image, with a = DFT of its coefficient maps at
// one frequency and b_c = conj(a) s_c + rho (g_c - u_c),
// d_c = (rho I + conj(a) a^T)^{-1} b_c by Sherman-Morrison. It also
// evaluates the coding objective with the dictionary the maps were coded
// with (Parseval, float64 accumulation).
func (ds *dictStep) XStep(rho float64) {
	l := ds.l
	l.forEach(context.Background(), l.n, func(g, k int) {
		p := &l.per[k]
		l1 := 0.0
		for _, v := range p.y {
			if v != 0 {
				l1 += math.Abs(float64(v))
			}
		}
		dfid := dictX(p.dk, p.yf, p.sf, l.gf, p.du, l.weights, ds.scratch[g], l.m, l.c, l.f, float32(rho))
		p.obj = [2]float64{dfid / 2, l1}
	})
}

// Relax records alpha; the relaxation is applied in YStep and UStep.
func (ds *dictStep) Relax(alpha float64) { ds.alpha = float32(alpha) }

// YStep sets g to the projection onto the constraint set of the mean over
// images of alpha d_k + (1-alpha) g + u_k, summed in image order per
// element so that the result does not depend on the number of workers.
func (ds *dictStep) YStep(float64) {
	l := ds.l
	alpha := ds.alpha
	beta := complex(1-alpha, 0)
	inv := complex(1/float32(l.n), 0)
	total := len(l.acc)
	const chunk = 4096
	nchunks := (total + chunk - 1) / chunk
	l.forEach(context.Background(), nchunks, func(_, j int) {
		lo, hi := j*chunk, min((j+1)*chunk, total)
		acc := l.acc[lo:hi]
		g := l.gf[lo:hi]
		clear(acc)
		for k := range l.per {
			axpy2(acc, l.per[k].dk[lo:hi], l.per[k].du[lo:hi], alpha)
		}
		kb := complex(float32(l.n), 0) * beta
		for i := range acc {
			acc[i] = (acc[i] + kb*g[i]) * inv
		}
	})
	copy(l.gfOld, l.gf)
	tmp := fft.MakeFloat32(l.hw)
	d := l.dict
	for m := 0; m < l.m; m++ {
		for c := 0; c < l.c; c++ {
			ds.plan.Inverse(tmp, l.acc[(c*l.m+m)*l.f:(c*l.m+m+1)*l.f])
			base := (m*l.c + c) * d.R * d.S
			for r := 0; r < d.R; r++ {
				copy(d.Filters[base+r*d.S:base+(r+1)*d.S], tmp[r*l.w:r*l.w+d.S])
			}
		}
	}
	project(d, l.opt.ZeroMean)
	l.dictToFourier(ds.plan)
}

// UStep updates every image's dual, u_k += alpha d_k + (1-alpha) g_old -
// g, and gathers the residual norms (Parseval-weighted, so that they are
// the spatial-domain norms).
func (ds *dictStep) UStep() {
	l := ds.l
	l.forEach(context.Background(), l.n, func(_, k int) {
		p := &l.per[k]
		dd, r, uu := dictU(p.du, p.dk, l.gfOld, l.gf, l.weights, l.f, ds.alpha)
		p.nrm = [3]float64{dd, r, uu}
	})
	var dd, r, uu, gg, dg float64
	for k := range l.per {
		dd += l.per[k].nrm[0]
		r += l.per[k].nrm[1]
		uu += l.per[k].nrm[2]
	}
	for i, g := range l.gf {
		wt := l.weights[i%l.f]
		gg += wt * float64(real(g)*real(g)+imag(g)*imag(g))
		e := g - l.gfOld[i]
		dg += wt * float64(real(e)*real(e)+imag(e)*imag(e))
	}
	kf := float64(l.n)
	nx := l.n * len(l.gf)
	ds.res = admm.Residuals{Primal: math.Sqrt(r), Dual: math.Sqrt(kf * dg), AX: math.Sqrt(dd),
		BY: math.Sqrt(kf * gg), ATU: math.Sqrt(uu), Nc: nx, Nx: nx}
}

// Residuals implements admm.Problem: ||d - g|| over all copies, the dual
// residual sqrt(K) ||g - g_old||, and the norms of the d_k, the K copies
// of g and the u_k.
func (ds *dictStep) Residuals() admm.Residuals { return ds.res }

// ScaleDual implements admm.Problem.
func (ds *dictStep) ScaleDual(f float64) {
	l := ds.l
	s := complex(float32(f), 0)
	l.forEach(context.Background(), l.n, func(_, k int) {
		du := l.per[k].du
		for i := range du {
			du[i] *= s
		}
	})
}

// SetRho does nothing: the Sherman-Morrison solve takes rho directly.
func (ds *dictStep) SetRho(float64) {}

type checkpointMeta struct {
	Iteration int `json:"iteration"`
}

// checkpoint writes the dictionary and the iteration count atomically.
func (l *learner) checkpoint(it int) error {
	if l.opt.Checkpoint == "" {
		return nil
	}
	if err := WriteDictionary(l.opt.Checkpoint, l.dict); err != nil {
		return err
	}
	b, _ := json.Marshal(checkpointMeta{Iteration: it})
	return safefile.WriteBytes(l.opt.Checkpoint+".json", b)
}

func readCheckpoint(path string) (*Dictionary, int, error) {
	b, err := os.ReadFile(path + ".json")
	if err != nil {
		return nil, 0, err
	}
	var meta checkpointMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, 0, fmt.Errorf("csc: checkpoint %s.json: %w", path, err)
	}
	d, err := ReadDictionary(path)
	if err != nil {
		return nil, 0, err
	}
	return d, meta.Iteration, nil
}
