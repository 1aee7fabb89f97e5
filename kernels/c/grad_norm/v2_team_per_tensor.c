/* v2 team per tensor: each tensor's loop shared out over the OpenMP team (one parallel region
 * a tensor), its sum one partial per thread and per vector lane. */
#include "grad_norm.h"

MINILLM_API
double sum_of_squares_many_v2_team_per_tensor(float *const *x, const long long *n, int count) {
    double total = 0.0;
    for (int t = 0; t < count; ++t) {
        const float *a = x[t];
        double partial = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : partial)
        for (long long i = 0; i < n[t]; ++i) partial += (double)a[i] * a[i];
        total += partial;
    }
    return total;
}

MINILLM_API
void scale_many_v2_team_per_tensor(float *const *x, const long long *n, int count, float factor) {
    for (int t = 0; t < count; ++t) {
        float *a = x[t];
#pragma omp parallel for simd schedule(static)
        for (long long i = 0; i < n[t]; ++i) a[i] *= factor;
    }
}
