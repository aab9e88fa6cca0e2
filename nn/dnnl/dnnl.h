// C side of package dnnl: one stl_conv holds every oneDNN object a
// convolution of one shape needs (primitive descriptors, primitives, plain
// user memories, blocked internal memories, cached reorders, scratchpad), so
// that a Go call is one cgo call with no allocation.
#ifndef STL_DNNL_H
#define STL_DNNL_H

#include <stdint.h>

typedef struct stl_conv stl_conv;
typedef struct stl_ws stl_ws;

// Workspaces: internal buffers shared by convs. New returns one reference
// (NULL when out of memory); each conv built on it takes another.
stl_ws *stl_ws_new(void);
void stl_ws_release(stl_ws *w);
size_t stl_ws_bytes(stl_ws *w);

// Parameter order of stl_conv_create's p array.
enum {
	STL_N, STL_C, STL_H, STL_W, STL_K, STL_R, STL_S,
	STL_SH, STL_SW, STL_PH, STL_PW, STL_OH, STL_OW, STL_NPARAM
};

// Algorithms for stl_conv_create.
enum { STL_ALG_DIRECT = 0, STL_ALG_AUTO = 1, STL_ALG_GEMM = 2 };

// Which primitive stl_conv_impl names.
enum { STL_FWD = 0, STL_BWD_DATA = 1, STL_BWD_WEIGHTS = 2 };

// The forward pass's variant. relu applies max(0, .) to the output (an
// eltwise post-op; the backward passes ignore it); sum adds the output
// array's previous contents before the ReLU (a sum post-op). src_block and
// dst_block choose the layout of the caller's src and dst arrays: 0 for
// plain NCHW (oneDNN computes on its own layout, reached by reorders), 4, 8
// or 16 for nChw4c, nChw8c or nChw16c, in which the primitive computes
// directly. A conv with a blocked src or dst has no backward passes.
typedef struct {
	int relu, sum;
	int src_block, dst_block;
} stl_conv_fwd;

// alg[STL_FWD], alg[STL_BWD_DATA], alg[STL_BWD_WEIGHTS] choose each pass's
// algorithm (STL_ALG_*).
// ws may be NULL: the conv then has a workspace of its own.
int stl_conv_create(stl_conv **out, const int64_t *p, int nthr, const int *alg, stl_ws *ws, const stl_conv_fwd *fwd);
// The channel block (4, 8 or 16) of the layout oneDNN's forward convolution
// picks for its activations on this CPU, 0 when it is no nChw{4,8,16}c
// layout; < 0 is a failed oneDNN call's status, negated.
int stl_conv_block(void);
size_t stl_conv_ws_bytes(stl_conv *c);
int stl_conv_forward(stl_conv *c, float *dst, const float *src, const float *w, const float *b);
int stl_conv_backward_data(stl_conv *c, float *dsrc, const float *ddst, const float *w);
int stl_conv_backward_weights(stl_conv *c, float *dw, float *db, const float *src, const float *ddst);
int stl_conv_backward(stl_conv *c, float *dsrc, float *dw, float *db, const float *src, const float *ddst,
                      const float *w);
int stl_conv_shares_ddst(stl_conv *c);
const char *stl_conv_impl(stl_conv *c, int which);
void stl_conv_destroy(stl_conv *c);
// Copies the cumulative nanoseconds [pass][reorders in, primitive, reorder out].
void stl_conv_times(stl_conv *c, int64_t *out);

const char *stl_status_str(int status);
int stl_max_threads(void);
void stl_set_threads(int n);
int stl_engine_init(void);

#endif

#ifndef STL_DNNL_OPS_H
#define STL_DNNL_OPS_H
// Memory-bound operations on plain NCHW arrays (no reorders): one stl_op is
// one primitive with its argument memories; the first nuser arguments get
// the caller's pointers per call, the rest (workspace, scratchpad) are
// internal.
typedef struct stl_op stl_op;

#define STL_OP_MAXARGS 10

// Runs op with the user pointers p0..p7 (unused ones NULL).
int stl_op_exec(stl_op *op, void *p0, void *p1, void *p2, void *p3, void *p4, void *p5, void *p6, void *p7);
const char *stl_op_impl(stl_op *op);
void stl_op_destroy(stl_op *op);

// Batch normalization over (N, C, H, W) with scale (gamma) and shift (beta)
// in one (2, C) array ss. User argument order:
//   fwd_train: src, ss, dst, mean, variance
//   fwd_infer: src, mean, variance, ss, dst
//   bwd:       src, mean, variance, diff_dst, ss, diff_src, diff_ss
// relu != 0 fuses a ReLU after the normalization; fwd_train then owns the
// workspace (ReLU mask) that bwd reads: destroy bwd first.
int stl_bn_create(stl_op **fwd_train, stl_op **fwd_infer, stl_op **bwd, const int64_t *nchw, float eps, int relu,
                  int nthr);

// Pooling; p = {N, C, H, W, R, S, SH, SW, PH, PW, OH, OW}; alg 0 max,
// 1 average including padding. fwd: src, dst; bwd: diff_dst, diff_src. For
// max pooling the fwd op owns the workspace (argmax) that bwd reads: destroy
// bwd first.
int stl_pool_create(stl_op **fwd, stl_op **bwd, const int64_t *p, int alg, int nthr);
#endif
