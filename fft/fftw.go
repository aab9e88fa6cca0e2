//go:build !purego && cgo

package fft

/*
#cgo LDFLAGS: -lfftw3f
#include <fftw3.h>
#include <stdint.h>

static fftwf_plan plan_r2c(int h, int w, unsigned flags) {
	float *in = fftwf_alloc_real((size_t)h * w);
	fftwf_complex *out = fftwf_alloc_complex((size_t)h * (w / 2 + 1));
	fftwf_plan p = fftwf_plan_dft_r2c_2d(h, w, in, out, flags);
	fftwf_free(in);
	fftwf_free(out);
	return p;
}

static fftwf_plan plan_c2r(int h, int w, unsigned flags) {
	fftwf_complex *in = fftwf_alloc_complex((size_t)h * (w / 2 + 1));
	float *out = fftwf_alloc_real((size_t)h * w);
	fftwf_plan p = fftwf_plan_dft_c2r_2d(h, w, in, out, flags);
	fftwf_free(in);
	fftwf_free(out);
	return p;
}

static fftwf_plan plan_many_r2c(int h, int w, int n, unsigned flags) {
	int dims[2] = {h, w};
	int f = h * (w / 2 + 1);
	float *in = fftwf_alloc_real((size_t)h * w * n);
	fftwf_complex *out = fftwf_alloc_complex((size_t)f * n);
	fftwf_plan p = fftwf_plan_many_dft_r2c(2, dims, n, in, NULL, 1, h * w, out, NULL, 1, f, flags);
	fftwf_free(in);
	fftwf_free(out);
	return p;
}

static fftwf_plan plan_many_c2r(int h, int w, int n, unsigned flags) {
	int dims[2] = {h, w};
	int f = h * (w / 2 + 1);
	fftwf_complex *in = fftwf_alloc_complex((size_t)f * n);
	float *out = fftwf_alloc_real((size_t)h * w * n);
	fftwf_plan p = fftwf_plan_many_dft_c2r(2, dims, n, in, NULL, 1, f, out, NULL, 1, h * w, flags);
	fftwf_free(in);
	fftwf_free(out);
	return p;
}

static int aligned(void *p) { return fftwf_alignment_of((float *)p) == 0; }

static void exec_r2c(fftwf_plan p, float *in, void *out) {
	fftwf_execute_dft_r2c(p, in, (fftwf_complex *)out);
}

static void exec_c2r(fftwf_plan p, void *in, float *out) {
	fftwf_execute_dft_c2r(p, (fftwf_complex *)in, out);
}
*/
import "C"

import (
	"sync"
	"unsafe"
)

// Implementation names the implementation New returns: "go" (pure Go) or
// "fftw".
const Implementation = "fftw"

func newBest(h, w int) (RealPlan2D, error) { return NewFFTWPlan(h, w) }

type sizeKey struct{ h, w, n int }

type cPlans struct{ r2c, c2r C.fftwf_plan }

// planner serializes every call into the FFTW planner, which is not
// thread-safe, and caches the plans per size for the life of the process.
var planner struct {
	sync.Mutex
	plans map[sizeKey]cPlans
}

// planFlags: FFTW_ESTIMATE picks the algorithm by heuristics, so the same
// library on the same CPU always computes bit-identical results (the
// project's determinism rule). FFTW_MEASURE, which times candidates, is as
// fast at 32x32 and about 1.6 times faster for batches at 128x128 on the
// development machine, but its choice, hence the last bits of results,
// can change from one process to the next.
const planFlags = C.FFTW_ESTIMATE

// cachedPlans returns the plans for one h×w transform (n = 0) or a batch
// of n.
func cachedPlans(h, w, n int) (cPlans, error) {
	planner.Lock()
	defer planner.Unlock()
	k := sizeKey{h, w, n}
	if p, ok := planner.plans[k]; ok {
		return p, nil
	}
	var p cPlans
	if n == 0 {
		p = cPlans{
			r2c: C.plan_r2c(C.int(h), C.int(w), planFlags),
			c2r: C.plan_c2r(C.int(h), C.int(w), planFlags|C.FFTW_DESTROY_INPUT),
		}
	} else {
		p = cPlans{
			r2c: C.plan_many_r2c(C.int(h), C.int(w), C.int(n), planFlags),
			c2r: C.plan_many_c2r(C.int(h), C.int(w), C.int(n), planFlags|C.FFTW_DESTROY_INPUT),
		}
	}
	if p.r2c == nil || p.c2r == nil {
		return cPlans{}, &SizeError{H: h, W: w}
	}
	if planner.plans == nil {
		planner.plans = make(map[sizeKey]cPlans)
	}
	planner.plans[k] = p
	return p, nil
}

// FFTWPlan is the RealPlan2D on FFTW 3 (single precision). The FFTW plans
// are shared by all FFTWPlans of a size and executed concurrently with the
// new-array execute functions; an FFTWPlan itself owns aligned scratch
// memory (the complex-to-real transform destroys its input, so Inverse
// works on a copy) and is not safe for concurrent use.
type FFTWPlan struct {
	h, w  int
	p     cPlans
	rtmp  []float32
	ctmp  []complex64
	scale float32
}

// NewFFTWPlan returns an FFTW plan for h×w real arrays, or a *SizeError.
func NewFFTWPlan(h, w int) (*FFTWPlan, error) {
	if err := checkSize(h, w); err != nil {
		return nil, err
	}
	p, err := cachedPlans(h, w, 0)
	if err != nil {
		return nil, err
	}
	return &FFTWPlan{
		h: h, w: w, p: p,
		rtmp:  MakeFloat32(h * w),
		ctmp:  MakeComplex64(ComplexLen(h, w)),
		scale: 1 / float32(h*w),
	}, nil
}

