//go:build cgo && !purego

// C side of package dnnl; see dnnl.h. Every function returns a
// dnnl_status_t (as int) and leaves no Go pointer behind in oneDNN objects:
// user memories get their data handle at the start of a call and lose it
// before the call returns (cgo pointer rules).

#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "dnnl.h"

// libgomp, which Debian's oneDNN (DNNL_CPU_RUNTIME_OMP) links.
extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);

static dnnl_engine_t engine;

int stl_engine_init(void) { return dnnl_engine_create(&engine, dnnl_cpu, 0); }

dnnl_engine_t stl_engine(void) { return engine; }

const char *stl_status_str(int status) { return dnnl_status2str((dnnl_status_t)status); }

int stl_max_threads(void) { return omp_get_max_threads(); }

void stl_set_threads(int n) { omp_set_num_threads(n); }

// The OpenMP thread count is an internal control variable of the calling OS
// thread, and cgo calls run on whichever thread the Go scheduler picks, so
// every entry point sets it again.
static void use_threads(int n) {
	if (omp_get_max_threads() != n) omp_set_num_threads(n);
}

#define CHECK(x)                                        \
	do {                                                \
		dnnl_status_t s_ = (x);                         \
		if (s_ != dnnl_success) return (int)s_;         \
	} while (0)

#define TRY(x)                                          \
	do {                                                \
		st = (x);                                       \
		if (st != dnnl_success) goto done;              \
	} while (0)

// A binding joins the memory Go owns to the memory a primitive reads or
// writes. When the primitive prefers another layout, inner lives in one of
// the conv's shared buffers and reorder converts user->inner (inputs) or
// inner->user (outputs); otherwise inner and reorder are NULL. An output
// the primitive also reads (the sum post-op) has reorder_in as well.
static void *alloc_buf(size_t size);

typedef struct {
	dnnl_memory_t user;
	dnnl_memory_t inner;
	dnnl_primitive_t reorder, reorder_in;
	int buf;
	size_t size;
} binding;

enum { BUF_SRC = 0, BUF_DST = 1, BUF_WEI = 2, BUF_SCRATCH = 3, NBUF = 4 };

// A workspace holds the internal buffers (blocked copies of src-, dst- and
// weights-shaped arrays, and the scratchpad). Convs that share one use the
// largest size each buffer needs; every call points its memories at the
// buffers again, since a later conv may have grown (moved) them. It is
// reference-counted: each conv holds a reference, and so does its creator.
struct stl_ws {
	void *buf[NBUF];
	size_t size[NBUF];
	int refs;
};

stl_ws *stl_ws_new(void) {
	stl_ws *w = calloc(1, sizeof *w);
	if (w) w->refs = 1;
	return w;
}

void stl_ws_release(stl_ws *w) {
	if (!w || --w->refs > 0) return;
	for (int i = 0; i < NBUF; i++) free(w->buf[i]);
	free(w);
}

size_t stl_ws_bytes(stl_ws *w) {
	size_t n = 0;
	for (int i = 0; i < NBUF; i++) n += w->size[i];
	return n;
}

struct stl_conv {
	int64_t p[STL_NPARAM];
	int nthr;
	dnnl_stream_t strm;
	dnnl_primitive_desc_t pd[3];
	dnnl_primitive_t prim[3];
	dnnl_memory_t scratch[3];

	binding f_src, f_w, f_dst;
	dnnl_memory_t f_bias;
	binding d_dsrc, d_w, d_ddst;
	binding w_src, w_dw, w_ddst;
	dnnl_memory_t w_db;
	int sum; // the forward pass reads dst (sum post-op)

	stl_ws *ws;
	size_t bufsize[NBUF]; // what this conv needs of each workspace buffer
	int share_ddst;   // backward data and weights use the same ddst copy
	int64_t ns[3][3]; // per pass: reorders in, primitive, reorder out
	float *zero_bias, *junk_dbias;
};

static dnnl_memory_t memof(const binding *b) { return b->inner ? b->inner : b->user; }

static dnnl_status_t new_reorder(dnnl_primitive_t *r, const dnnl_memory_desc_t *from,
                                 const dnnl_memory_desc_t *to) {
	dnnl_primitive_desc_t rpd;
	CHECK(dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL));
	dnnl_status_t st = dnnl_primitive_create(r, rpd);
	dnnl_primitive_desc_destroy(rpd);
	return st;
}

