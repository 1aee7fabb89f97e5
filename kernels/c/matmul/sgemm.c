/* What the backend runs: the best version for each product (matmul.h lists them all).
 *
 *   one to four rows                         few_rows.c: B read where it lies, no packing
 *   few rows a core, B wide enough           v8 on each core's own columns of C
 *   many rows a core                         v8 on each core's own rows of C, A sliver in L1
 *   otherwise, several cores                 v6: the cores share each packed panel
 *   one thread                               v8's loops for that thread alone
 *
 * and sgemm_block, attention's tile products inside its own parallel loop: v6 on one thread. */
#include "minillm_kernels.h"
#include "sgemm_block.h"
#include "blocking.h"
#include "matmul.h"
#include "share.h"

#define FEW_ROWS 4
/* Rows a core up to which each core takes its own columns instead of its own rows. A core
 * with its own rows packs all of B (K × N floats) for M/threads rows of work, so the copy's
 * share of its time grows as its rows shrink; with its own columns it packs only its N/threads
 * columns of B and reads the row-major A where it lies (a transposed A it packs whole: the same
 * copy, of the other operand). Its own rows keep C's rows, and A's, in the core that the next
 * kernel of a training step gives them to, which wins once the copy is a small share. */
#define COLUMNS_UP_TO_ROWS 128
/* Below this many rows a core, packing all of B once per core costs more than sharing the
 * panels (v6), when C is too narrow to give each core its own columns. */
#define ROWS_PER_THREAD (4 * MR)

static void product(const gemm_t *p, int threads) {
    if (p->M <= FEW_ROWS && gemm_few_rows(p, threads))
        return;
    if (threads == 1)
        gemm_v8_one_thread(p);
    else if (p->M <= COLUMNS_UP_TO_ROWS * threads && p->N >= 2 * NR * threads)  /* two slivers a core */
        own_columns(p, threads, gemm_v8_one_thread);
    else if (p->M >= ROWS_PER_THREAD * threads)
        own_rows(p, threads, gemm_v8_one_thread);
    else
        gemm_v6_in_place(p, threads);
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
