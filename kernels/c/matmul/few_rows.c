/* A product with few rows of A (generating one token: M is the batch, often 1).
 *
 * Packing B would copy the whole matrix to use each element once, and a register tile of MR
 * rows would be mostly padding, so B is read where it lies, the columns of C shared out among
 * the threads:
 *   B with contiguous rows (sbn = 1):      C[i, :] += A[i, k] · B[k, :], vectorised along N;
 *   B with contiguous columns (sbk = 1, x · Wᵀ as a Linear layer computes it):
 *                                          C[i, j] = A[i, :] · B[:, j], vectorised along K.
 * C is written, not added to (the backend's products never accumulate here). Returns 0, having
 * done nothing, when neither layout applies (the packed path takes it). */
#include "matmul.h"

#define COLUMN_CHUNK 256
#define MIN_PARALLEL_WORK 65536  /* N·K below which waking a second thread costs more than it saves */

int gemm_few_rows(const gemm_t *p, int threads) {
    const float *A = p->A, *B = p->B;
    float *C = p->C;
    const int M = p->M, N = p->N, K = p->K;
    const long sam = p->sam, sak = p->sak, sbk = p->sbk, sbn = p->sbn, ldc = p->ldc;
    const int parallel = threads > 1 && (long)N * K >= MIN_PARALLEL_WORK;
    if (sbn == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
        for (int j0 = 0; j0 < N; j0 += COLUMN_CHUNK) {
            const int j1 = min_int(j0 + COLUMN_CHUNK, N);
            for (int i = 0; i < M; ++i) {
                float *restrict c = C + i * ldc;
                for (int j = j0; j < j1; ++j) c[j] = 0.0f;
                for (int k = 0; k < K; ++k) {
                    const float a = A[i * sam + k * sak];
                    const float *restrict b = B + k * sbk;
#pragma omp simd
                    for (int j = j0; j < j1; ++j) c[j] += a * b[j];
                }
            }
        }
    } else if (sbk == 1 && sak == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
        for (int j = 0; j < N; ++j) {
            const float *restrict b = B + j * sbn;
            for (int i = 0; i < M; ++i) {
                const float *restrict a = A + i * sam;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int k = 0; k < K; ++k) acc += a[k] * b[k];
                C[i * ldc + j] = acc;
            }
        }
    } else
        return 0;
    if (p->bias)
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) C[i * ldc + j] += p->bias[j];
    return 1;
}
