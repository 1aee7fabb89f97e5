/* v7 own rows: each core takes its own rows of C (a whole number of MR slivers) and computes
 * them alone with v6's loops.
 *
 * v6 shares every block out: all cores pack the panels together, wait at a barrier, share the
 * tiles, wait again, and a core reads the slivers the other packed from the other core's
 * cache. Here nothing is shared and nobody waits. The price is that each core packs the B
 * panels it needs itself, so B is packed once per core: K·N copies per core, against
 * (M / cores)·K·N multiply-adds, small once a core has a few slivers of rows (the backend
 * gives a product its own rows only from ROWS_PER_THREAD rows a core on, sgemm.c).
 *
 * C is cleared first, block by block. Each core zeroes a block of its rows of C (memset,
 * whole lines in order) just before that block's tiles. The tiles then store into lines
 * already in the core's cache, instead of reading every line of fresh memory they write (a
 * store to a line not in the cache reads it first, and a tile's stores, MR short rows of NR
 * floats, are a pattern the prefetchers do not follow). Clearing all of a core's rows at
 * once is too early when its share of C is larger than L2: the first lines are evicted again
 * before their tiles come. */
#include <string.h>
#include "minillm_kernels.h"
#include "blocking.h"
#include "matmul.h"
#include "micro_kernel.h"
#include "pack.h"
#include "share.h"

/* C[0:mc, 0:nc] = 0, row stride ldc */
static void clear_block(float *C, long ldc, int mc, int nc) {
    if (nc == ldc)
        memset(C, 0, sizeof(float) * (size_t)mc * nc);
    else
        for (int i = 0; i < mc; ++i) memset(C + i * ldc, 0, sizeof(float) * nc);
}

/* v6's tiles for a team of one: column by column, full slivers of A in place when `in_place`. */
static __attribute__((noinline)) void v7_tiles(block_t blk, int in_place) {
    for (int j = 0; j < blk.nc; j += NR)
        for (int i = 0; i < blk.mc; i += MR)
            block_tile(&blk, i, j, in_place);
}

/* One core's rows: v6's loops for a team of one, and the clearing of C. */
static void v7_one_thread(const gemm_t *p) {
    if (trivial_product(p))
        return;
    const blocks_t max = even_blocks(p, gemm_blocking.nc);
    const int in_place = a_in_place_pays(p);
    float *packed_b = packing_space(panel_floats(max) + block_floats(max), 1);
    float *packed_a = packed_b + panel_floats(max);
    for (int jc = 0; jc < p->N; jc += max.nc) {  /* a panel of B: NC columns */
        const int nc = min_int(p->N - jc, max.nc);
        for (int pc = 0; pc < p->K; pc += max.kc) {  /* KC deep */
            const int kc = min_int(p->K - pc, max.kc);
            pack_b(p->B + pc * p->sbk + jc * p->sbn, p->sbk, p->sbn, kc, nc, packed_b, ALONE);
            for (int ic = 0; ic < p->M; ic += max.mc) {  /* a block of A: MC rows */
                const int mc = min_int(p->M - ic, max.mc);
                const float *a = p->A + ic * p->sam + pc * p->sak;
                const int packed_from = in_place ? mc / MR * MR : 0;
                if (packed_from < mc)
                    pack_a(a + packed_from * p->sam, p->sam, p->sak, mc - packed_from, kc,
                           packed_a + (long)packed_from * kc, ALONE);
                float *c = p->C + ic * p->ldc + jc;
                if (!p->accumulate && pc == 0)
                    clear_block(c, p->ldc, mc, nc);
                const block_t block = {.packed_a = packed_a, .packed_b = packed_b, .a = a, .sam = p->sam, .c = c,
                                       .ldc = p->ldc, .mc = mc, .nc = nc, .kc = kc,
                                       .accumulate = p->accumulate || pc > 0,
                                       .bias = p->bias && pc == 0 ? p->bias + jc : NULL};
                v7_tiles(block, in_place);
            }
        }
    }
    release_packing_space(packed_b, 1);
}

MINILLM_API
void matmul_v7_own_rows(const float *A, const float *B, float *C, int M, int N, int K) {
    const gemm_t p = row_major(A, B, C, M, N, K);
    own_rows(&p, all_threads(), v7_one_thread);
}
