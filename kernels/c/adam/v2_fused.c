/* v2 fused: v1's passes as one loop, on one thread. */
#include <math.h>
#include "adam.h"

MINILLM_API
void adam_update_v2_fused(float *p, const float *g, float *m, float *v, long long n, float lr, float beta1,
                          float beta2, float eps, float weight_decay, int decoupled, float step_size,
                          float rsqrt_bc2) {
    const float keep = decoupled ? 1.0f - lr * weight_decay : 1.0f;
    const float coupled = decoupled ? 0.0f : weight_decay;
#pragma omp simd
    for (long long i = 0; i < n; ++i) {
        const float grad = g[i] + coupled * p[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        const float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * keep - step_size * mi / (sqrtf(vi) * rsqrt_bc2 + eps);
    }
}
