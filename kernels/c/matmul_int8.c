/* Quantised matrix product: int8 activations times int8 weights, accumulated in int32
 * (exact: |sum| <= K·127·127 fits in 32 bits for K < 133,000). Both operands are read
 * along K, contiguous, so the inner product vectorises into widening multiply-adds. */
#include "minillm_kernels.h"

/* int8 · int8ᵀ → int32: C (M×N) = A (M×K) · B (N×K)ᵀ, for quantised linear layers */
MINILLM_API
void matmul_int8(const signed char *A, const signed char *B, int *C, int M, int N, int K) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            const signed char *a = A + (long)i * K, *b = B + (long)j * K;
            int acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int k = 0; k < K; ++k) acc += (int)a[k] * (int)b[k];
            C[(long)i * N + j] = acc;
        }
}
