//go:build cgo && !purego

// Batch normalization and pooling primitives on plain NCHW arrays; see
// dnnl.h. Like dnnl.c, no Go pointer outlives a call.

#include <stdlib.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>

#include "dnnl.h"

extern void omp_set_num_threads(int);
extern int omp_get_max_threads(void);
extern dnnl_engine_t stl_engine(void);

struct stl_op {
	dnnl_primitive_desc_t pd;
	dnnl_primitive_t prim;
	dnnl_stream_t strm;
	int nthr;
	int nargs, nuser;
	dnnl_exec_arg_t args[STL_OP_MAXARGS];
	int owned[STL_OP_MAXARGS]; // memory destroyed with the op
	void *bufs[2];             // buffers of owned memories (workspace, scratchpad)
};

#define CHECK(x)                                        \
	do {                                                \
		dnnl_status_t s_ = (x);                         \
		if (s_ != dnnl_success) return (int)s_;         \
	} while (0)

static void *zalloc(size_t n) {
	n = (n + 63) / 64 * 64;
	if (n == 0) n = 64;
	void *p = aligned_alloc(64, n);
	if (p) memset(p, 0, n);
	return p;
}

// new_op makes an op of pd: user arguments (kind, md) in order, then a
// scratchpad if pd needs one.
static int new_op(stl_op **out, dnnl_primitive_desc_t pd, int nthr, int nuser, const int *kinds,
                  const dnnl_memory_desc_t **mds) {
	stl_op *op = calloc(1, sizeof *op);
	if (!op) {
		dnnl_primitive_desc_destroy(pd);
		return dnnl_out_of_memory;
	}
	*out = op;
	op->pd = pd;
	op->nthr = nthr;
	for (int i = 0; i < nuser; i++) {
		op->args[i].arg = kinds[i];
		op->owned[i] = 1;
		CHECK(dnnl_memory_create(&op->args[i].memory, mds[i], stl_engine(), DNNL_MEMORY_NONE));
	}
	op->nuser = op->nargs = nuser;
	const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	size_t sz = smd ? dnnl_memory_desc_get_size(smd) : 0;
	if (sz > 0) {
		if (!(op->bufs[0] = zalloc(sz))) return dnnl_out_of_memory;
		int i = op->nargs++;
		op->args[i].arg = DNNL_ARG_SCRATCHPAD;
		op->owned[i] = 1;
		CHECK(dnnl_memory_create(&op->args[i].memory, smd, stl_engine(), op->bufs[0]));
	}
	CHECK(dnnl_stream_create(&op->strm, stl_engine(), dnnl_stream_default_flags));
	return dnnl_primitive_create(&op->prim, pd);
}

// add_arg appends an internal argument (memory owned elsewhere unless owned).
static void add_arg(stl_op *op, int kind, dnnl_memory_t m, int owned) {
	int i = op->nargs++;
	op->args[i].arg = kind;
	op->args[i].memory = m;
	op->owned[i] = owned;
}

void stl_op_destroy(stl_op *op) {
	if (!op) return;
	if (op->prim) dnnl_primitive_destroy(op->prim);
	if (op->pd) dnnl_primitive_desc_destroy(op->pd);
	if (op->strm) dnnl_stream_destroy(op->strm);
	for (int i = 0; i < op->nargs; i++)
		if (op->owned[i] && op->args[i].memory) dnnl_memory_destroy(op->args[i].memory);
	free(op->bufs[0]);
	free(op->bufs[1]);
	free(op);
}

