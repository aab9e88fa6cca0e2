//go:build cgo && !purego

package gemmref

/*
#cgo LDFLAGS: -lopenblas
#include "gemmref.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Params is a convolution shape; the fields mean what they mean in
// dnnl.ConvParams.
type Params struct {
	N, C, H, W, K, R, S, StrideH, StrideW, PadH, PadW int
}

// Conv holds the im2col buffer of one shape. It is not safe for concurrent
// use.
type Conv struct {
	p             C.gr_params
	col           []float32
	src, wei, dst int
}

// New returns a Conv for shape p; p must be a valid convolution (checked by
// the caller, as dnnl.ConvParams.Validate does).
func New(p Params) *Conv {
	oh := (p.H+2*p.PadH-p.R)/p.StrideH + 1
	ow := (p.W+2*p.PadW-p.S)/p.StrideW + 1
	c := &Conv{p: C.gr_params{
		n: C.int(p.N), c: C.int(p.C), h: C.int(p.H), w: C.int(p.W), k: C.int(p.K), r: C.int(p.R), s: C.int(p.S),
		sh: C.int(p.StrideH), sw: C.int(p.StrideW), ph: C.int(p.PadH), pw: C.int(p.PadW), oh: C.int(oh), ow: C.int(ow),
	}}
	c.col = make([]float32, p.C*p.R*p.S*oh*ow)
	c.src, c.wei, c.dst = p.N*p.C*p.H*p.W, p.K*p.C*p.R*p.S, p.N*p.K*oh*ow
	return c
}

// SetThreads sets OpenBLAS's thread count (process-wide).
func SetThreads(n int) { C.gr_set_threads(C.int(n)) }

func check(name string, got, want int) error {
	if got != want {
		return fmt.Errorf("gemmref: len(%s) = %d, want %d", name, got, want)
	}
	return nil
}

// Forward computes dst = conv(src, w) + b (b may be nil).
func (c *Conv) Forward(dst, src, w, b []float32) error {
	for _, e := range []error{check("dst", len(dst), c.dst), check("src", len(src), c.src), check("w", len(w), c.wei)} {
		if e != nil {
			return e
		}
	}
	var bp *C.float
	if b != nil {
		if err := check("b", len(b), int(c.p.k)); err != nil {
			return err
		}
		bp = fp(b)
	}
	C.gr_forward(&c.p, fp(dst), fp(src), fp(w), bp, fp(c.col))
	return nil
}

// BackwardData overwrites dsrc with the input gradient.
func (c *Conv) BackwardData(dsrc, ddst, w []float32) error {
	for _, e := range []error{check("dsrc", len(dsrc), c.src), check("ddst", len(ddst), c.dst), check("w", len(w), c.wei)} {
		if e != nil {
			return e
		}
	}
	C.gr_backward_data(&c.p, fp(dsrc), fp(ddst), fp(w), fp(c.col))
	return nil
}

// BackwardWeights overwrites dw and, unless nil, db.
func (c *Conv) BackwardWeights(dw, db, src, ddst []float32) error {
	for _, e := range []error{check("dw", len(dw), c.wei), check("src", len(src), c.src), check("ddst", len(ddst), c.dst)} {
		if e != nil {
			return e
		}
	}
	var dbp *C.float
	if db != nil {
		if err := check("db", len(db), int(c.p.k)); err != nil {
			return err
		}
		dbp = fp(db)
	}
	C.gr_backward_weights(&c.p, fp(dw), dbp, fp(src), fp(ddst), fp(c.col))
	return nil
}

func fp(s []float32) *C.float { return (*C.float)(unsafe.Pointer(&s[0])) }
