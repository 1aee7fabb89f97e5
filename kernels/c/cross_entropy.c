/* Softmax cross-entropy fused: loss_r = lse_r − logits[r, target_r]; the gradient is
 * (softmax − onehot) · dloss_r. Probabilities are never stored. Rows whose target is
 * ignore_index get loss 0 and gradient 0. The exponentials are exp_poly's (every argument
 * is ≤ 0 here: z − max and z − lse), which vectorise; glibc's expf is a call per element,
 * which does not. */
#include <math.h>
#include "minillm_kernels.h"
#include "exp_poly.h"

/* softmax cross-entropy over (N, C) logits and int64 targets */
MINILLM_API
void cross_entropy_forward(const float *logits, const long long *target, float *loss, float *lse, int rows,
                           int classes, long long ignore_index) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; ++r) {
        const float *z = logits + r * classes;
        float peak = -INFINITY;
#pragma omp simd reduction(max : peak)
        for (int c = 0; c < classes; ++c) peak = z[c] > peak ? z[c] : peak;
        float total = 0.0f;
#pragma omp simd reduction(+ : total)
        for (int c = 0; c < classes; ++c) total += exp_poly(z[c] - peak);
        lse[r] = peak + logf(total);
        loss[r] = target[r] == ignore_index ? 0.0f : lse[r] - z[target[r]];
    }
}

MINILLM_API
void cross_entropy_backward(const float *logits, const long long *target, const float *lse, const float *dloss,
                            float *dlogits, int rows, int classes, long long ignore_index) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; ++r) {
        const float *z = logits + r * classes;
        float *g = dlogits + r * classes;
        const long long t = target[r];
        const float scale = t == ignore_index ? 0.0f : dloss[r];
        const float shift = lse[r];
#pragma omp simd
        for (int c = 0; c < classes; ++c) g[c] = (exp_poly(z[c] - shift) - (c == t)) * scale;
    }
}