// dir: 1 input (user -> inner), 0 output (inner -> user), 2 both (an output
// the primitive reads first).
static int init_binding(binding *b, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *want,
                        int buf, int dir, size_t *bufsize) {
	CHECK(dnnl_memory_create(&b->user, user, engine, DNNL_MEMORY_NONE));
	b->buf = buf;
	if (dnnl_memory_desc_equal(user, want)) return dnnl_success;
	CHECK(dnnl_memory_create(&b->inner, want, engine, DNNL_MEMORY_NONE));
	b->size = dnnl_memory_desc_get_size(want);
	if (b->size > bufsize[buf]) bufsize[buf] = b->size;
	if (dir == 1) return new_reorder(&b->reorder, user, want);
	CHECK(new_reorder(&b->reorder, want, user));
	if (dir == 2) return new_reorder(&b->reorder_in, user, want);
	return dnnl_success;
}

static void free_binding(binding *b) {
	if (b->reorder) dnnl_primitive_destroy(b->reorder);
	if (b->reorder_in) dnnl_primitive_destroy(b->reorder_in);
	if (b->inner) dnnl_memory_destroy(b->inner);
	if (b->user) dnnl_memory_destroy(b->user);
	memset(b, 0, sizeof *b);
}

static dnnl_status_t attach(stl_conv *c, binding *b) {
	if (!b->inner) return dnnl_success;
	return dnnl_memory_set_data_handle(b->inner, c->ws->buf[b->buf]);
}

// Points the internal memories of pass i at the workspace.
static dnnl_status_t attach_pass(stl_conv *c, int i, binding *b0, binding *b1, binding *b2) {
	dnnl_status_t st;
	if ((st = attach(c, b0)) != dnnl_success || (st = attach(c, b1)) != dnnl_success ||
	    (st = attach(c, b2)) != dnnl_success)
		return st;
	if (c->scratch[i]) return dnnl_memory_set_data_handle(c->scratch[i], c->ws->buf[BUF_SCRATCH]);
	return dnnl_success;
}

// Grows the workspace buffers to what c needs.
static dnnl_status_t reserve(stl_conv *c) {
	stl_ws *w = c->ws;
	for (int i = 0; i < NBUF; i++) {
		if (c->bufsize[i] <= w->size[i]) continue;
		void *p = alloc_buf(c->bufsize[i]);
		if (!p) return dnnl_out_of_memory;
		free(w->buf[i]);
		w->buf[i] = p;
		w->size[i] = c->bufsize[i];
	}
	return dnnl_success;
}

// Runs the reorder of an input binding after giving its user memory the Go
// pointer ptr.
static dnnl_status_t bind_in(stl_conv *c, binding *b, const float *ptr) {
	dnnl_status_t st = dnnl_memory_set_data_handle(b->user, (void *)ptr);
	if (st != dnnl_success || !b->reorder) return st;
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, b->user}, {DNNL_ARG_TO, b->inner}};
	return dnnl_primitive_execute(b->reorder, c->strm, 2, args);
}

// Copies an output binding's user memory (given the Go pointer ptr) to its
// inner memory, for a primitive that reads its output first.
static dnnl_status_t bind_inout(stl_conv *c, binding *b, float *ptr) {
	dnnl_status_t st = dnnl_memory_set_data_handle(b->user, ptr);
	if (st != dnnl_success || !b->reorder_in) return st;
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, b->user}, {DNNL_ARG_TO, b->inner}};
	return dnnl_primitive_execute(b->reorder_in, c->strm, 2, args);
}

// Copies an output binding's inner memory to the user memory, if needed.
static dnnl_status_t flush_out(stl_conv *c, binding *b) {
	if (!b->reorder) return dnnl_success;
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, b->inner}, {DNNL_ARG_TO, b->user}};
	return dnnl_primitive_execute(b->reorder, c->strm, 2, args);
}

static void unbind(binding *b) {
	if (b->user) dnnl_memory_set_data_handle(b->user, NULL);
}

