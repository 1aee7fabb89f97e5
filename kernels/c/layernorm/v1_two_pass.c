/* v1 two passes: layer norm as it is defined, one row at a time, one quantity per pass. */
#include <math.h>
#include "layernorm.h"

MINILLM_API
void layernorm_forward_v1_two_pass(const float *x, const float *w, const float *b, float *y, float *mean,
                                   float *rstd, int rows, int d, float eps) {
    for (long r = 0; r < rows; ++r) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double sum = 0.0;
        for (int c = 0; c < d; ++c) sum += xr[c];
        const double mu = sum / d;
        double squares = 0.0;  /* Σ (x − μ)²: no cancellation, whatever μ is */
        for (int c = 0; c < d; ++c) squares += (xr[c] - mu) * (xr[c] - mu);
        const float inv = (float)(1.0 / sqrt(squares / d + eps)), m = (float)mu;
        for (int c = 0; c < d; ++c) yr[c] = (xr[c] - m) * inv * w[c] + b[c];
        mean[r] = m;
        rstd[r] = inv;
    }
}

MINILLM_API
void layernorm_backward_v1_two_pass(const float *dy, const float *x, const float *w, const float *mean,
                                    const float *rstd, float *dx, float *dw, float *db, int rows, int d) {
    for (int c = 0; c < d; ++c) dw[c] = db[c] = 0.0f;
    for (long r = 0; r < rows; ++r) {
        const float *dyr = dy + r * d, *xr = x + r * d;
        float *dxr = dx + r * d;
        const float mu = mean[r], inv = rstd[r];
        for (int c = 0; c < d; ++c) {
            dw[c] += dyr[c] * (xr[c] - mu) * inv;
            db[c] += dyr[c];
        }
        float g_sum = 0.0f, gx_sum = 0.0f;
        for (int c = 0; c < d; ++c) {
            const float g = dyr[c] * w[c];
            g_sum += g;
            gx_sum += g * (xr[c] - mu) * inv;
        }
        const float g_mean = g_sum / d, gx_mean = gx_sum / d;
        for (int c = 0; c < d; ++c) dxr[c] = inv * (dyr[c] * w[c] - g_mean - (xr[c] - mu) * inv * gx_mean);
    }
}
