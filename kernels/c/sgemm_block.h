/* The packed GEMM (matmul/sgemm.c: v6's loops) as a building block for other kernels
 * (attention's tiles): C (M×N, row stride ldc) = A·B, or += when `accumulate`; element (m, k)
 * of A is A[m*sam + k*sak] and element (k, n) of B is B[k*sbk + n*sbn], so transposes are
 * strides.
 * threads = 1 inside a kernel that is already parallel. */
#ifndef MINILLM_SGEMM_BLOCK_H
#define MINILLM_SGEMM_BLOCK_H

void sgemm_block(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                 long sbn, long ldc, int accumulate, int threads);

#endif