// Size implements RealPlan2D.
func (p *FFTWPlan) Size() (int, int) { return p.h, p.w }

func isAligned(ptr unsafe.Pointer) bool { return C.aligned(ptr) != 0 }

// Forward implements RealPlan2D.
func (p *FFTWPlan) Forward(dst []complex64, src []float32) []complex64 {
	if dst == nil {
		dst = MakeComplex64(ComplexLen(p.h, p.w))
	}
	checkLens("Forward", p.h, p.w, len(src), len(dst))
	execR2C(p.p.r2c, dst, src, p.scratch)
	return dst
}

func (p *FFTWPlan) scratch() ([]float32, []complex64) { return p.rtmp, p.ctmp }

// alignedExec runs exec(in, out) from src to dst, or from and to the
// aligned scratch memory that scratch returns for whichever of them is not
// aligned (FFTW's vectorized code needs aligned arrays).
func alignedExec[I, O any](dst []O, src []I, scratch func() ([]I, []O), exec func(in, out unsafe.Pointer)) {
	in, out := src, dst
	if !isAligned(unsafe.Pointer(&src[0])) {
		itmp, _ := scratch()
		copy(itmp, src)
		in = itmp
	}
	if !isAligned(unsafe.Pointer(&dst[0])) {
		_, out = scratch()
	}
	exec(unsafe.Pointer(&in[0]), unsafe.Pointer(&out[0]))
	if &out[0] != &dst[0] {
		copy(dst, out)
	}
}

// execR2C runs the real-to-complex plan from src to dst (see alignedExec).
func execR2C(plan C.fftwf_plan, dst []complex64, src []float32, scratch func() ([]float32, []complex64)) {
	alignedExec(dst, src, scratch, func(in, out unsafe.Pointer) { C.exec_r2c(plan, (*C.float)(in), out) })
}

// Inverse implements RealPlan2D.
func (p *FFTWPlan) Inverse(dst []float32, src []complex64) []float32 {
	if dst == nil {
		dst = MakeFloat32(p.h * p.w)
	}
	checkLens("Inverse", p.h, p.w, len(dst), len(src))
	copy(p.ctmp, src) // c2r destroys its input
	out := dst
	if !isAligned(unsafe.Pointer(&dst[0])) {
		out = p.rtmp
	}
	C.exec_c2r(p.p.c2r, unsafe.Pointer(&p.ctmp[0]), (*C.float)(unsafe.Pointer(&out[0])))
	s := p.scale
	if &out[0] != &dst[0] {
		for i, v := range out {
			dst[i] = v * s
		}
	} else {
		for i := range dst {
			dst[i] *= s
		}
	}
	return dst
}

func newBestBatch(h, w, n int) (BatchPlan2D, error) { return NewFFTWBatchPlan(h, w, n) }

// FFTWBatchPlan is the BatchPlan2D on FFTW's batched ("many") plans, shared
// per size and count and executed with the new-array functions. Arrays that
// are not aligned go through aligned scratch memory. Not safe for
// concurrent use.
type FFTWBatchPlan struct {
	h, w, n int
	p       cPlans
	rtmp    []float32
	ctmp    []complex64
}

// NewFFTWBatchPlan returns an FFTW batch plan, or a *SizeError.
func NewFFTWBatchPlan(h, w, n int) (*FFTWBatchPlan, error) {
	if err := checkSize(h, w); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, &SizeError{H: h, W: w}
	}
	p, err := cachedPlans(h, w, n)
	if err != nil {
		return nil, err
	}
	return &FFTWBatchPlan{h: h, w: w, n: n, p: p}, nil
}

// Size implements BatchPlan2D.
func (b *FFTWBatchPlan) Size() (int, int, int) { return b.h, b.w, b.n }

func (b *FFTWBatchPlan) scratch() ([]float32, []complex64) {
	if b.rtmp == nil {
		b.rtmp = MakeFloat32(b.n * b.h * b.w)
		b.ctmp = MakeComplex64(b.n * ComplexLen(b.h, b.w))
	}
	return b.rtmp, b.ctmp
}

// Forward implements BatchPlan2D.
func (b *FFTWBatchPlan) Forward(dst []complex64, src []float32) []complex64 {
	if dst == nil {
		dst = MakeComplex64(b.n * ComplexLen(b.h, b.w))
	}
	checkBatchLens("Forward", b.h, b.w, b.n, len(src), len(dst))
	execR2C(b.p.r2c, dst, src, b.scratch)
	return dst
}

// InverseUnnormalized implements BatchPlan2D; it destroys src (or, when
// src is not aligned, an aligned copy of it).
func (b *FFTWBatchPlan) InverseUnnormalized(dst []float32, src []complex64) []float32 {
	if dst == nil {
		dst = MakeFloat32(b.n * b.h * b.w)
	}
	checkBatchLens("InverseUnnormalized", b.h, b.w, b.n, len(dst), len(src))
	swapped := func() ([]complex64, []float32) {
		rtmp, ctmp := b.scratch()
		return ctmp, rtmp
	}
	alignedExec(dst, src, swapped, func(in, out unsafe.Pointer) { C.exec_c2r(b.p.c2r, in, (*C.float)(out)) })
	return dst
}
