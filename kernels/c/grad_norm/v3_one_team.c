/* v3 one team: one parallel region for all the tensors, each thread its own range of every
 * tensor, and what the backend runs (sum_of_squares_many and scale_many at the end of this
 * file). */
#include "grad_norm.h"
#include "team.h"

MINILLM_API
double sum_of_squares_many_v3_one_team(float *const *x, const long long *n, int count) {
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
void scale_many_v3_one_team(float *const *x, const long long *n, int count, float factor) {
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

/* The backend's gradient clipping: v3. */
MINILLM_API
double sum_of_squares_many(float *const *x, const long long *n, int count) {
    return sum_of_squares_many_v3_one_team(x, n, count);
}

MINILLM_API
void scale_many(float *const *x, const long long *n, int count, float factor) {
    scale_many_v3_one_team(x, n, count, factor);
}
