/* v3 threaded: v2 with the tensor's elements shared out over the OpenMP team. Up to 64 K
 * values (256 KB an array) a team's fork and join cost more than the loop saves, and the
 * tensor stays on the calling thread. */
#include <math.h>
#include "adam.h"

MINILLM_API
void adam_update_v3_threaded(float *p, const float *g, float *m, float *v, long long n, float lr, float beta1,
                             float beta2, float eps, float weight_decay, int decoupled, float step_size,
                             float rsqrt_bc2) {
    const float keep = decoupled ? 1.0f - lr * weight_decay : 1.0f;
    const float coupled = decoupled ? 0.0f : weight_decay;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (long long i = 0; i < n; ++i) {
        const float grad = g[i] + coupled * p[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        const float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * keep - step_size * mi / (sqrtf(vi) * rsqrt_bc2 + eps);
    }
}