static int scratch_init(stl_conv *c, int i) {
	const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(c->pd[i], dnnl_query_scratchpad_md, 0);
	if (!md) return dnnl_success;
	size_t sz = dnnl_memory_desc_get_size(md);
	if (sz == 0) return dnnl_success;
	if (sz > c->bufsize[BUF_SCRATCH]) c->bufsize[BUF_SCRATCH] = sz;
	return dnnl_memory_create(&c->scratch[i], md, engine, DNNL_MEMORY_NONE);
}

static void *alloc_buf(size_t size) {
	size = (size + 63) / 64 * 64;
	if (size == 0) size = 64;
	void *p = aligned_alloc(64, size);
	if (!p) return NULL;
	// NaN-fill: a read of anything a reorder or primitive did not write
	// first shows up in the conformance tests instead of passing silently.
	float *f = p;
	for (size_t i = 0; i < size / sizeof(float); i++) f[i] = NAN;
	return p;
}

static const dnnl_memory_desc_t *qmd(dnnl_primitive_desc_t pd, dnnl_query_t q, int i) {
	return dnnl_primitive_desc_query_md(pd, q, i);
}

// The tag of the nChw{block}c layout; dnnl_format_tag_undef for another
// block.
static dnnl_format_tag_t block_tag(int block) {
	switch (block) {
	case 4: return dnnl_nChw4c;
	case 8: return dnnl_nChw8c;
	case 16: return dnnl_nChw16c;
	}
	return dnnl_format_tag_undef;
}

