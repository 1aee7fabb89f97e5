/* v1 libm: GELU with libm's tanhf, one element after another on one thread. */
#include <math.h>
#include "gelu.h"

MINILLM_API
void gelu_forward_v1_libm(const float *x, float *y, long long n) {
    for (long long i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v * v)));
    }
}

MINILLM_API
void gelu_backward_v1_libm(const float *x, const float *dy, float *dx, long long n) {
    for (long long i = 0; i < n; ++i) {
        const float v = x[i], v2 = v * v;
        const float t = tanhf(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v2));
        const float grad = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v2);
        dx[i] = dy[i] * grad;
    }
}
