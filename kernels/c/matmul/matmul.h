/* Matrix multiplication the way BLIS builds it, in eight complete versions, one file each.
 * Every version computes C (M×N) = A (M×K) · B (K×N) on its own and can be read top to bottom;
 * each adds one idea to the one before:
 *
 *  v1_naive.c         i-j-k: the inner loop walks down a column of B, one cache line per
 *                     element, so it is memory-bound long before the arithmetic units are busy
 *  v2_reordered.c     i-k-j: the inner loop runs along rows of B and C, contiguous, so it
 *                     streams and the compiler vectorises it (SIMD)
 *  v3_blocked.c       v2 on blocks sized for the caches: a block of B is reused from L2 by many
 *                     rows instead of refetched from memory
 *  v4_packed.c        BLIS's five loops: a panel of B and a block of A are copied (packed) into
 *                     the order the micro-kernel reads them, and the micro-kernel keeps an MR×NR
 *                     tile of C in vector registers for a whole KC-deep pass
 *  v5_threaded.c      v4 with the packing and the tiles shared out among the cores (OpenMP)
 *  v6_in_place.c      v5, but a block of A whose rows lie close together is read where it lies
 *                     instead of packed (the copy is a large part of a small product)
 *  v7_own_rows.c      each core takes its own rows of C and runs v6 on them alone: no barrier,
 *                     no panel packed by one core and read from another core's cache; C is
 *                     cleared block by block just before its tiles store into it
 *  v8_sliver_in_l1.c  v7 with the tiles taken row by row, so the MR rows of A a tile reads stay
 *                     in L1 while every B sliver passes, and B panels narrow enough for L2
 *
 * The pieces v4–v8 share, each in its own file:
 *  blocking.h      the register tile and the block sizes, and the cache each block is meant for
 *  pack.h          packing a panel of B and a block of A (the only code that sees strides)
 *  micro_kernel.h  the MR×NR register tile, and block_tile: one tile of a block, its A sliver
 *                  packed or read in place, clipped at the edges of C
 *  share.h         a team of threads, the share of a loop each member takes, own rows of C
 *  scratch.c       each thread's buffer for its packed panels
 *
 * What the backend runs (sgemm.c): v8 on each core's own rows of C for a product with many
 * rows, v8 on each core's own columns for one with few rows a core, v6 for one with few rows
 * and few columns (the cores share its panels), a matrix-vector loop for one to four rows
 * (few_rows.c: generating a token). Packing makes transposed or strided operands free, so the
 * production path takes any strides. */
#ifndef MINILLM_MATMUL_H
#define MINILLM_MATMUL_H
#include <stddef.h>

/* One product: C = A·B (+ bias on every row, when bias is not NULL), or C += A·B when
 * `accumulate`. Each operand's layout is its strides, so a transpose is only other strides:
 * element (m, k) of A is A[m*sam + k*sak], element (k, n) of B is B[k*sbk + n*sbn], element
 * (m, n) of C is C[m*ldc + n]. */
typedef struct {
    const float *A, *B, *bias;
    float *C;
    int M, N, K;
    long sam, sak, sbk, sbn, ldc;
    int accumulate;
} gemm_t;

/* The numbered versions' operands: contiguous, row-major, no bias. */
static inline gemm_t row_major(const float *A, const float *B, float *C, int M, int N, int K) {
    return (gemm_t){.A = A, .B = B, .C = C, .M = M, .N = N, .K = K, .sam = K, .sak = 1, .sbk = N, .sbn = 1,
                    .ldc = N};
}

/* Rows first … last − 1 of the product: the same B, bias and strides. */
static inline gemm_t rows_of(gemm_t p, int first, int last) {
    p.A += first * p.sam;
    p.C += first * p.ldc;
    p.M = last - first;
    return p;
}

static inline int min_int(int a, int b) { return a < b ? a : b; }
static inline int round_up(int n, int multiple) { return (n + multiple - 1) / multiple * multiple; }

/* A product with no rows, no columns or no depth, done here (with K = 0, C is the bias, or is
 * left as it is when accumulating): the blocked loops need at least one block of each. */
static inline int trivial_product(const gemm_t *p) {
    if (p->M > 0 && p->N > 0 && p->K > 0)
        return 0;
    for (int i = 0; i < p->M; ++i)
        for (int j = 0; j < p->N; ++j) {
            float *c = p->C + i * p->ldc + j;
            *c = (p->accumulate ? *c : 0.0f) + (p->bias ? p->bias[j] : 0.0f);
        }
    return 1;
}

/* Room for the packed panels (scratch.c): the calling thread's own buffer, kept between calls,
 * when it works alone; a fresh buffer, freed by release_packing_space, for a team. */
float *packing_space(size_t floats, int threads);
void release_packing_space(float *space, int threads);

/* The versions the production path (sgemm.c) is made of. */
void gemm_v6_in_place(const gemm_t *p, int threads);
void gemm_v8_one_thread(const gemm_t *p);
int gemm_few_rows(const gemm_t *p, int threads);

#endif
