/* v5 threaded: v4 on every core. The team packs each panel of B and block of A together, each
 * member a share of the slivers, waits until both are complete, and then shares out the tiles.
 * The tiles go column by column (one B sliver meets every A sliver), and each member takes a
 * contiguous range of them, so the B slivers a member's tiles read are mostly the ones it
 * packed itself, still in its own cache. */
#include "minillm_kernels.h"
#include "blocking.h"
#include "matmul.h"
#include "micro_kernel.h"
#include "pack.h"
#include "share.h"

/* The tiles of one block, column by column, this member's contiguous share of them. */
static __attribute__((noinline)) void v5_tiles(block_t blk, team_t team) {
    const int slivers_a = (blk.mc + MR - 1) / MR, slivers_b = (blk.nc + NR - 1) / NR;
    int first, last;
    share(team, slivers_a * slivers_b, &first, &last);
    for (int t = first; t < last; ++t)
        block_tile(&blk, t % slivers_a * MR, t / slivers_a * NR, 0);
}

/* One member's part of every loop. */
static void v5_member(const gemm_t *p, blocks_t max, float *packed_a, float *packed_b, team_t team) {
    for (int jc = 0; jc < p->N; jc += max.nc) {  /* a panel of B: NC columns */
        const int nc = min_int(p->N - jc, max.nc);
        for (int pc = 0; pc < p->K; pc += max.kc) {  /* KC deep */
            const int kc = min_int(p->K - pc, max.kc);
            for (int ic = 0; ic < p->M; ic += max.mc) {  /* a block of A: MC rows */
                const int mc = min_int(p->M - ic, max.mc);
                wait_for_team(team);  /* everyone has finished with the packed buffers */
                if (ic == 0)
                    pack_b(p->B + pc * p->sbk + jc * p->sbn, p->sbk, p->sbn, kc, nc, packed_b, team);
                pack_a(p->A + ic * p->sam + pc * p->sak, p->sam, p->sak, mc, kc, packed_a, team);
                wait_for_team(team);  /* both are complete */
                const block_t block = {.packed_a = packed_a, .packed_b = packed_b, .c = p->C + ic * p->ldc + jc,
                                       .ldc = p->ldc, .mc = mc, .nc = nc, .kc = kc,
                                       .accumulate = p->accumulate || pc > 0,
                                       .bias = p->bias && pc == 0 ? p->bias + jc : NULL};
                v5_tiles(block, team);
            }
        }
    }
}

static void gemm_v5_threaded(const gemm_t *p, int threads) {
    if (trivial_product(p))
        return;
    const blocks_t max = even_blocks(p, gemm_blocking.nc);
    float *packed_b = packing_space(panel_floats(max) + block_floats(max), threads);
    float *packed_a = packed_b + panel_floats(max);
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        v5_member(p, max, packed_a, packed_b, this_member());
    } else
        v5_member(p, max, packed_a, packed_b, ALONE);
    release_packing_space(packed_b, threads);
}

MINILLM_API
void matmul_v5_threaded(const float *A, const float *B, float *C, int M, int N, int K) {
    const gemm_t p = row_major(A, B, C, M, N, K);
    gemm_v5_threaded(&p, all_threads());
}
