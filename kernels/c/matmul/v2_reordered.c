/* v2 reordered: i-k-j. The inner loop now runs along a row of B and a row of C, both
 * contiguous, so it streams from memory and the compiler vectorises it (SIMD). */
#include <string.h>
#include "minillm_kernels.h"

MINILLM_API
void matmul_v2_reordered(const float *A, const float *B, float *C, int M, int N, int K) {
    memset(C, 0, sizeof(float) * (size_t)M * N);
    for (int i = 0; i < M; ++i)
        for (int k = 0; k < K; ++k) {
            const float a = A[(long)i * K + k];
            const float *b = B + (long)k * N;
            float *c = C + (long)i * N;
            for (int j = 0; j < N; ++j) c[j] += a * b[j];
        }
}
