/* The micro-kernel: one MR×NR tile of C computed in vector registers (v4 onwards), and the
 * tiles of a block it is run over: packed or in-place slivers of A, and the edges of C. */
#ifndef MINILLM_MATMUL_MICRO_KERNEL_H
#define MINILLM_MATMUL_MICRO_KERNEL_H
#include <string.h>
#include "blocking.h"
#include "matmul.h"

typedef float vec __attribute__((vector_size(VW * sizeof(float))));

/* C[0:rows, 0:cols] (+)= Σ_k a[k] ⊗ b[k] (+ bias[0:cols] on every row, when bias is not NULL),
 * over a sliver of A (element (i, k) at a[i*a_row + k*a_step]: packed, a_row = 1 and
 * a_step = MR) and a packed sliver of B, `nv` vectors wide. The bias rides on the store the
 * tile makes anyway instead of costing a separate pass over C. A full tile is read and written
 * in place (vector loads and stores, row stride ldc); an edge tile goes through a small buffer
 * so that nothing outside C is touched. Always inlined, so each call site gets the code for
 * its own strides (constants for the packed sliver). */
static inline __attribute__((always_inline)) void
micro_kernel(int kc, const float *restrict a, long a_row, long a_step, const float *restrict b, float *restrict C,
             long ldc, int rows, int cols, int accumulate, const float *restrict bias, const int nv) {
    vec acc[MR][NV];
    /* A tile that adds to what C holds reads its MR rows of C after the loop; when C is larger
     * than the caches those reads go to memory. Asked for now, they arrive while the kc steps
     * run (BLIS prefetches C the same way). */
    if (accumulate)
        for (int i = 0; i < rows; ++i) {
            __builtin_prefetch(C + i * ldc, 1);
            __builtin_prefetch(C + i * ldc + NR - 1, 1);  /* the row's NR floats may span two lines (AVX2) */
        }
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = (vec){0};
    for (int k = 0; k < kc; ++k) {
        vec bv[NV];
        for (int v = 0; v < nv; ++v) memcpy(&bv[v], b + VW * v, sizeof bv[v]);
        for (int i = 0; i < MR; ++i)  /* scalar × vector: one broadcast, nv FMAs */
            for (int v = 0; v < nv; ++v) acc[i][v] += a[i * a_row] * bv[v];
        a += a_step;
        b += NR;
    }
    /* The accumulators must stay in registers after the loop too: a loop over them of variable
     * length (v < nv, or over cols) or taking one's address (memcpy from &acc[i][v]) made GCC
     * store all of them to the stack when the k-loop ended and load them back, two extra memory
     * operations per accumulator and tile. So the bias is added over all NV vectors, from a
     * zero-padded copy at an edge, and the stores below go through `c` or the tile buffer. */
    if (bias) {
        float edge[NR] = {0};
        const float *row = bias;
        if (cols < NR) {
            memcpy(edge, bias, sizeof(float) * cols);
            row = edge;
        }
        for (int v = 0; v < NV; ++v) {
            vec bv;
            memcpy(&bv, row + VW * v, sizeof bv);
            for (int i = 0; i < MR; ++i) acc[i][v] += bv;
        }
    }
    if (rows == MR && cols == NR) {
        for (int i = 0; i < MR; ++i)
            for (int v = 0; v < NV; ++v) {
                vec c = acc[i][v];
                if (accumulate) {
                    vec old;
                    memcpy(&old, C + i * ldc + VW * v, sizeof old);
                    c += old;
                }
                memcpy(C + i * ldc + VW * v, &c, sizeof c);
            }
        return;
    }
    float tile[MR * NR] __attribute__((aligned(64)));
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) *(vec *)(tile + i * NR + VW * v) = acc[i][v];
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j) C[i * ldc + j] = (accumulate ? C[i * ldc + j] : 0.0f) + tile[i * NR + j];
}

/* v6 and v7 read a row-major A in place when its rows lie close together or C is narrow
 * (v6_in_place.c says why); v8 reads any row-major A in place. */
#define A_IN_PLACE_STRIDE 512
#define A_IN_PLACE_WIDTH 256

static inline int a_in_place_pays(const gemm_t *p) {
    return p->sak == 1 && (p->sam <= A_IN_PLACE_STRIDE || p->N <= A_IN_PLACE_WIDTH);
}

/* One block of C and what its tiles read. Each version runs the micro-kernel over it in its own
 * vN_tiles function (BLIS's macro-kernel), kept out of line and given the block by value:
 * inlined into the loops around it, or reading the block through a pointer, GCC ran short of
 * integer registers for the in-place kernel's MR row addresses and reloaded one from the stack
 * on every k. */
typedef struct {
    const float *packed_a;  /* the A block in MR-row slivers, MR × kc each */
    const float *packed_b;  /* the B panel in NR-column slivers, kc × NR each */
    const float *a;         /* the A block where it lies (row stride sam), for slivers read in place */
    long sam;
    float *c;               /* C[0:mc, 0:nc], row stride ldc */
    long ldc;
    int mc, nc, kc;
    int accumulate;         /* add to C: every k-block after the first, or when the caller asks */
    const float *bias;      /* bias[0:nc], added on every row, or NULL */
} block_t;

/* Tile (i, j) of a block, clipped at its edges. A full sliver of A is read where it lies when
 * `in_place` (v6 onwards), from the packed block otherwise. An edge sliver of B at most one
 * vector wide takes a tile of one vector: half the FMAs, where the whole padded tile would make
 * a narrow output (a vocabulary of 66 words: two slivers and 2 columns) a third padding. */
static inline __attribute__((always_inline)) void block_tile(const block_t *blk, int i, int j, int in_place) {
    const int rows = min_int(blk->mc - i, MR), cols = min_int(blk->nc - j, NR);
    const float *b = blk->packed_b + (long)j * blk->kc, *bias = blk->bias ? blk->bias + j : NULL;
    float *c = blk->c + i * blk->ldc + j;
    if (in_place && rows == MR) {  /* MR streams along k, row stride sam */
        const float *a = blk->a + i * blk->sam;
        if (cols <= VW)
            micro_kernel(blk->kc, a, blk->sam, 1, b, c, blk->ldc, MR, cols, blk->accumulate, bias, 1);
        else
            micro_kernel(blk->kc, a, blk->sam, 1, b, c, blk->ldc, MR, cols, blk->accumulate, bias, NV);
    } else {
        const float *a = blk->packed_a + (long)i * blk->kc;
        if (cols <= VW)
            micro_kernel(blk->kc, a, 1, MR, b, c, blk->ldc, rows, cols, blk->accumulate, bias, 1);
        else
            micro_kernel(blk->kc, a, 1, MR, b, c, blk->ldc, rows, cols, blk->accumulate, bias, NV);
    }
}

#endif
