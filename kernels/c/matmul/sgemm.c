/* What the backend runs: the best version for each product (matmul.h lists them all).
 *
 *   one to four rows                         few_rows.c: B read where it lies, no packing
 *   rows enough for every core               v8: each core its own rows, A sliver in L1
 *   fewer rows, several cores                v6: the cores share each packed panel
 *   one thread                               v8's loops for that thread alone
 *
 * and sgemm_block, attention's tile products inside its own parallel loop: v6 on one thread. */
#include "minillm_kernels.h"
#include "sgemm_block.h"
#include "blocking.h"
#include "matmul.h"
#include "share.h"

#define FEW_ROWS 4
/* Below this many rows a core, packing all of B once per core (v7, v8) costs more than
 * sharing the panels (v6). */
#define ROWS_PER_THREAD (4 * MR)

static void product(const gemm_t *p, int threads) {
    if (p->M <= FEW_ROWS && gemm_few_rows(p, threads))
        return;
    if (threads > 1 && p->M >= ROWS_PER_THREAD * threads)
        own_rows(p, threads, gemm_v8_one_thread);
    else if (threads > 1)
        gemm_v6_in_place(p, threads);
    else
        gemm_v8_one_thread(p);
}

/* C = op(A)·op(B) (+ bias on every row, bias may be NULL) for one 2-D product (a Linear
 * layer): the bias is added by the tiles' stores. */
MINILLM_API
void sgemm_bias(const float *A, const float *B, const float *bias, float *C, int M, int N, int K, long long sam,
                long long sak, long long sbk, long long sbn, int threads) {
    const gemm_t p = {.A = A, .B = B, .bias = bias, .C = C, .M = M, .N = N, .K = K, .sam = sam, .sak = sak,
                      .sbk = sbk, .sbn = sbn, .ldc = N};
    product(&p, team_threads(threads));
}

/* The backend's kernel (matmul/sgemm.c: v8, or v6 for a product with few rows): `batches`
 * products; element (m, k) of batch z of A is A[z*sab + m*sam + k*sak] (likewise B), so
 * transposes and broadcast batches cost nothing.
 * C is contiguous (batches × M × N). threads: 0 = all cores. */
MINILLM_API
void sgemm_strided(const float *A, const float *B, float *C, int batches, int M, int N, int K, long long sab,
                   long long sam, long long sak, long long sbb, long long sbk, long long sbn, int threads) {
    threads = team_threads(threads);
    const gemm_t first = {.A = A, .B = B, .C = C, .M = M, .N = N, .K = K, .sam = sam, .sak = sak, .sbk = sbk,
                          .sbn = sbn, .ldc = N};
    if (batches >= 2 * threads && M <= 2 * gemm_blocking.mc) {
        /* many small products (attention heads): one product per thread at a time */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
        for (int z = 0; z < batches; ++z) {
            gemm_t p = first;
            p.A += z * sab, p.B += z * sbb, p.C += (long long)z * M * N;
            product(&p, 1);
        }
    } else {
        for (int z = 0; z < batches; ++z) {
            gemm_t p = first;
            p.A += z * sab, p.B += z * sbb, p.C += (long long)z * M * N;
            product(&p, threads);
        }
    }
}

void sgemm_block(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                 long sbn, long ldc, int accumulate, int threads) {
    const gemm_t p = {.A = A, .B = B, .C = C, .M = M, .N = N, .K = K, .sam = sam, .sak = sak, .sbk = sbk,
                      .sbn = sbn, .ldc = ldc, .accumulate = accumulate};
    gemm_v6_in_place(&p, threads);
}
