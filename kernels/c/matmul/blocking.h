/* The sizes the packed versions (v4–v8) are built from: the register tile, and the blocks of
 * A and B that are each meant to stay in one level of the cache while they are reused.
 *
 * The register tile is MR rows × NV vectors of C. Per k the micro-kernel loads NV vectors of
 * B, broadcasts MR values of A and issues MR·NV fused multiply-adds into accumulators that
 * never leave the registers. It is sized to the register file:
 *
 *   AVX-512 (32 zmm): 12 rows × 2 vectors of 16 = 24 accumulators + 2 B vectors + 1 broadcast
 *   AVX2    (16 ymm):  6 rows × 2 vectors of  8 = 12 accumulators + 2 B vectors + 1 broadcast
 *
 * A tile wider than the register file is not more work per load: the compiler spills the
 * accumulators to the stack on every k, and the kernel runs at memory speed.
 *
 * The loops, outer to inner (Goto & van de Geijn; BLIS's analytical model): jc over NC columns,
 * pc over KC, ic over MC rows, then the slivers jr (NR columns) and ir (MR rows), then the
 * micro-kernel over KC. Each piece is reused by the loop inside it, so it should stay in the
 * cache that fits it:
 *
 *                          AVX-512                     AVX2            meant for
 *   A sliver  MR × KC      12 × 512 × 4 B =  24 KB     6 × 256 × 4 B =  6 KB   L1 (v8)
 *   B sliver  KC × NR     512 ×  32 × 4 B =  64 KB   256 ×  16 × 4 B = 16 KB   L1 (v4–v7)
 *   A block   MC × KC     240 × 512 × 4 B = 480 KB   120 × 256 × 4 B = 120 KB  L2
 *   B panel   KC × NC     512 × 4096 × 4 B =  8 MB   256 × 4096 × 4 B = 4 MB   L3, shared
 *   B panel   KC × NC_L2  512 × 512 × 4 B =   1 MB   256 × 256 × 4 B = 256 KB  L2 (v8)
 *
 * With AVX-512's tile the B sliver does not fit an L1 of 32–48 KB and streams from L2 (2 vector
 * loads per 24 FMAs, well within L2's bandwidth); v8 turns the order around so that the A
 * sliver is the one that stays in L1, and narrows the B panel to half of a 2 MB L2.
 * Why KC is 512 with AVX-512: every k-block after the first reads and writes all of C again,
 * so a deeper block means fewer passes over a C larger than the caches, and the deeper A block
 * still fits the L2. AVX2 keeps 256, the depth it was tuned at on a Zen 3 (32 KB L1, 512 KB
 * L2), where its B sliver is then half of L1. */
#ifndef MINILLM_MATMUL_BLOCKING_H
#define MINILLM_MATMUL_BLOCKING_H
#include "matmul.h"

#if defined(__AVX512F__)
#define VW 16     /* floats per vector register */
#define MR 12
#define KC 512
#else
#define VW 8
#define MR 6
#define KC 256
#endif
#define NV 2
#define NR (VW * NV)
#define MC (20 * MR)
#define NC 4096
#if defined(__AVX512F__)
#define NC_L2 512  /* v8: a KC×NC_L2 panel of B, 1 MB, half of a 2 MB L2 */
#else
#define NC_L2 256  /* v8: 256 KB, half of Zen 3's 512 KB L2 */
#endif

/* The largest block each loop takes, chosen evenly: M = 128 is two blocks of 66 rows, not
 * 120 + 8. Rows and columns are whole slivers. */
typedef struct { int kc, mc, nc; } blocks_t;

static inline blocks_t even_blocks(const gemm_t *p, int panel_width) {
    const int k_blocks = (p->K + KC - 1) / KC, m_blocks = (p->M + MC - 1) / MC;
    const int n_blocks = (p->N + panel_width - 1) / panel_width;
    return (blocks_t){.kc = (p->K + k_blocks - 1) / k_blocks,
                      .mc = round_up((p->M + m_blocks - 1) / m_blocks, MR),
                      .nc = round_up((p->N + n_blocks - 1) / n_blocks, NR)};
}

/* Floats of a packed B panel, and of a packed A block (which follows it in the same buffer). */
static inline size_t panel_floats(blocks_t max) { return (size_t)max.kc * max.nc; }
static inline size_t block_floats(blocks_t max) { return (size_t)max.kc * max.mc; }

#endif