const char *stl_op_impl(stl_op *op) {
	const char *s = NULL;
	if (dnnl_primitive_desc_query(op->pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) return "";
	return s;
}

int stl_op_exec(stl_op *op, void *p0, void *p1, void *p2, void *p3, void *p4, void *p5, void *p6, void *p7) {
	if (omp_get_max_threads() != op->nthr) omp_set_num_threads(op->nthr);
	void *ptrs[8] = {p0, p1, p2, p3, p4, p5, p6, p7};
	dnnl_status_t st = dnnl_success;
	for (int i = 0; i < op->nuser && st == dnnl_success; i++)
		st = dnnl_memory_set_data_handle(op->args[i].memory, ptrs[i]);
	if (st == dnnl_success) st = dnnl_primitive_execute(op->prim, op->strm, op->nargs, op->args);
	if (st == dnnl_success) st = dnnl_stream_wait(op->strm);
	for (int i = 0; i < op->nuser; i++) dnnl_memory_set_data_handle(op->args[i].memory, NULL);
	return st;
}

// Batch norm uses the combined (2, C) scale-and-shift array: with separate
// scale and shift arrays oneDNN 2.6 rejects the backward execution
// (invalid_arguments).
static int bn_create(stl_op **ft, stl_op **fi, stl_op **b, const int64_t *nchw, float eps, int relu) {
	dnnl_dims_t d = {nchw[0], nchw[1], nchw[2], nchw[3]};
	dnnl_dims_t c = {nchw[1]}, ss = {2, nchw[1]};
	dnnl_memory_desc_t data, ch, sc;
	CHECK(dnnl_memory_desc_init_by_tag(&data, 4, d, dnnl_f32, dnnl_nchw));
	CHECK(dnnl_memory_desc_init_by_tag(&ch, 1, c, dnnl_f32, dnnl_x));
	CHECK(dnnl_memory_desc_init_by_tag(&sc, 2, ss, dnnl_f32, dnnl_nc));
	unsigned flags = dnnl_use_scaleshift | (relu ? dnnl_fuse_norm_relu : 0);
	int nthr = omp_get_max_threads();
	dnnl_batch_normalization_desc_t bd;
	dnnl_primitive_desc_t pd, fpd, ipd;

	// Scratchpad mode "library" here: oneDNN's batch norm asks for little.
	CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &data, eps, flags));
	CHECK(dnnl_primitive_desc_create(&fpd, &bd, NULL, stl_engine(), NULL));
	{
		int kinds[] = {DNNL_ARG_SRC, DNNL_ARG_SCALE_SHIFT, DNNL_ARG_DST, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
		const dnnl_memory_desc_t *mds[] = {&data, &sc, &data, &ch, &ch};
		CHECK(dnnl_primitive_desc_clone(&pd, fpd));
		CHECK(new_op(ft, pd, nthr, 5, kinds, mds));
	}
	CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &data, eps,
	                                                  flags | dnnl_use_global_stats));
	CHECK(dnnl_primitive_desc_create(&ipd, &bd, NULL, stl_engine(), NULL));
	{
		int kinds[] = {DNNL_ARG_SRC, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_SCALE_SHIFT, DNNL_ARG_DST};
		const dnnl_memory_desc_t *mds[] = {&data, &ch, &ch, &sc, &data};
		CHECK(new_op(fi, ipd, nthr, 5, kinds, mds));
	}
	dnnl_status_t st = dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &data, &data, eps, flags);
	if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bd, NULL, stl_engine(), fpd);
	dnnl_primitive_desc_destroy(fpd);
	CHECK(st);
	{
		int kinds[] = {DNNL_ARG_SRC,         DNNL_ARG_MEAN,     DNNL_ARG_VARIANCE,
		               DNNL_ARG_DIFF_DST,    DNNL_ARG_SCALE_SHIFT, DNNL_ARG_DIFF_SRC,
		               DNNL_ARG_DIFF_SCALE_SHIFT};
		const dnnl_memory_desc_t *mds[] = {&data, &ch, &ch, &data, &sc, &data, &sc};
		CHECK(new_op(b, pd, nthr, 7, kinds, mds));
	}
	// With the fused ReLU, training forward records which outputs were
	// positive in a workspace that backward reads.
	const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md((*ft)->pd, dnnl_query_workspace_md, 0);
	size_t wsz = wmd ? dnnl_memory_desc_get_size(wmd) : 0;
	if (wsz) {
		dnnl_memory_t ws;
		if (!((*ft)->bufs[1] = zalloc(wsz))) return dnnl_out_of_memory;
		CHECK(dnnl_memory_create(&ws, wmd, stl_engine(), (*ft)->bufs[1]));
		add_arg(*ft, DNNL_ARG_WORKSPACE, ws, 1);
		add_arg(*b, DNNL_ARG_WORKSPACE, ws, 0);
	}
	return dnnl_success;
}