int stl_conv_create(stl_conv **out, const int64_t *p, int nthr, const int *alg, stl_ws *ws, const stl_conv_fwd *fwd) {
	use_threads(nthr);
	*out = NULL;
	stl_conv *c = calloc(1, sizeof *c);
	if (!c) return dnnl_out_of_memory;
	memcpy(c->p, p, sizeof c->p);
	c->nthr = nthr;
	if (ws) {
		ws->refs++;
		c->ws = ws;
	} else if (!(c->ws = stl_ws_new())) {
		free(c);
		return dnnl_out_of_memory;
	}
	dnnl_status_t st = dnnl_success;
	dnnl_primitive_attr_t attr = NULL, fattr = NULL;
	dnnl_post_ops_t ops = NULL;

	dnnl_dims_t sdims = {p[STL_N], p[STL_C], p[STL_H], p[STL_W]};
	dnnl_dims_t wdims = {p[STL_K], p[STL_C], p[STL_R], p[STL_S]};
	dnnl_dims_t bdims = {p[STL_K]};
	dnnl_dims_t ddims = {p[STL_N], p[STL_K], p[STL_OH], p[STL_OW]};
	dnnl_dims_t strides = {p[STL_SH], p[STL_SW]};
	dnnl_dims_t padl = {p[STL_PH], p[STL_PW]};
	// Right padding is what makes (H + padl + padr - R) / SH + 1 == OH;
	// clamped at 0, which floor division allows (see Validate in Go).
	int64_t prh = (p[STL_OH] - 1) * p[STL_SH] - p[STL_H] + p[STL_R] - p[STL_PH];
	int64_t prw = (p[STL_OW] - 1) * p[STL_SW] - p[STL_W] + p[STL_S] - p[STL_PW];
	dnnl_dims_t padr = {prh < 0 ? 0 : prh, prw < 0 ? 0 : prw};

	// The caller's layouts: plain, or for src and dst a channel-blocked one
	// in which the forward pass computes directly (forward only).
	dnnl_format_tag_t stag = fwd->src_block ? block_tag(fwd->src_block) : dnnl_nchw;
	dnnl_format_tag_t dtag = fwd->dst_block ? block_tag(fwd->dst_block) : dnnl_nchw;
	int fwd_only = fwd->src_block || fwd->dst_block;
	if (stag == dnnl_format_tag_undef || dtag == dnnl_format_tag_undef) TRY(dnnl_invalid_arguments);
	c->sum = fwd->sum;
	dnnl_memory_desc_t src_user, wei_plain, bias_md, dst_user;
	TRY(dnnl_memory_desc_init_by_tag(&src_user, 4, sdims, dnnl_f32, stag));
	TRY(dnnl_memory_desc_init_by_tag(&wei_plain, 4, wdims, dnnl_f32, dnnl_oihw));
	TRY(dnnl_memory_desc_init_by_tag(&dst_user, 4, ddims, dnnl_f32, dtag));
	TRY(dnnl_memory_desc_init_by_tag(&bias_md, 1, bdims, dnnl_f32, dnnl_x));
	TRY(dnnl_primitive_attr_create(&attr));
	TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
	// The forward pass may end with the sum and a ReLU applied by the kernel
	// itself (post-ops, in this order), before any reorder of dst.
	TRY(dnnl_primitive_attr_clone(&fattr, attr));
	if (fwd->relu || fwd->sum) {
		TRY(dnnl_post_ops_create(&ops));
		if (fwd->sum) TRY(dnnl_post_ops_append_sum(ops, 1.0f));
		if (fwd->relu) TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
		TRY(dnnl_primitive_attr_set_post_ops(fattr, ops));
	}

	// Per pass: layouts "any" (oneDNN's blocked ones, reached by reorders)
	// or plain (oneDNN's GEMM path), and the algorithm kind; a blocked src
	// or dst of the caller is the forward pass's own.
	dnnl_memory_desc_t src_md[3], wei_md[3], dst_md[3];
	dnnl_alg_kind_t ak[3];
	for (int i = 0; i < 3; i++) {
		int plain = alg[i] == STL_ALG_GEMM;
		dnnl_format_tag_t any = plain ? dnnl_nchw : dnnl_format_tag_any;
		TRY(dnnl_memory_desc_init_by_tag(&src_md[i], 4, sdims, dnnl_f32, fwd->src_block ? stag : any));
		TRY(dnnl_memory_desc_init_by_tag(&wei_md[i], 4, wdims, dnnl_f32, plain ? dnnl_oihw : dnnl_format_tag_any));
		TRY(dnnl_memory_desc_init_by_tag(&dst_md[i], 4, ddims, dnnl_f32, fwd->dst_block ? dtag : any));
		ak[i] = alg[i] == STL_ALG_AUTO ? dnnl_convolution_auto : dnnl_convolution_direct;
	}

	dnnl_convolution_desc_t fd, bd, wd;
	// forward_training even for a forward-only conv: with forward_inference
	// oneDNN 2.6's Winograd kernel wants its weights pre-transformed, a
	// reorder per call that cost more than the activations' reorders saved.
	TRY(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, ak[0], &src_md[0], &wei_md[0], &bias_md,
	                                       &dst_md[0], strides, padl, padr));
	TRY(dnnl_primitive_desc_create(&c->pd[STL_FWD], &fd, fattr, engine, NULL));
	dnnl_primitive_desc_t f = c->pd[STL_FWD];
	size_t *bs = c->bufsize;
	TRY(init_binding(&c->f_src, &src_user, qmd(f, dnnl_query_src_md, 0), BUF_SRC, 1, bs));
	TRY(init_binding(&c->f_w, &wei_plain, qmd(f, dnnl_query_weights_md, 0), BUF_WEI, 1, bs));
	TRY(init_binding(&c->f_dst, &dst_user, qmd(f, dnnl_query_dst_md, 0), BUF_DST, fwd->sum ? 2 : 0, bs));
	TRY(dnnl_memory_create(&c->f_bias, qmd(f, dnnl_query_weights_md, 1), engine, DNNL_MEMORY_NONE));
	TRY(scratch_init(c, STL_FWD));
	if (!fwd_only) {
		TRY(dnnl_convolution_backward_data_desc_init(&bd, ak[1], &src_md[1], &wei_md[1], &dst_md[1], strides,
		                                             padl, padr));
		TRY(dnnl_primitive_desc_create(&c->pd[STL_BWD_DATA], &bd, attr, engine, f));
		TRY(dnnl_convolution_backward_weights_desc_init(&wd, ak[2], &src_md[2], &wei_md[2], &bias_md,
		                                                &dst_md[2], strides, padl, padr));
		TRY(dnnl_primitive_desc_create(&c->pd[STL_BWD_WEIGHTS], &wd, attr, engine, f));
		dnnl_primitive_desc_t d = c->pd[STL_BWD_DATA], w = c->pd[STL_BWD_WEIGHTS];
		TRY(init_binding(&c->d_dsrc, &src_user, qmd(d, dnnl_query_diff_src_md, 0), BUF_SRC, 0, bs));
		TRY(init_binding(&c->d_w, &wei_plain, qmd(d, dnnl_query_weights_md, 0), BUF_WEI, 1, bs));
		TRY(init_binding(&c->d_ddst, &dst_user, qmd(d, dnnl_query_diff_dst_md, 0), BUF_DST, 1, bs));
		TRY(init_binding(&c->w_src, &src_user, qmd(w, dnnl_query_src_md, 0), BUF_SRC, 1, bs));
		TRY(init_binding(&c->w_dw, &wei_plain, qmd(w, dnnl_query_diff_weights_md, 0), BUF_WEI, 0, bs));
		TRY(init_binding(&c->w_ddst, &dst_user, qmd(w, dnnl_query_diff_dst_md, 0), BUF_DST, 1, bs));
		TRY(dnnl_memory_create(&c->w_db, qmd(w, dnnl_query_diff_weights_md, 1), engine, DNNL_MEMORY_NONE));
		TRY(scratch_init(c, STL_BWD_DATA));
		TRY(scratch_init(c, STL_BWD_WEIGHTS));
	}

	c->zero_bias = calloc((size_t)p[STL_K], sizeof(float));
	c->junk_dbias = calloc((size_t)p[STL_K], sizeof(float));
	if (!c->zero_bias || !c->junk_dbias) TRY(dnnl_out_of_memory);
	TRY(reserve(c));
	if (c->d_ddst.inner && c->w_ddst.inner) {
		const dnnl_memory_desc_t *a, *b;
		TRY(dnnl_memory_get_memory_desc(c->d_ddst.inner, &a));
		TRY(dnnl_memory_get_memory_desc(c->w_ddst.inner, &b));
		c->share_ddst = dnnl_memory_desc_equal(a, b);
	}
	TRY(dnnl_stream_create(&c->strm, engine, dnnl_stream_default_flags));
	// The forward primitive is built now; the backward ones on first use, so
	// that inference-only users do not pay for their JIT code.
	TRY(dnnl_primitive_create(&c->prim[STL_FWD], c->pd[STL_FWD]));

