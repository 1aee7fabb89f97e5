/* v1 naive: i-j-k, the loop order of the definition. The inner loop walks down a column of B,
 * one element per cache line, so it waits on memory long before the arithmetic units are busy. */
#include "minillm_kernels.h"

/* matmul: C (M×N) = A (M×K) · B (K×N)
 * The numbered versions teach the path from the naive loop to the final kernel; they take
 * contiguous row-major operands. */
MINILLM_API
void matmul_v1_naive(const float *A, const float *B, float *C, int M, int N, int K) {
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k) acc += A[(long)i * K + k] * B[(long)k * N + j];
            C[(long)i * N + j] = acc;
        }
}
