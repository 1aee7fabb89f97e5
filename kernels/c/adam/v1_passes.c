/* v1 passes: one Adam step as NumPy takes it (reference.Backend.adam_update), one operation a
 * loop; `grad` and `t` play NumPy's temporaries. Every loop streams whole tensors through the
 * caches, so for a large parameter each line of this function is a trip to memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "adam.h"

MINILLM_API
void adam_update_v1_passes(float *p, const float *g, float *m, float *v, long long n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, int decoupled, float step_size,
                           float rsqrt_bc2) {
    float *grad = malloc(sizeof(float) * (n ? n : 1)), *t = malloc(sizeof(float) * (n ? n : 1));
    memcpy(grad, g, sizeof(float) * n);
    if (weight_decay != 0.0f && decoupled)
        for (long long i = 0; i < n; ++i) p[i] *= 1.0f - lr * weight_decay;
    else if (weight_decay != 0.0f)
        for (long long i = 0; i < n; ++i) grad[i] += weight_decay * p[i];
    for (long long i = 0; i < n; ++i) m[i] *= beta1;
    for (long long i = 0; i < n; ++i) t[i] = (1.0f - beta1) * grad[i];
    for (long long i = 0; i < n; ++i) m[i] += t[i];
    for (long long i = 0; i < n; ++i) v[i] *= beta2;
    for (long long i = 0; i < n; ++i) t[i] = (1.0f - beta2) * grad[i];
    for (long long i = 0; i < n; ++i) t[i] *= grad[i];
    for (long long i = 0; i < n; ++i) v[i] += t[i];
    for (long long i = 0; i < n; ++i) t[i] = sqrtf(v[i]);
    for (long long i = 0; i < n; ++i) t[i] = t[i] * rsqrt_bc2 + eps;
    for (long long i = 0; i < n; ++i) t[i] = step_size * m[i] / t[i];
    for (long long i = 0; i < n; ++i) p[i] -= t[i];
    free(grad);
    free(t);
}