done:
	if (attr) dnnl_primitive_attr_destroy(attr);
	if (fattr) dnnl_primitive_attr_destroy(fattr);
	if (ops) dnnl_post_ops_destroy(ops);
	if (st != dnnl_success) {
		stl_conv_destroy(c);
		return st;
	}
	*out = c;
	return dnnl_success;
}

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void stl_conv_times(stl_conv *c, int64_t *out) { memcpy(out, c->ns, sizeof c->ns); }

// A conv built for the forward pass only has no backward descriptors.
static dnnl_status_t ensure_prim(stl_conv *c, int i) {
	if (c->prim[i]) return dnnl_success;
	if (!c->pd[i]) return dnnl_unimplemented;
	return dnnl_primitive_create(&c->prim[i], c->pd[i]);
}

int stl_conv_forward(stl_conv *c, float *dst, const float *src, const float *w, const float *b) {
	use_threads(c->nthr);
	dnnl_status_t st = dnnl_success;
	int64_t t0 = now_ns(), t1 = 0, t2 = 0;
	TRY(attach_pass(c, STL_FWD, &c->f_src, &c->f_w, &c->f_dst));
	TRY(bind_in(c, &c->f_src, src));
	TRY(bind_in(c, &c->f_w, w));
	TRY(dnnl_memory_set_data_handle(c->f_bias, (void *)(b ? b : c->zero_bias)));
	if (c->sum)
		TRY(bind_inout(c, &c->f_dst, dst));
	else
		TRY(dnnl_memory_set_data_handle(c->f_dst.user, dst));
	dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, memof(&c->f_src)},
	                           {DNNL_ARG_WEIGHTS, memof(&c->f_w)},
	                           {DNNL_ARG_BIAS, c->f_bias},
	                           {DNNL_ARG_DST, memof(&c->f_dst)},
	                           {DNNL_ARG_SCRATCHPAD, c->scratch[STL_FWD]}};
	t1 = now_ns();
	TRY(dnnl_primitive_execute(c->prim[STL_FWD], c->strm, c->scratch[STL_FWD] ? 5 : 4, args));
	t2 = now_ns();
	TRY(flush_out(c, &c->f_dst));
	TRY(dnnl_stream_wait(c->strm));
	c->ns[STL_FWD][0] += t1 - t0;
	c->ns[STL_FWD][1] += t2 - t1;
	c->ns[STL_FWD][2] += now_ns() - t2;
