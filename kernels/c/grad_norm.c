/* Gradient clipping over every gradient of a model at once (nn.utils.clip_grad_norm_):
 *
 *   sum_of_squares_many:  Σ_t Σ_i x_t[i]²        scale_many:  x_t[i] ← x_t[i] · factor
 *
 * NumPy took one dot product and one in-place multiply per tensor: about 140 calls for
 * nanoGPT's recipe (69 gradients), each on one core. Here each thread takes the i-th of
 * `threads` equal ranges of every tensor (for a weight gradient, the range that
 * linear_backward's sum of partials wrote on the same thread). The squares are summed in
 * double: the pass is bound by memory, not by the conversions, and a float sum that is not
 * split into vector lanes (the sanitizer build) drifts by about 1e-5 over a hundred thousand
 * values. */
#include "minillm_kernels.h"
#include "team.h"

/* gradient clipping over many tensors: Σ x² of all, and x ← x · factor for all */
MINILLM_API
double sum_of_squares_many(float *const *x, const long long *n, int count) {
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        const long long me = team_member(), threads = team_size();
        for (int t = 0; t < count; ++t) {
            const float *a = x[t];
            double partial = 0.0;
#pragma omp simd reduction(+ : partial)
            for (long long i = n[t] * me / threads; i < n[t] * (me + 1) / threads; ++i) partial += (double)a[i] * a[i];
            total += partial;
        }
    }
    return total;
}

MINILLM_API
void scale_many(float *const *x, const long long *n, int count, float factor) {
#pragma omp parallel
    {
        const long long me = team_member(), threads = team_size();
        for (int t = 0; t < count; ++t) {
            float *a = x[t];
#pragma omp simd
            for (long long i = n[t] * me / threads; i < n[t] * (me + 1) / threads; ++i) a[i] *= factor;
        }
    }
}
