/* The sizes the packed versions (v4–v8) are built from: the register tile, fixed when the
 * library is compiled, and the blocks of A and B that are each meant to stay in one level of
 * the cache while they are reused, derived from the caches the machine reports (blocking.c).
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
 * cache that fits it. The rules (blocking_for_caches), and what they give on a Zen 4/5 EPYC
 * (L1d 48 KB, L2 1 MB, L3 32 MB) with AVX-512:
 *
 *   L1 sliver  KC deep, half of L1      12 × 512 × 4 B =  24 KB  (AVX-512: A's, MR rows, v8)
 *                                                                (AVX2: B's, NR columns, v4–v7)
 *   A block    MC × KC, half of L2     252 × 512 × 4 B = 504 KB
 *   B panel    KC × NC_L2, half of L2  512 × 256 × 4 B = 512 KB  (v8: the panel its tiles reuse)
 *   B panel    KC × NC, quarter of L3  512 × 4096 × 4 B =  8 MB  (v4–v7: shared by the cores)
 *
 * Half, not all, of a cache: the other operands pass through it too (the streaming sliver, the
 * lines of C), and a block as large as the whole cache evicts itself. With AVX-512's tile the B
 * sliver (KC × 32 floats, 64 KB at KC = 512) does not fit an L1 of 32–48 KB and streams from
 * L2 (2 vector loads per 24 FMAs, well within L2's bandwidth); v8 turns the order around so
 * that the A sliver is the one that stays in L1, and the B panel the one in L2. A deep KC pays:
 * every k-block after the first reads and writes all of C again. */
#ifndef MINILLM_MATMUL_BLOCKING_H
#define MINILLM_MATMUL_BLOCKING_H
#include "minillm_kernels.h"
#include "matmul.h"

#if defined(__AVX512F__)
#define VW 16     /* floats per vector register */
#define MR 12
#else
#define VW 8
#define MR 6
#endif
#define NV 2
#define NR (VW * NV)

/* The caches (bytes) the blocks were chosen for, the register tile and the blocks. */
MINILLM_API typedef struct {
    long l1, l2, l3;
    int mr, nr;
    int kc, mc, nc, nc_l2;
} gemm_blocking_t;

/* The blocks every product uses: blocking_for_caches of the caches read when the library is
 * loaded, unless a test or benchmark has forced others (blocking.c). */
extern gemm_blocking_t gemm_blocking;

/* The largest block each loop takes, chosen evenly: M = 128 is two blocks of 66 rows, not
 * 120 + 8. Rows and columns are whole slivers. */
typedef struct { int kc, mc, nc; } blocks_t;

static inline blocks_t even_blocks(const gemm_t *p, int panel_width) {
    const int kc = gemm_blocking.kc, mc = gemm_blocking.mc;
    const int k_blocks = (p->K + kc - 1) / kc, m_blocks = (p->M + mc - 1) / mc;
    const int n_blocks = (p->N + panel_width - 1) / panel_width;
    return (blocks_t){.kc = (p->K + k_blocks - 1) / k_blocks,
                      .mc = round_up((p->M + m_blocks - 1) / m_blocks, MR),
                      .nc = round_up((p->N + n_blocks - 1) / n_blocks, NR)};
}

/* Floats of a packed B panel, and of a packed A block (which follows it in the same buffer). */
static inline size_t panel_floats(blocks_t max) { return (size_t)max.kc * max.nc; }
static inline size_t block_floats(blocks_t max) { return (size_t)max.kc * max.mc; }

#endif
