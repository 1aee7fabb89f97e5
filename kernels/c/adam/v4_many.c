/* v4 many: every tensor of a model in one call, and what the backend runs (adam_update_many,
 * and adam_update on one tensor, at the end of this file).
 *
 * A GPT has dozens of parameters, most of 16–64 K values: one call each (v3) pays the Python
 * call and a thread-team start per tensor, and the small ones run on one core. Here the
 * tensors are treated as one index space of `total` values, cut into one equal, contiguous
 * range per thread; a range may start in one tensor and end in another. The recipe's
 * 0.8 M parameters · 28 bytes = 23 MB per step then move at every core's bandwidth, once. */
#include <math.h>
#include "adam.h"
#include "team.h"

/* Elements lo … hi − 1 of one tensor, on the calling thread: v2's loop. */
static void adam_range(float *p, const float *g, float *m, float *v, long long lo, long long hi, float keep,
                       float coupled, float beta1, float beta2, float eps, float step_size, float rsqrt_bc2) {
#pragma omp simd
    for (long long i = lo; i < hi; ++i) {
        const float grad = g[i] + coupled * p[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * grad;
        const float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * keep - step_size * mi / (sqrtf(vi) * rsqrt_bc2 + eps);
    }
}

MINILLM_API
void adam_update_v4_many(float *const *p, float *const *g, float *const *m, float *const *v, const long long *n,
                         int count, float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                         float step_size, float rsqrt_bc2) {
    const float keep = decoupled ? 1.0f - lr * weight_decay : 1.0f;
    const float coupled = decoupled ? 0.0f : weight_decay;
    long long total = 0;
    for (int t = 0; t < count; ++t)
        total += n[t];
#pragma omp parallel if (total > 65536)
    {
        const long long threads = team_size(), me = team_member();
        const long long lo = total * me / threads, hi = total * (me + 1) / threads;
        long long start = 0;  /* index of tensor t's first value in the joint space */
        for (int t = 0; t < count && start < hi; start += n[t], ++t) {
            const long long a = (lo > start ? lo : start) - start;
            const long long b = (hi < start + n[t] ? hi : start + n[t]) - start;
            if (a < b)
                adam_range(p[t], g[t], m[t], v[t], a, b, keep, coupled, beta1, beta2, eps, step_size, rsqrt_bc2);
        }
    }
}

/* The backend's Adam: v4, over many tensors or one. */
MINILLM_API
void adam_update_many(float *const *p, float *const *g, float *const *m, float *const *v, const long long *n,
                      int count, float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                      float step_size, float rsqrt_bc2) {
    adam_update_v4_many(p, g, m, v, n, count, lr, beta1, beta2, eps, weight_decay, decoupled, step_size, rsqrt_bc2);
}

MINILLM_API
void adam_update(float *p, const float *g, float *m, float *v, long long n, float lr, float beta1, float beta2,
                 float eps, float weight_decay, int decoupled, float step_size, float rsqrt_bc2) {
    float *gm = (float *)g;  /* read only: adam_range never writes through it */
    adam_update_v4_many(&p, &gm, &m, &v, &n, 1, lr, beta1, beta2, eps, weight_decay, decoupled, step_size,
                        rsqrt_bc2);
}
