/* v8 A sliver in L1: v7 with the tiles taken row by row and B panels sized for L2.
 *
 * Up to v7 the tiles of a block go column by column: one B sliver (KC×NR) meets every A
 * sliver of the block, so the B sliver is the operand meant to stay in L1. With AVX-512's tile
 * it cannot: 512 × 32 × 4 B = 64 KB, more than an L1 of 32–48 KB, so both slivers stream from
 * L2 on every tile. BLIS's kernels for AVX-512 turn this around, and so does v8:
 *   - tiles row by row (ir outer, jr inner): one A sliver, MR × KC = 12 × 512 × 4 B = 24 KB,
 *     meets every B sliver of the panel and stays in L1;
 *   - so the B panel is what must stay in L2: NC_L2 columns, KC × NC_L2 × 4 B in half of the
 *     L2 (blocking.h: 512 KB of a 1 MB L2, 1 MB of a 2 MB one); each tile reads its B sliver
 *     from L2 once, 2 vectors per k-step of 24 FMAs;
 *   - a row-major A is always read where it lies: each sliver's MR rows are walked once per
 *     panel and then sit in L1, so the far-apart rows that made v6 pack a wide A cost MR
 *     pages per sliver here instead of one per row for every B sliver;
 *   - v7's clearing of C is dropped: row by row, consecutive tiles store along the same MR rows
 *     of C, line after line, a pattern the prefetchers follow.
 * Only a core's own product takes this order. A team sharing a panel (v5, v6) splits the B
 * slivers between the cores for packing; column by column each core's tiles use the slivers it
 * packed itself, where row by row every core would read the other's half from the other
 * core's cache. */
#include "minillm_kernels.h"
#include "blocking.h"
#include "matmul.h"
#include "micro_kernel.h"
#include "pack.h"
#include "share.h"

/* The tiles of one block row by row: an A sliver stays in L1 while every B sliver of the
 * panel passes it, each read from L2 once. */
static __attribute__((noinline)) void v8_tiles(block_t blk, int in_place) {
    for (int i = 0; i < blk.mc; i += MR)
        for (int j = 0; j < blk.nc; j += NR)
            block_tile(&blk, i, j, in_place);
}

/* One core's rows. Also what the backend runs for a product on one thread (sgemm.c). */
void gemm_v8_one_thread(const gemm_t *p) {
    if (trivial_product(p))
        return;
    const blocks_t max = even_blocks(p, gemm_blocking.nc_l2);
    const int in_place = p->sak == 1;
    float *packed_b = packing_space(panel_floats(max) + block_floats(max), 1);
    float *packed_a = packed_b + panel_floats(max);
    for (int jc = 0; jc < p->N; jc += max.nc) {  /* a panel of B: nc_l2 columns, in L2 */
        const int nc = min_int(p->N - jc, max.nc);
        for (int pc = 0; pc < p->K; pc += max.kc) {  /* KC deep */
            const int kc = min_int(p->K - pc, max.kc);
            pack_b(p->B + pc * p->sbk + jc * p->sbn, p->sbk, p->sbn, kc, nc, packed_b, ALONE);
            for (int ic = 0; ic < p->M; ic += max.mc) {  /* a block of A: MC rows */
                const int mc = min_int(p->M - ic, max.mc);
                const float *a = p->A + ic * p->sam + pc * p->sak;
                const int packed_from = in_place ? mc / MR * MR : 0;  /* in place: only a partial sliver */
                if (packed_from < mc)
                    pack_a(a + packed_from * p->sam, p->sam, p->sak, mc - packed_from, kc,
                           packed_a + (long)packed_from * kc, ALONE);
                const block_t block = {.packed_a = packed_a, .packed_b = packed_b, .a = a, .sam = p->sam,
                                       .c = p->C + ic * p->ldc + jc, .ldc = p->ldc, .mc = mc, .nc = nc, .kc = kc,
                                       .accumulate = p->accumulate || pc > 0,
                                       .bias = p->bias && pc == 0 ? p->bias + jc : NULL};
                v8_tiles(block, in_place);
            }
        }
    }
    release_packing_space(packed_b, 1);
}

MINILLM_API
void matmul_v8_sliver_in_l1(const float *A, const float *B, float *C, int M, int N, int K) {
    const gemm_t p = row_major(A, B, C, M, N, K);
    own_rows(&p, all_threads(), gemm_v8_one_thread);
}
