/* v1 one thread: the tensors one after another on the calling thread. */
#include "grad_norm.h"

MINILLM_API
double sum_of_squares_many_v1_one_thread(float *const *x, const long long *n, int count) {
    double total = 0.0;
    for (int t = 0; t < count; ++t)
        for (long long i = 0; i < n[t]; ++i) total += (double)x[t][i] * x[t][i];
    return total;
}

MINILLM_API
void scale_many_v1_one_thread(float *const *x, const long long *n, int count, float factor) {
    for (int t = 0; t < count; ++t)
        for (long long i = 0; i < n[t]; ++i) x[t][i] *= factor;
}
