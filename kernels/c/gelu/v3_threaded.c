/* v3 threaded: v2 with the elements shared out over the OpenMP team, and what the backend
 * runs (gelu_forward and gelu_backward at the end of this file). */
#include "gelu.h"

MINILLM_API
void gelu_forward_v3_threaded(const float *x, float *y, long long n) {
    /* a few thousand values (one token's MLP) stay on this thread: see layernorm/v4_threaded.c */
#pragma omp parallel for simd schedule(static) if (n >= 32768)
    for (long long i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanh_rational(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v * v)));
    }
}

MINILLM_API
void gelu_backward_v3_threaded(const float *x, const float *dy, float *dx, long long n) {
#pragma omp parallel for simd schedule(static)
    for (long long i = 0; i < n; ++i) {
        const float v = x[i], v2 = v * v;
        const float t = tanh_rational(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v2));
        const float grad = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v2);
        dx[i] = dy[i] * grad;
    }
}

/* The backend's GELU: v3. */
MINILLM_API
void gelu_forward(const float *x, float *y, long long n) { gelu_forward_v3_threaded(x, y, n); }

MINILLM_API
void gelu_backward(const float *x, const float *dy, float *dx, long long n) { gelu_backward_v3_threaded(x, dy, dx, n); }
