/* out = a + b over n floats: a transformer's residual connections (x + attention(LN(x)),
 * x + MLP(LN(x))) and autograd's sum of the two gradients that reach the residual stream.
 *
 * NumPy adds on one core. Inside a training step that core first has to fetch the half of
 * the rows that the kernels before (layer norm, GELU, the GEMM's own rows under v7, the
 * Linear backward's) left in the other core's cache, and the next kernel sends half of the
 * result back. Here each core adds the half it already holds: schedule(static) cuts the
 * range where those kernels cut their rows. (Small arrays stay with NumPy: the c backend's add.) */
#include "minillm_kernels.h"

/* out = a + b over n floats (the residual stream and its gradient) */
MINILLM_API
void add_arrays(const float *a, const float *b, float *out, long long n) {
#pragma omp parallel for simd schedule(static)
    for (long long i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
