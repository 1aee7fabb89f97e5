/* v2 one pass: the row's Σx and Σx² in the same pass, in double (layernorm.h says why);
 * in the backward, dw and db summed in the pass that sums the two means. */
#include <math.h>
#include <string.h>
#include "layernorm.h"

MINILLM_API
void layernorm_forward_v2_one_pass(const float *x, const float *w, const float *b, float *y, float *mean,
                                   float *rstd, int rows, int d, float eps) {
    for (long r = 0; r < rows; ++r) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double sum = 0.0, squares = 0.0;
        for (int c = 0; c < d; ++c) {
            sum += xr[c];
            squares += (double)xr[c] * xr[c];
        }
        /* rounding can leave a constant row's variance a hair below zero */
        const double mu = sum / d, var = squares / d - mu * mu;
        const float inv = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps)), m = (float)mu;
        for (int c = 0; c < d; ++c) yr[c] = (xr[c] - m) * inv * w[c] + b[c];
        mean[r] = m;
        rstd[r] = inv;
    }
}

MINILLM_API
void layernorm_backward_v2_one_pass(const float *dy, const float *x, const float *w, const float *mean,
                                    const float *rstd, float *dx, float *dw, float *db, int rows, int d) {
    memset(dw, 0, sizeof(float) * d);
    memset(db, 0, sizeof(float) * d);
    for (long r = 0; r < rows; ++r) {
        const float *dyr = dy + r * d, *xr = x + r * d;
        float *dxr = dx + r * d;
        const float mu = mean[r], inv = rstd[r];
        float g_sum = 0.0f, gx_sum = 0.0f;
        for (int c = 0; c < d; ++c) {
            const float xhat = (xr[c] - mu) * inv, g = dyr[c] * w[c];
            g_sum += g;
            gx_sum += g * xhat;
            dw[c] += dyr[c] * xhat;
            db[c] += dyr[c];
        }
        const float g_mean = g_sum / d, gx_mean = gx_sum / d;
        for (int c = 0; c < d; ++c) dxr[c] = inv * (dyr[c] * w[c] - g_mean - (xr[c] - mu) * inv * gx_mean);
    }
}