int stl_bn_create(stl_op **ft, stl_op **fi, stl_op **b, const int64_t *nchw, float eps, int relu, int nthr) {
	if (omp_get_max_threads() != nthr) omp_set_num_threads(nthr);
	*ft = *fi = *b = NULL;
	int st = bn_create(ft, fi, b, nchw, eps, relu);
	if (st != dnnl_success) {
		stl_op_destroy(*b); // before ft, whose workspace it may reference
		stl_op_destroy(*ft);
		stl_op_destroy(*fi);
		*ft = *fi = *b = NULL;
	}
	return st;
}

static int pool_create(stl_op **f, stl_op **b, const int64_t *p, int alg) {
	dnnl_dims_t sd = {p[0], p[1], p[2], p[3]};
	dnnl_dims_t dd = {p[0], p[1], p[10], p[11]};
	dnnl_dims_t kernel = {p[4], p[5]}, strides = {p[6], p[7]}, padl = {p[8], p[9]};
	int64_t prh = (p[10] - 1) * p[6] - p[2] + p[4] - p[8];
	int64_t prw = (p[11] - 1) * p[7] - p[3] + p[5] - p[9];
	dnnl_dims_t padr = {prh < 0 ? 0 : prh, prw < 0 ? 0 : prw};
	dnnl_alg_kind_t ak = alg == 0 ? dnnl_pooling_max : dnnl_pooling_avg_include_padding;
	dnnl_memory_desc_t src, dst;
	CHECK(dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_nchw));
	CHECK(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nchw));
	int nthr = omp_get_max_threads();
	dnnl_pooling_desc_t pdsc;
	dnnl_primitive_desc_t fpd, bpd, pd;
	CHECK(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_training, ak, &src, &dst, strides, kernel, padl, padr));
	CHECK(dnnl_primitive_desc_create(&fpd, &pdsc, NULL, stl_engine(), NULL));
	dnnl_status_t st = dnnl_pooling_backward_desc_init(&pdsc, ak, &src, &dst, strides, kernel, padl, padr);
	if (st == dnnl_success) st = dnnl_primitive_desc_create(&bpd, &pdsc, NULL, stl_engine(), fpd);
	if (st != dnnl_success) {
		dnnl_primitive_desc_destroy(fpd);
		return st;
	}
	const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
	size_t wsz = wmd ? dnnl_memory_desc_get_size(wmd) : 0;
	dnnl_memory_desc_t wcopy;
	if (wsz) wcopy = *wmd; // fpd is owned by the op from here on
	CHECK(dnnl_primitive_desc_clone(&pd, fpd));
	dnnl_primitive_desc_destroy(fpd);
	{
		int kinds[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
		const dnnl_memory_desc_t *mds[] = {&src, &dst};
		CHECK(new_op(f, pd, nthr, 2, kinds, mds));
	}
	{
		int kinds[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
		const dnnl_memory_desc_t *mds[] = {&dst, &src};
		CHECK(new_op(b, bpd, nthr, 2, kinds, mds));
	}
	if (wsz) {
		dnnl_memory_t ws;
		if (!((*f)->bufs[1] = zalloc(wsz))) return dnnl_out_of_memory;
		CHECK(dnnl_memory_create(&ws, &wcopy, stl_engine(), (*f)->bufs[1]));
		add_arg(*f, DNNL_ARG_WORKSPACE, ws, 1);
		add_arg(*b, DNNL_ARG_WORKSPACE, ws, 0);
	}
	return dnnl_success;
}

int stl_pool_create(stl_op **f, stl_op **b, const int64_t *p, int alg, int nthr) {
	if (omp_get_max_threads() != nthr) omp_set_num_threads(nthr);
	*f = *b = NULL;
	int st = pool_create(f, b, p, alg);
	if (st != dnnl_success) {
		stl_op_destroy(*b);
		stl_op_destroy(*f);
		*f = *b = NULL;
	}
	return st;
}
