#ifndef STL_GEMMREF_H
#define STL_GEMMREF_H

typedef struct {
	int n, c, h, w, k, r, s, sh, sw, ph, pw, oh, ow;
} gr_params;

void gr_set_threads(int n);
void gr_forward(const gr_params *p, float *dst, const float *src, const float *w, const float *b, float *col);
void gr_backward_data(const gr_params *p, float *dsrc, const float *ddst, const float *w, float *col);
void gr_backward_weights(const gr_params *p, float *dw, float *db, const float *src, const float *ddst, float *col);

#endif