done:
	unbind(&c->f_src);
	unbind(&c->f_w);
	unbind(&c->f_dst);
	dnnl_memory_set_data_handle(c->f_bias, c->zero_bias);
	return st;
}

// reuse_ddst: the workspace already holds ddst in this pass's layout (see
// stl_conv_backward).
static int backward_data(stl_conv *c, float *dsrc, const float *ddst, const float *w, int reuse_ddst) {
	dnnl_status_t st = dnnl_success;
	TRY(ensure_prim(c, STL_BWD_DATA));
	int64_t t0 = now_ns(), t1 = 0, t2 = 0;
	TRY(attach_pass(c, STL_BWD_DATA, &c->d_dsrc, &c->d_w, &c->d_ddst));
	if (reuse_ddst)
		TRY(dnnl_memory_set_data_handle(c->d_ddst.user, (void *)ddst));
	else
		TRY(bind_in(c, &c->d_ddst, ddst));
	TRY(bind_in(c, &c->d_w, w));
	TRY(dnnl_memory_set_data_handle(c->d_dsrc.user, dsrc));
	dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, memof(&c->d_ddst)},
	                           {DNNL_ARG_WEIGHTS, memof(&c->d_w)},
	                           {DNNL_ARG_DIFF_SRC, memof(&c->d_dsrc)},
	                           {DNNL_ARG_SCRATCHPAD, c->scratch[STL_BWD_DATA]}};
	t1 = now_ns();
	TRY(dnnl_primitive_execute(c->prim[STL_BWD_DATA], c->strm, c->scratch[STL_BWD_DATA] ? 4 : 3, args));
	t2 = now_ns();
	TRY(flush_out(c, &c->d_dsrc));
	TRY(dnnl_stream_wait(c->strm));
	c->ns[STL_BWD_DATA][0] += t1 - t0;
	c->ns[STL_BWD_DATA][1] += t2 - t1;
	c->ns[STL_BWD_DATA][2] += now_ns() - t2;
done:
	unbind(&c->d_ddst);
	unbind(&c->d_w);
	unbind(&c->d_dsrc);
	return st;
}

static int backward_weights(stl_conv *c, float *dw, float *db, const float *src, const float *ddst) {
	dnnl_status_t st = dnnl_success;
	TRY(ensure_prim(c, STL_BWD_WEIGHTS));
	int64_t t0 = now_ns(), t1 = 0, t2 = 0;
	TRY(attach_pass(c, STL_BWD_WEIGHTS, &c->w_src, &c->w_dw, &c->w_ddst));
	TRY(bind_in(c, &c->w_src, src));
	TRY(bind_in(c, &c->w_ddst, ddst));
	TRY(dnnl_memory_set_data_handle(c->w_dw.user, dw));
	TRY(dnnl_memory_set_data_handle(c->w_db, db ? db : c->junk_dbias));
	dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, memof(&c->w_src)},
	                           {DNNL_ARG_DIFF_DST, memof(&c->w_ddst)},
	                           {DNNL_ARG_DIFF_WEIGHTS, memof(&c->w_dw)},
	                           {DNNL_ARG_DIFF_BIAS, c->w_db},
	                           {DNNL_ARG_SCRATCHPAD, c->scratch[STL_BWD_WEIGHTS]}};
	t1 = now_ns();
	TRY(dnnl_primitive_execute(c->prim[STL_BWD_WEIGHTS], c->strm, c->scratch[STL_BWD_WEIGHTS] ? 5 : 4,
	                           args));
	t2 = now_ns();
	TRY(flush_out(c, &c->w_dw));
	TRY(dnnl_stream_wait(c->strm));
	c->ns[STL_BWD_WEIGHTS][0] += t1 - t0;
	c->ns[STL_BWD_WEIGHTS][1] += t2 - t1;
	c->ns[STL_BWD_WEIGHTS][2] += now_ns() - t2;
