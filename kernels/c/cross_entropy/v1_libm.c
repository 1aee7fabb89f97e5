/* v1 libm: cross-entropy one row at a time with libm's expf, a call per element. */
#include <math.h>
#include "cross_entropy.h"

MINILLM_API
void cross_entropy_forward_v1_libm(const float *logits, const long long *target, float *loss, float *lse, int rows,
                                   int classes, long long ignore_index) {
    for (long r = 0; r < rows; ++r) {
        const float *z = logits + r * classes;
        float peak = -INFINITY;
        for (int c = 0; c < classes; ++c) peak = z[c] > peak ? z[c] : peak;
        float total = 0.0f;
        for (int c = 0; c < classes; ++c) total += expf(z[c] - peak);
        lse[r] = peak + logf(total);
        loss[r] = target[r] == ignore_index ? 0.0f : lse[r] - z[target[r]];
    }
}

MINILLM_API
void cross_entropy_backward_v1_libm(const float *logits, const long long *target, const float *lse,
                                    const float *dloss, float *dlogits, int rows, int classes,
                                    long long ignore_index) {
    for (long r = 0; r < rows; ++r) {
        const float *z = logits + r * classes;
        float *g = dlogits + r * classes;
        const long long t = target[r];
        const float scale = t == ignore_index ? 0.0f : dloss[r];
        for (int c = 0; c < classes; ++c) g[c] = (expf(z[c] - lse[r]) - (c == t)) * scale;
    }
}
