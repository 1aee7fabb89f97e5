/* Adam and AdamW in one pass per tensor.
 *
 * NumPy spends about ten passes over memory on one Adam step (scale m, add, scale v,
 * square, add, sqrt, divide, …), each with a temporary as large as the parameter. Here each
 * element is read once (θ, g, m, v) and written once (θ, m, v): 28 bytes per parameter,
 * so the update runs at memory bandwidth. Same formula as numpy_backend.adam_update:
 *   AdamW: θ ← θ(1 − ηλ)    Adam: g ← g + λθ
 *   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  θ ← θ − step_size · m / (√v · rsqrt_bc2 + ε)
 * with step_size = η / (1 − β₁ᵗ) and rsqrt_bc2 = 1 / √(1 − β₂ᵗ), computed once by the caller. */
#include <math.h>
#include "minillm_kernels.h"

void adam_update(float *p, const float *g, float *m, float *v, long long n, float lr, float beta1, float beta2,
                 float eps, float weight_decay, int decoupled, float step_size, float rsqrt_bc2) {
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
