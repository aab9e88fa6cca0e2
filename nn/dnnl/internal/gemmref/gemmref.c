//go:build cgo && !purego

#include <string.h>
#include <cblas.h>

#include "gemmref.h"

// col (C*R*S) x (OH*OW) from one image x (C, H, W).
static void im2col(const gr_params *p, const float *x, float *col) {
	int ohw = p->oh * p->ow;
	for (int c = 0; c < p->c; c++)
		for (int r = 0; r < p->r; r++)
			for (int s = 0; s < p->s; s++) {
				float *row = col + ((c * p->r + r) * p->s + s) * ohw;
				for (int i = 0; i < p->oh; i++) {
					int h = i * p->sh + r - p->ph;
					float *out = row + i * p->ow;
					if (h < 0 || h >= p->h) {
						memset(out, 0, sizeof(float) * p->ow);
						continue;
					}
					const float *in = x + (c * p->h + h) * p->w;
					for (int j = 0; j < p->ow; j++) {
						int v = j * p->sw + s - p->pw;
						out[j] = (v >= 0 && v < p->w) ? in[v] : 0.0f;
					}
				}
			}
}

// dx (C, H, W) = sum of col's patches (the adjoint of im2col); dx zeroed first.
static void col2im(const gr_params *p, const float *col, float *dx) {
	int ohw = p->oh * p->ow;
	memset(dx, 0, sizeof(float) * p->c * p->h * p->w);
	for (int c = 0; c < p->c; c++)
		for (int r = 0; r < p->r; r++)
			for (int s = 0; s < p->s; s++) {
				const float *row = col + ((c * p->r + r) * p->s + s) * ohw;
				for (int i = 0; i < p->oh; i++) {
					int h = i * p->sh + r - p->ph;
					if (h < 0 || h >= p->h) continue;
					float *out = dx + (c * p->h + h) * p->w;
					const float *in = row + i * p->ow;
					for (int j = 0; j < p->ow; j++) {
						int v = j * p->sw + s - p->pw;
						if (v >= 0 && v < p->w) out[v] += in[j];
					}
				}
			}
}

void gr_set_threads(int n) { openblas_set_num_threads(n); }

void gr_forward(const gr_params *p, float *dst, const float *src, const float *w, const float *b, float *col) {
	int crs = p->c * p->r * p->s, ohw = p->oh * p->ow;
	for (int n = 0; n < p->n; n++) {
		float *y = dst + (size_t)n * p->k * ohw;
		im2col(p, src + (size_t)n * p->c * p->h * p->w, col);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->k, ohw, crs, 1.0f, w, crs, col, ohw, 0.0f, y,
		            ohw);
		if (b)
			for (int k = 0; k < p->k; k++)
				for (int i = 0; i < ohw; i++) y[k * ohw + i] += b[k];
	}
}

void gr_backward_data(const gr_params *p, float *dsrc, const float *ddst, const float *w, float *col) {
	int crs = p->c * p->r * p->s, ohw = p->oh * p->ow;
	for (int n = 0; n < p->n; n++) {
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, crs, ohw, p->k, 1.0f, w, crs,
		            ddst + (size_t)n * p->k * ohw, ohw, 0.0f, col, ohw);
		col2im(p, col, dsrc + (size_t)n * p->c * p->h * p->w);
	}
}

void gr_backward_weights(const gr_params *p, float *dw, float *db, const float *src, const float *ddst, float *col) {
	int crs = p->c * p->r * p->s, ohw = p->oh * p->ow;
	if (db) memset(db, 0, sizeof(float) * p->k);
	for (int n = 0; n < p->n; n++) {
		const float *g = ddst + (size_t)n * p->k * ohw;
		im2col(p, src + (size_t)n * p->c * p->h * p->w, col);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->k, crs, ohw, 1.0f, g, ohw, col, ohw,
		            n == 0 ? 0.0f : 1.0f, dw, crs);
		if (db)
			for (int k = 0; k < p->k; k++) {
				float s = 0;
				for (int i = 0; i < ohw; i++) s += g[k * ohw + i];
				db[k] += s;
			}
	}
}
