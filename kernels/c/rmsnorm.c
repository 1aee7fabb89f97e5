/* RMSNorm over the rows of an (N, D) float32 matrix: y = x · rstd · w, rstd = 1/√(mean(x²) + ε).
 *
 * Idea: LayerNorm without the mean, so one reduction per row instead of two. The forward reads
 * a row once for Σx² and once more to scale it; between the two reads the row (D floats: a
 * kilobyte at D = 256, 16 KB at D = 4096) sits in L1, so memory sees x read once and y written
 * once. The backward, with x̂ = x·rstd and g = dy·w,
 *     dx = rstd · (g − x̂ · mean(g ⊙ x̂)),   dw = Σ_rows dy ⊙ x̂,
 * reads dy and x once for mean(g ⊙ x̂) and again from L1 for dx. dw is summed per thread into
 * a D-float partial (L1 too) and the partials are added at the end: no atomics, no sharing.
 *
 * A team of threads only above RMSNORM_PARALLEL_FROM values, as layernorm/v4_threaded.c: one token's row
 * (generation) costs less than waking the team. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minillm_kernels.h"
#include "team.h"

#define RMSNORM_PARALLEL_FROM 32768

MINILLM_API
void rmsnorm_forward(const float *x, const float *w, float *y, float *rstd, int rows, int d, float eps) {
#pragma omp parallel for schedule(static) if ((long long)rows * d >= RMSNORM_PARALLEL_FROM)
    for (long r = 0; r < rows; ++r) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
        for (int c = 0; c < d; ++c) squares += xr[c] * xr[c];
        const float inv = 1.0f / sqrtf(squares / d + eps);
#pragma omp simd
        for (int c = 0; c < d; ++c) yr[c] = xr[c] * inv * w[c];
        rstd[r] = inv;
    }
}

MINILLM_API
void rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                      int rows, int d) {
    const int threads = (long long)rows * d >= RMSNORM_PARALLEL_FROM ? team_threads(0) : 1;
    float *parts = calloc((size_t)threads * d, sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *dw_part = parts + (size_t)team_member() * d;
#pragma omp for schedule(static)
        for (long r = 0; r < rows; ++r) {
            const float *dyr = dy + r * d, *xr = x + r * d;
            float *dxr = dx + r * d;
            const float inv = rstd[r];
            float gx_sum = 0.0f;
#pragma omp simd reduction(+ : gx_sum)
            for (int c = 0; c < d; ++c) {
                const float xhat = xr[c] * inv;
                gx_sum += dyr[c] * w[c] * xhat;
                dw_part[c] += dyr[c] * xhat;
            }
            const float gx_mean = gx_sum / d;
#pragma omp simd
            for (int c = 0; c < d; ++c) dxr[c] = inv * (dyr[c] * w[c] - xr[c] * inv * gx_mean);
        }
    }
    memset(dw, 0, sizeof(float) * d);
    for (int t = 0; t < threads; ++t)
        for (int c = 0; c < d; ++c) dw[c] += parts[(size_t)t * d + c];
    free(parts);
}
