/* v4 threaded: v3 with the rows shared out over the OpenMP team, and what the backend runs
 * (layernorm_forward and layernorm_backward at the end of this file). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "layernorm.h"
#include "team.h"

MINILLM_API
void layernorm_forward_v4_threaded(const float *x, const float *w, const float *b, float *y, float *mean,
                                   float *rstd, int rows, int d, float eps) {
    /* one row (a token being generated) stays on this thread: a team's fork and join cost
     * more than the row, and a team member the OS has not scheduled costs a time slice */
#pragma omp parallel for schedule(static) if ((long long)rows * d >= 32768)
    for (long r = 0; r < rows; ++r) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double sum = 0.0, squares = 0.0;
#pragma omp simd reduction(+ : sum, squares)
        for (int c = 0; c < d; ++c) {
            sum += xr[c];
            squares += (double)xr[c] * xr[c];
        }
        const double mu = sum / d, var = squares / d - mu * mu;
        const float inv = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps)), m = (float)mu;
#pragma omp simd
        for (int c = 0; c < d; ++c) yr[c] = (xr[c] - m) * inv * w[c] + b[c];
        mean[r] = m;
        rstd[r] = inv;
    }
}

MINILLM_API
void layernorm_backward_v4_threaded(const float *dy, const float *x, const float *w, const float *mean,
                                    const float *rstd, float *dx, float *dw, float *db, int rows, int d) {
    const int threads = team_threads(0);
    float *parts = calloc((size_t)threads * 2 * d, sizeof(float));  /* each thread's dw, then its db */
#pragma omp parallel num_threads(threads)
    {
        const int me = team_member();
        float *dw_part = parts + (size_t)me * 2 * d, *db_part = dw_part + d;
#pragma omp for schedule(static)
        for (long r = 0; r < rows; ++r) {
            const float *dyr = dy + r * d, *xr = x + r * d;
            float *dxr = dx + r * d;
            const float mu = mean[r], inv = rstd[r];
            float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
            for (int c = 0; c < d; ++c) {
                const float xhat = (xr[c] - mu) * inv, g = dyr[c] * w[c];
                g_sum += g;
                gx_sum += g * xhat;
                dw_part[c] += dyr[c] * xhat;
                db_part[c] += dyr[c];
            }
            const float g_mean = g_sum / d, gx_mean = gx_sum / d;
#pragma omp simd
            for (int c = 0; c < d; ++c) dxr[c] = inv * (dyr[c] * w[c] - g_mean - (xr[c] - mu) * inv * gx_mean);
        }
    }
    memset(dw, 0, sizeof(float) * d);
    memset(db, 0, sizeof(float) * d);
    for (int t = 0; t < threads; ++t)
        for (int c = 0; c < d; ++c) {
            dw[c] += parts[(size_t)t * 2 * d + c];
            db[c] += parts[(size_t)t * 2 * d + d + c];
        }
    free(parts);
}

/* The backend's layer norm: v4. */
MINILLM_API
void layernorm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd, int rows,
                       int d, float eps) {
    layernorm_forward_v4_threaded(x, w, b, y, mean, rstd, rows, d, eps);
}

MINILLM_API
void layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                        float *dx, float *dw, float *db, int rows, int d) {
    layernorm_backward_v4_threaded(dy, x, w, mean, rstd, dx, dw, db, rows, d);
}