done:
	unbind(&c->w_src);
	unbind(&c->w_ddst);
	unbind(&c->w_dw);
	dnnl_memory_set_data_handle(c->w_db, c->junk_dbias);
	return st;
}

int stl_conv_backward_data(stl_conv *c, float *dsrc, const float *ddst, const float *w) {
	use_threads(c->nthr);
	return backward_data(c, dsrc, ddst, w, 0);
}

int stl_conv_backward_weights(stl_conv *c, float *dw, float *db, const float *src, const float *ddst) {
	use_threads(c->nthr);
	return backward_weights(c, dw, db, src, ddst);
}

// Both backward passes with one reorder of ddst when their layouts agree:
// weights first (it reads src's copy in the src buffer, which backward data
// then overwrites with dsrc's), then data, reading the ddst copy weights left
// in the dst buffer. Either output may be NULL to skip its pass.
int stl_conv_backward(stl_conv *c, float *dsrc, float *dw, float *db, const float *src, const float *ddst,
                      const float *w) {
	use_threads(c->nthr);
	int st = dnnl_success;
	if (dw && (st = backward_weights(c, dw, db, src, ddst)) != dnnl_success) return st;
	if (dsrc) st = backward_data(c, dsrc, ddst, w, dw && c->share_ddst);
	return st;
}

const char *stl_conv_impl(stl_conv *c, int which) {
	const char *s = NULL;
	if (which < 0 || which > 2 || !c->pd[which]) return "";
	if (dnnl_primitive_desc_query(c->pd[which], dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) return "";
	return s;
}

int stl_conv_shares_ddst(stl_conv *c) { return c->share_ddst; }

size_t stl_conv_ws_bytes(stl_conv *c) { return stl_ws_bytes(c->ws); }

void stl_conv_destroy(stl_conv *c) {
	if (!c) return;
	for (int i = 0; i < 3; i++) {
		if (c->prim[i]) dnnl_primitive_destroy(c->prim[i]);
		if (c->pd[i]) dnnl_primitive_desc_destroy(c->pd[i]);
		if (c->scratch[i]) dnnl_memory_destroy(c->scratch[i]);
	}
	binding *all[] = {&c->f_src, &c->f_w, &c->f_dst, &c->d_dsrc, &c->d_w, &c->d_ddst,
	                  &c->w_src, &c->w_dw, &c->w_ddst};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_binding(all[i]);
	if (c->f_bias) dnnl_memory_destroy(c->f_bias);
	if (c->w_db) dnnl_memory_destroy(c->w_db);
	if (c->strm) dnnl_stream_destroy(c->strm);
	stl_ws_release(c->ws);
	free(c->zero_bias);
	free(c->junk_dbias);
	free(c);
}

int stl_conv_block(void) {
	// A 3x3 layer of 32 channels on 16x16 images at batch 32, as the
	// classifiers have: the layout oneDNN's direct convolution picks for
	// training (for inference oneDNN 2.6 prefers nhwc on AVX-512).
	dnnl_dims_t sd = {32, 32, 16, 16}, wd = {32, 32, 3, 3}, bd = {32}, st = {1, 1}, pad = {1, 1};
	dnnl_memory_desc_t src, wei, dst, b;
	dnnl_convolution_desc_t cd;
	dnnl_primitive_desc_t pd;
	dnnl_status_t s;
	if ((s = dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&wei, 4, wd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&dst, 4, sd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
	    (s = dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_x)) != dnnl_success ||
	    (s = dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &src, &wei,
	                                            &b, &dst, st, pad, pad)) != dnnl_success ||
	    (s = dnnl_primitive_desc_create(&pd, &cd, NULL, engine, NULL)) != dnnl_success)
		return -(int)s;
	const dnnl_memory_desc_t *got = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	int block = 0;
	for (int blk = 4; blk <= 16 && got; blk *= 2) {
		dnnl_memory_desc_t want;
		if (dnnl_memory_desc_init_by_tag(&want, 4, sd, dnnl_f32, block_tag(blk)) == dnnl_success &&
		    dnnl_memory_desc_equal(got, &want))
			block = blk;
	}
	dnnl_primitive_desc_destroy(pd);
	return block;
}
