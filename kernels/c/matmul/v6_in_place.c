/* v6 A in place: v5, but a block of a row-major A is read where it lies when packing it would
 * not pay for its copy.
 *
 * Packing A is worth it when A's rows lie far apart: the packed block is contiguous, where the
 * rows of a wide matrix each lie on a page of their own. For the small products of a training
 * step (768×128·128×128) the rows are close, and the copy was a large part of the time (a
 * profile shows the packing loops beside the micro-kernel). So when A's rows are at most
 * A_IN_PLACE_STRIDE floats (2 KB) apart, the micro-kernel reads each full MR-row sliver straight
 * from A, MR streams along k; only a last partial sliver is packed (zero-padded rows).
 * Rows further apart are read in place too when C is at most A_IN_PLACE_WIDTH columns wide:
 * each value of A packed then feeds only N multiply-adds, so for a narrow C the copy is a large
 * share of the work.
 * A transposed A (the weight gradient gᵀx) is always packed: its MR values of one k lie side
 * by side, but each k is a row further on, and with a power-of-two row stride those lines
 * crowd into a few of L1's sets (see pack_contiguous), which packing in chunks avoids.
 * The rule is a_in_place_pays (micro_kernel.h), which v7 follows too. */
#include "minillm_kernels.h"
#include "blocking.h"
#include "matmul.h"
#include "micro_kernel.h"
#include "pack.h"
#include "share.h"

/* v5's tiles, with the full slivers of A read where they lie when `in_place`. */
static __attribute__((noinline)) void v6_tiles(block_t blk, int in_place, team_t team) {
    const int slivers_a = (blk.mc + MR - 1) / MR, slivers_b = (blk.nc + NR - 1) / NR;
    int first, last;
    share(team, slivers_a * slivers_b, &first, &last);
    for (int t = first; t < last; ++t)
        block_tile(&blk, t % slivers_a * MR, t / slivers_a * NR, in_place);
}

static void v6_member(const gemm_t *p, blocks_t max, int in_place, float *packed_a, float *packed_b, team_t team) {
    for (int jc = 0; jc < p->N; jc += max.nc) {  /* a panel of B: NC columns */
        const int nc = min_int(p->N - jc, max.nc);
        for (int pc = 0; pc < p->K; pc += max.kc) {  /* KC deep */
            const int kc = min_int(p->K - pc, max.kc);
            for (int ic = 0; ic < p->M; ic += max.mc) {  /* a block of A: MC rows */
                const int mc = min_int(p->M - ic, max.mc);
                const float *a = p->A + ic * p->sam + pc * p->sak;
                const int packed_from = in_place ? mc / MR * MR : 0;  /* in place: only a partial sliver */
                wait_for_team(team);  /* everyone has finished with the packed buffers */
                if (ic == 0)
                    pack_b(p->B + pc * p->sbk + jc * p->sbn, p->sbk, p->sbn, kc, nc, packed_b, team);
                if (packed_from < mc)
                    pack_a(a + packed_from * p->sam, p->sam, p->sak, mc - packed_from, kc,
                           packed_a + (long)packed_from * kc, team);
                wait_for_team(team);  /* both are complete */
                const block_t block = {.packed_a = packed_a, .packed_b = packed_b, .a = a, .sam = p->sam,
                                       .c = p->C + ic * p->ldc + jc, .ldc = p->ldc, .mc = mc, .nc = nc, .kc = kc,
                                       .accumulate = p->accumulate || pc > 0,
                                       .bias = p->bias && pc == 0 ? p->bias + jc : NULL};
                v6_tiles(block, in_place, team);
            }
        }
    }
}

/* Also what the backend runs for a product with too few rows to give every core its own
 * (sgemm.c), and, on one thread, for attention's tile products (sgemm_block). */
void gemm_v6_in_place(const gemm_t *p, int threads) {
    if (trivial_product(p))
        return;
    const blocks_t max = even_blocks(p, gemm_blocking.nc);
    const int in_place = a_in_place_pays(p);
    float *packed_b = packing_space(panel_floats(max) + block_floats(max), threads);
    float *packed_a = packed_b + panel_floats(max);
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        v6_member(p, max, in_place, packed_a, packed_b, this_member());
    } else
        v6_member(p, max, in_place, packed_a, packed_b, ALONE);
    release_packing_space(packed_b, threads);
}

MINILLM_API
void matmul_v6_in_place(const float *A, const float *B, float *C, int M, int N, int K) {
    const gemm_t p = row_major(A, B, C, M, N, K);
    gemm_v6_in_place(&p, all_threads());
}
