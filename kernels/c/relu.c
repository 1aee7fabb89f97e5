/* ReLU, elementwise over n floats: y = max(x, 0), and its backward dx = dy where x > 0, else 0.
 * One read and one write a value, so memory-bound: each loop is a compare and a blend that the
 * compiler vectorises (no branch). NaN passes through the forward as np.maximum's does. A
 * small array stays on the calling thread (as gelu/v3_threaded.c): waking the team costs more than it. */
#include "minillm_kernels.h"

MINILLM_API
void relu_forward(const float *x, float *y, long long n) {
#pragma omp parallel for simd schedule(static) if (n >= 32768)
    for (long long i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

MINILLM_API
void relu_backward(const float *x, const float *dy, float *dx, long long n) {
#pragma omp parallel for simd schedule(static) if (n >= 32768)
    for (long long i = 0; i < n; ++i) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}
