/* v4 packed: BLIS's five loops around a register-blocked micro-kernel, on one core.
 *
 * v3's inner loop loads and stores a row of C for every k. Here a tile of C, MR×NR, stays in
 * vector registers for a whole KC-deep pass (micro_kernel.h), so each k costs NV loads of B
 * and MR broadcasts of A for MR·NV fused multiply-adds. To feed it at that rate, a panel of B
 * and a block of A are first copied (pack.h) into slivers laid out in the order the micro-
 * kernel reads them, each sized for the cache it should stay in while it is reused
 * (blocking.h). */
#include "minillm_kernels.h"
#include "blocking.h"
#include "matmul.h"
#include "micro_kernel.h"
#include "pack.h"

/* The tiles of one block (BLIS's macro-kernel): column by column, so that a B sliver, which
 * every A sliver of the block meets in turn, stays in L1 (with AVX2's tile; AVX-512's is too
 * large for it, which v8 turns around). */
static __attribute__((noinline)) void v4_tiles(block_t blk) {
    for (int j = 0; j < blk.nc; j += NR)
        for (int i = 0; i < blk.mc; i += MR)
            block_tile(&blk, i, j, 0);
}

static void gemm_v4_packed(const gemm_t *p) {
    if (trivial_product(p))
        return;
    const blocks_t max = even_blocks(p, gemm_blocking.nc);
    float *packed_b = packing_space(panel_floats(max) + block_floats(max), 1);
    float *packed_a = packed_b + panel_floats(max);
    for (int jc = 0; jc < p->N; jc += max.nc) {  /* a panel of B: NC columns */
        const int nc = min_int(p->N - jc, max.nc);
        for (int pc = 0; pc < p->K; pc += max.kc) {  /* KC deep */
            const int kc = min_int(p->K - pc, max.kc);
            pack_b(p->B + pc * p->sbk + jc * p->sbn, p->sbk, p->sbn, kc, nc, packed_b, ALONE);
            for (int ic = 0; ic < p->M; ic += max.mc) {  /* a block of A: MC rows */
                const int mc = min_int(p->M - ic, max.mc);
                pack_a(p->A + ic * p->sam + pc * p->sak, p->sam, p->sak, mc, kc, packed_a, ALONE);
                const block_t block = {.packed_a = packed_a, .packed_b = packed_b, .c = p->C + ic * p->ldc + jc,
                                       .ldc = p->ldc, .mc = mc, .nc = nc, .kc = kc,
                                       .accumulate = p->accumulate || pc > 0,  /* the first k-block writes C */
                                       .bias = p->bias && pc == 0 ? p->bias + jc : NULL};
                v4_tiles(block);
            }
        }
    }
    release_packing_space(packed_b, 1);
}

/* v4 = packing + register-blocked micro-kernel, v5 = the same on every core, v6 = v5 reading a
 * nearby A where it lies, v7 = v6 on each core's own rows of C, v8 = v7 with the tiles row by
 * row so that an A sliver stays in L1; kernels/c/matmul/matmul.h lists them, one file each */
MINILLM_API
void matmul_v4_packed(const float *A, const float *B, float *C, int M, int N, int K) {
    const gemm_t p = row_major(A, B, C, M, N, K);
    gemm_v4_packed(&p);
}
