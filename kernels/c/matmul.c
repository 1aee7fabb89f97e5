/* Matrix multiplication the way BLIS builds it, in six steps.
 *
 *  v1 naive        i-j-k: the inner loop walks down a column of B, one cache line per
 *                  element — memory-bound long before the arithmetic units are busy
 *  v2 reordered    i-k-j: the inner loop now runs along rows of B and C, contiguous,
 *                  so it streams and the compiler vectorises it (SIMD)
 *  v3 blocked      v2 on blocks sized for the caches, so a block of B is reused from
 *                  L2 by many rows instead of refetched from memory
 *  v4 packed       BLIS: copy (pack) a KC×NC panel of B and an MC×KC block of A into
 *                  contiguous slivers in exactly the order the micro-kernel reads them,
 *                  then a register-blocked micro-kernel computes an MR×NR tile of C held
 *                  entirely in vector registers: per k, one row of B (NR floats) and MR
 *                  broadcasts of A feed MR·NR/VW fused multiply-adds
 *  v5 threaded     v4 with the packing and the tiles shared out among the cores (OpenMP)
 *  v6 A in place   v5, but a block of A whose rows lie close together is read where it
 *                  lies instead of packed: the small products of a GPT step
 *                  (768×128·128×128) spent 13–20 % of their time copying A
 *  v7 own rows     each core takes its own rows of C and runs v6 on them alone: no
 *                  barrier, no panel that one core packs and the other reads
 *  v8 A sliver     the tiles taken row by row, so that the MR rows of A a tile reads stay
 *     in L1        in L1 while every B sliver passes, and B panels narrow enough for L2
 *
 * Packing also makes transposed or strided operands free: only the packing routines
 * see the strides. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "minillm_kernels.h"
#include "team.h"
#include "sgemm_block.h"

void matmul_v1_naive(const float *A, const float *B, float *C, int M, int N, int K) {
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k) acc += A[(long)i * K + k] * B[(long)k * N + j];
            C[(long)i * N + j] = acc;
        }
}

void matmul_v2_reordered(const float *A, const float *B, float *C, int M, int N, int K) {
    memset(C, 0, sizeof(float) * (size_t)M * N);
    for (int i = 0; i < M; ++i)
        for (int k = 0; k < K; ++k) {
            const float a = A[(long)i * K + k];
            const float *b = B + (long)k * N;
            float *c = C + (long)i * N;
            for (int j = 0; j < N; ++j) c[j] += a * b[j];
        }
}

#define V3_MC 64
#define V3_KC 256
#define V3_NC 1024

void matmul_v3_blocked(const float *A, const float *B, float *C, int M, int N, int K) {
    memset(C, 0, sizeof(float) * (size_t)M * N);
    for (int j0 = 0; j0 < N; j0 += V3_NC)
        for (int k0 = 0; k0 < K; k0 += V3_KC)
            for (int i0 = 0; i0 < M; i0 += V3_MC) {
                const int j1 = j0 + V3_NC < N ? j0 + V3_NC : N;
                const int k1 = k0 + V3_KC < K ? k0 + V3_KC : K;
                const int i1 = i0 + V3_MC < M ? i0 + V3_MC : M;
                for (int i = i0; i < i1; ++i)
                    for (int k = k0; k < k1; ++k) {
                        const float a = A[(long)i * K + k];
                        const float *b = B + (long)k * N;
                        float *c = C + (long)i * N;
                        for (int j = j0; j < j1; ++j) c[j] += a * b[j];
                    }
            }
}

/* ---- v4/v5: packing + micro-kernel ------------------------------------------------------------
 *
 * The register tile is MR rows × NV vectors of C. Per k the micro-kernel loads NV vectors of
 * the packed B row, broadcasts MR values of A, and issues MR·NV fused multiply-adds into
 * accumulators that never leave the registers. It is sized to the register file:
 *
 *   AVX-512 (32 zmm): 12 rows × 2 vectors of 16 = 24 accumulators + 2 B vectors + 1 broadcast
 *   AVX2    (16 ymm):  6 rows × 2 vectors of  8 = 12 accumulators + 2 B vectors + 1 broadcast
 *
 * (A tile wider than the register file is not "more work per load": the compiler spills the
 * accumulators to the stack on every k, and the kernel runs at memory speed. The first 6×64
 * AVX-512 tile did exactly that on an AVX2 machine: 5 GFLOP/s.)
 *
 * Cache arithmetic (Goto & van de Geijn; BLIS's analytical model). Loops, outer to inner:
 * jc over NC columns (B panel KC×NC in L3), pc over KC, ic over MC rows (A block MC×KC in L2),
 * jr over NR slivers of B, ir over MR slivers of A, then the micro-kernel over KC.
 *   - the B sliver KC×NR is reused by every ir, so it should stay in L1 (32 KB on Zen 3/4,
 *     48 KB on Sapphire Rapids): AVX2 256×16×4 B = 16 KB; AVX-512 512×32×4 B = 64 KB, which
 *     does not, and streams from L2 instead (2 vector loads per 24 FMAs, 11 B a cycle against
 *     L2's 64); v8 below turns the order around for AVX-512's tile
 *   - the A block MC×KC is reused by every jr, so it stays in L2 (512 KB Zen 3, 1 MB Zen 4,
 *     2 MB Sapphire Rapids): AVX2 120×256×4 B = 120 KB, AVX-512 240×512×4 B = 480 KB
 *   - the B panel KC×NC (4 MB on AVX2, 8 MB on AVX-512) stays in the shared L3.
 * Why KC = 512 on AVX-512: every k-block after the first reads and writes all of C again, and
 * at 4096³ C is 64 MB: 16 passes over it with KC = 256. On the 2-core Xeon (2 MB L2), GFLOP/s,
 * KC 256 → 512, A/B in one run: 4096³ 337–348 → 367–376, 1024³ 378–385 → 395–398,
 * 4096×384·(1536) 367–389 → 407–418, 4096×1536·(384) 375–387 → 397–405; the large GPT's step
 * 1039–1062 → 976–1047 ms, the recipe's and base's unchanged. AVX2 keeps 256 (tuned on a
 * Zen 3 with 32 KB L1 and 512 KB L2, where a 512-deep A block would not fit).
 * All threads pack the panels together and then share out the (jr, ir) tiles. (Giving each
 * thread its own rows of C instead lost on the AMD EPYC, a training step's backward products
 * 16.0 → 18.4 ms, and won on the Xeon: v7 below.) Edge tiles are computed whole on
 * zero-padded panels and only their valid part is written back; an edge sliver of at most one
 * vector of columns takes a tile of one vector (half the FMAs). A 66-word output layer,
 * 768×128·(66), is two full slivers and 2 columns: with whole tiles a third of the work was
 * padding. 2 threads, GFLOP/s, two runs: 197 / 197 → 212 / 214 (OpenBLAS 208–222); ·(65)
 * 194 / 199 → 205 / 215, ·(80) 250 / 252 → 262 / 270.
 *
 * v6: packing A is worth its copy when A's rows are far apart (a block of a 4096-wide matrix
 * spans 120 pages, its packed copy 30), but for the small products of a training step it is
 * 13–20 % of the time (perf: sgemm_block's packing loops beside the micro-kernel). When A's
 * row stride is at most A_IN_PLACE_STRIDE floats (2 KB), the micro-kernel reads a full sliver
 * straight from A, MR streams along k; only a last partial sliver is packed (zero rows).
 * Measured in one C harness, 2 threads, GFLOP/s, packed → in place: 768×128·128×128 156 → 179,
 * 768×128·128×66 115 → 140. A transposed A (the weight gradient gᵀx: MR neighbours per k, each
 * k a row of g further on) was read in place too at first, but a power-of-two row stride
 * keeps those lines in a few of L1's sets (see pack_contiguous); packed in chunks it is faster.
 * Rows further apart are read in place too when C is at most A_IN_PLACE_WIDTH columns wide:
 * packing a row-major A gathers from MR rows at about a cycle a value, and each value then
 * feeds 2N flops, N/16 cycles of one core's two FMA pipes, so at N ≤ 256 the copy is over 6 %
 * of the work. 2 threads, packed → in place: 2048×256·(1024) 166 → 175 GFLOP/s (the base GPT's
 * MLP), with B transposed 164 → 172; wider, in place lost a little (2048×1024·(1024) 177 → 173). */
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
#define A_IN_PLACE_STRIDE 512
#define A_IN_PLACE_WIDTH 256
#if defined(__AVX512F__)
#define NC_L2 512  /* v8: a KC×NC_L2 panel of B, 1 MB, half the Xeon's L2 */
#else
#define NC_L2 256  /* v8: 256 KB, half of Zen 3's L2 */
#endif

/* What each numbered version adds to the loops below, as flags (the final kernel has them all). */
enum {
    A_IN_PLACE = 1,      /* v6: a row-major A whose rows lie close together is read where it lies */
    CLEAR_C = 2,         /* v7: one thread clears each block of its C just before the block's tiles */
    A_SLIVER_IN_L1 = 4,  /* v8: tiles row by row, B panels of NC_L2 columns, any row-major A in place */
};

typedef float vec __attribute__((vector_size(VW * sizeof(float))));

/* Who shares the work: thread `id` of `size`. The loops below take their share by hand
 * (a contiguous range each, as schedule(static) would) instead of through `omp for`, so the
 * same code runs serially, with no OpenMP region at all, when a kernel that is already
 * parallel (attention, one head per thread) calls it for its small tile products: a nested
 * region of one thread cost about a microsecond per call, as much as a 64×64×32 product. */
typedef struct { int id, size; } team_t;

static inline void share(team_t team, int count, int *begin, int *end) {
    const int per = (count + team.size - 1) / team.size;
    *begin = team.id * per < count ? team.id * per : count;
    *end = *begin + per < count ? *begin + per : count;
}

/* Everyone has finished the step before (a packed buffer is complete, or free to refill). */
static inline void wait_for_team(team_t team) {
    if (team.size > 1) {
#pragma omp barrier
    }
}

/* Full slivers first..last−1 of `width` values whose values for one k lie side by side (B with
 * contiguous rows, or a transposed A: the weight gradient gᵀx), each k one short copy.
 *
 * Sliver by sliver, this read a sliver's kc rows one after another, and rows of a 512-wide
 * matrix are 2 KB apart: their lines fall into 2 of L1's 64 sets (8 ways), so of a sliver's
 * 256 lines only 16 stayed, and the next sliver, whose values sit in the same lines, fetched
 * them all again from L2 (perf: the packing loads were a tenth of a 512×128·(768 deep) weight
 * gradient). Taken KCHUNK rows at a time across all the slivers instead, the 8 rows of the block
 * (8 × 512 floats, 16 KB) stay in L1 while every sliver copies its 8 × width values out of them.
 * One thread, GFLOP/s, sliver by sliver → in chunks: 512×128·(768) with A transposed 79 → 88,
 * 384×128·(768) 86 → 90, 128×512·(768) 82 → 86 (B is the 768 × 512 x). */
#define KCHUNK 8

static void pack_contiguous(const float *src, long sk, int kc, int first, int last, int width, float *packed) {
    for (int k0 = 0; k0 < kc; k0 += KCHUNK) {
        const int k1 = k0 + KCHUNK < kc ? k0 + KCHUNK : kc;
        for (int s = first * width; s < last * width; s += width)
            for (int k = k0; k < k1; ++k)
                memcpy(packed + (long)s * kc + k * width, src + k * sk + s, sizeof(float) * width);
    }
}

/* B[k0:k0+kc, j0:j0+nc] into slivers of NR columns: sliver s holds, for each k, its NR
 * values side by side (zero-padded past the edge). Slivers are shared out among threads. */
static void pack_b(const float *B, long sbk, long sbn, int kc, int nc, float *packed, team_t team) {
    int first, last;
    share(team, (nc + NR - 1) / NR, &first, &last);
    if (sbn == 1) {  /* the full slivers of contiguous rows; a partial one takes the loop below */
        const int full = last < nc / NR ? last : nc / NR;
        if (first < full)
            pack_contiguous(B, sbk, kc, first, full, NR, packed);
        first = first > full ? first : full;
    }
    for (int s = first * NR; s < last * NR; s += NR) {
        const int width = nc - s < NR ? nc - s : NR;
        float *out = packed + (long)s * kc;
        for (int k = 0; k < kc; ++k) {
            const float *row = B + k * sbk + s * sbn;
            if (sbn == 1 && width == NR)
                memcpy(out, row, sizeof(float) * NR);
            else {
                for (int j = 0; j < width; ++j) out[j] = row[j * sbn];
                for (int j = width; j < NR; ++j) out[j] = 0.0f;
            }
            out += NR;
        }
    }
}

/* A[i0:i0+mc, k0:k0+kc] into slivers of MR rows: for each k, the sliver's MR values. */
static void pack_a(const float *A, long sam, long sak, int mc, int kc, float *packed, team_t team) {
    int first, last;
    share(team, (mc + MR - 1) / MR, &first, &last);
    if (sam == 1) {  /* a transposed A: each k's MR values lie side by side */
        const int full = last < mc / MR ? last : mc / MR;
        if (first < full)
            pack_contiguous(A, sak, kc, first, full, MR, packed);
        first = first > full ? first : full;
    }
    for (int s = first * MR; s < last * MR; s += MR) {
        const int height = mc - s < MR ? mc - s : MR;
        float *out = packed + (long)s * kc;
        for (int k = 0; k < kc; ++k) {
            const float *col = A + s * sam + k * sak;
            for (int i = 0; i < height; ++i) out[i] = col[i * sam];
            for (int i = height; i < MR; ++i) out[i] = 0.0f;
            out += MR;
        }
    }
}

/* C[0:rows, 0:cols] (+)= Σ_k a[k] ⊗ b[k] (+ bias[0:cols] on every row, when bias is not NULL) over a
 * sliver of A (element (i, k) at a[i*a_row + k*a_step]: packed, a_row = 1 and a_step = MR) and a
 * packed sliver of B. The bias rides on the store the tile makes anyway, instead of a separate
 * pass over C (a Linear layer's `out += b` was 0.7 ms a step of nanoGPT's recipe). A full tile is read and written
 * in place (vector loads and stores, row stride ldc); an edge tile goes through a small buffer
 * so that nothing outside C is touched. Always inlined, so each call site gets the code for its
 * own strides (constants for the packed sliver). */
static inline __attribute__((always_inline)) void
micro_kernel(int kc, const float *restrict a, long a_row, long a_step, const float *restrict b, float *restrict C,
             long ldc, int rows, int cols, int accumulate, const float *restrict bias, const int nv) {
    vec acc[MR][NV];
    /* A tile that adds to what C holds (every k-block after the first) reads its MR rows of C
     * after the loop; with K over KC and C larger than the caches, those reads went to memory
     * and the core waited. Asked for now, they arrive while the kc steps run (BLIS prefetches
     * C the same way). C harness, 2 threads, GFLOP/s: 4096×384·(1152) 158 → 172, 4096×1152·(384)
     * with B transposed 160 → 175, 4096×384·(1536) 161 → 171 (the large GPT's products); the
     * recipe's one-k-block products unchanged. */
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
     * length (the bias once ran v < nv, cols) or taking one's address (memcpy from &acc[i][v])
     * made GCC store all 24 to the stack when the k-loop ended and load them back, 48 extra
     * memory operations a tile (objdump: 392 → 240 spills of zmm registers in macro_kernel).
     * 2 threads, GFLOP/s, three runs' mean: 768×128·(128) with bias 338 → 356, ·(512) 354 →
     * 379, 768×512·(128) 357 → 374, ·(66) 273 → 294; recipe step 19.52 → 19.30 ms (four pairs). */
    if (bias) {
        float edge[NR] = {0};  /* an edge tile's bias, zero-padded */
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

/* C (+)= A block · packed B panel, tile by tile; the tiles are shared out. A full sliver is read
 * from A where it lies when `in_place` (v6), from the packed block otherwise. The tiles go
 * column by column (jr outer: one B sliver meets every A sliver) or, with `rows_outer` (v8),
 * row by row (ir outer: one A sliver meets every B sliver). */
static void macro_kernel(const float *A, long sam, long sak, int in_place, const float *pa, const float *pb,
                         float *C, long ldc, int mc, int nc, int kc, int accumulate, const float *bias,
                         int rows_outer, team_t team) {
    const int slivers_a = (mc + MR - 1) / MR, slivers_b = (nc + NR - 1) / NR;
    int first, last;
    share(team, slivers_b * slivers_a, &first, &last);
    for (int tile = first; tile < last; ++tile) {
        const int i = (rows_outer ? tile / slivers_b : tile % slivers_a) * MR;
        const int j = (rows_outer ? tile % slivers_b : tile / slivers_a) * NR;
        const int rows = mc - i < MR ? mc - i : MR, cols = nc - j < NR ? nc - j : NR;
        const float *b = pb + (long)j * kc;
        float *c = C + i * ldc + j;
        const float *bias_j = bias ? bias + j : NULL;
        const int half = cols <= VW;  /* an edge sliver of at most one vector: half the tile */
        if (in_place && rows == MR) {  /* row-major A: MR streams along k */
            if (half)
                micro_kernel(kc, A + i * sam, sam, 1, b, c, ldc, rows, cols, accumulate, bias_j, 1);
            else
                micro_kernel(kc, A + i * sam, sam, 1, b, c, ldc, rows, cols, accumulate, bias_j, NV);
        } else if (half)
            micro_kernel(kc, pa + (long)i * kc, 1, MR, b, c, ldc, rows, cols, accumulate, bias_j, 1);
        else
            micro_kernel(kc, pa + (long)i * kc, 1, MR, b, c, ldc, rows, cols, accumulate, bias_j, NV);
    }
}

/* aligned_alloc wants a size that is a multiple of the alignment (C11 7.22.3.1). */
static float *alloc_floats(size_t count) {
    return aligned_alloc(64, (sizeof(float) * count + 63) / 64 * 64);
}

/* The packed panels of a serial call (threads = 1: attention's tile products, some 2,700 a
 * step of nanoGPT's recipe, and each thread's share under v7) live in one buffer per thread,
 * grown when a call needs more, instead of two aligned_alloc/free pairs per call (perf:
 * malloc's bookkeeping was 6 % of attention's time). The buffer lives as long as its thread:
 * at most a KC×NC panel of B and an MC×KC block of A, about 8.5 MB with AVX-512's blocks. */
static _Thread_local float *scratch;
static _Thread_local size_t scratch_floats;

static float *thread_scratch(size_t count) {
    if (count > scratch_floats) {
        free(scratch);
        scratch = alloc_floats(count);
        scratch_floats = scratch ? count : 0;
    }
    return scratch;
}

/* The loops around the macro-kernel, for one member of the team: the packing and the tiles are
 * shared out, and everyone waits for a packed buffer to be complete before reading it. */
static void gemm_loops(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                       long sbn, long ldc, int accumulate, const float *bias, int in_place, int kc_max,
                       int mc_max, int nc_max, float *packed_a, float *packed_b, int features, team_t team) {
    const int clear = features & CLEAR_C && !accumulate, rows_outer = features & A_SLIVER_IN_L1;
    for (int jc = 0; jc < N; jc += nc_max) {
        const int nc = N - jc < nc_max ? N - jc : nc_max;
        for (int pc = 0; pc < K; pc += kc_max) {
            const int kc = K - pc < kc_max ? K - pc : kc_max;
            for (int ic = 0; ic < M; ic += mc_max) {
                const int mc = M - ic < mc_max ? M - ic : mc_max;
                const float *a = A + ic * sam + pc * sak;
                const int packed_from = in_place ? mc / MR * MR : 0;  /* in place: only a partial sliver */
                wait_for_team(team);  /* the last macro-kernel has finished with the packed buffers */
                if (ic == 0)
                    pack_b(B + pc * sbk + jc * sbn, sbk, sbn, kc, nc, packed_b, team);
                if (packed_from < mc)
                    pack_a(a + packed_from * sam, sam, sak, mc - packed_from, kc, packed_a + (long)packed_from * kc,
                           team);
                wait_for_team(team);  /* both panels are packed */
                if (clear && pc == 0 && nc == ldc)
                    memset(C + (long)ic * ldc, 0, sizeof(float) * (size_t)mc * nc);
                else if (clear && pc == 0)
                    for (int i = 0; i < mc; ++i) memset(C + (long)(ic + i) * ldc + jc, 0, sizeof(float) * nc);
                macro_kernel(a, sam, sak, in_place, packed_a, packed_b, C + (long)ic * ldc + jc, ldc, mc, nc, kc,
                             accumulate || pc > 0, bias && pc == 0 ? bias + jc : NULL, rows_outer, team);
            }
        }
    }
}

/* C (M×N, row stride ldc) = A·B (+ bias on every row, bias may be NULL), or += when `accumulate`;
 * element (m, k) of A is A[m*sam + k*sak], likewise B. The blocks are chosen evenly (M = 128 is
 * two blocks of 66 rows, not 120 + 8). threads = 1 runs with no OpenMP region (the caller may be one).
 * `features`: what the numbered versions add (A_IN_PLACE, CLEAR_C, A_SLIVER_IN_L1); none is v4/v5.
 * CLEAR_C and A_SLIVER_IN_L1 take effect on one thread only (v7's and v8's own rows). */
static void gemm_block(const float *A, const float *B, float *C, const float *bias, int M, int N, int K, long sam,
                       long sak, long sbk, long sbn, long ldc, int accumulate, int threads, int features) {
    if (K == 0) {
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) C[i * ldc + j] = (accumulate ? C[i * ldc + j] : 0.0f) + (bias ? bias[j] : 0.0f);
        return;
    }
    const int k_blocks = (K + KC - 1) / KC, m_blocks = (M + MC - 1) / MC;
    const int kc_max = (K + k_blocks - 1) / k_blocks;
    const int mc_max = ((M + m_blocks - 1) / m_blocks + MR - 1) / MR * MR;
    if (threads > 1)  /* a team shares each panel out: a core's tiles are the B slivers it packed (v5),
                       * and one core clearing C (v7) would race the other's tiles */
        features &= ~(A_SLIVER_IN_L1 | CLEAR_C);
    const int panel = features & A_SLIVER_IN_L1 ? NC_L2 : NC, n_blocks = (N + panel - 1) / panel;
    const int nc_max = ((N + n_blocks - 1) / n_blocks + NR - 1) / NR * NR;
    const size_t b_floats = (size_t)kc_max * ((nc_max + NR - 1) / NR * NR), a_floats = (size_t)kc_max * mc_max;
    const int serial = threads <= 1;
    float *packed_b = serial ? thread_scratch(b_floats + a_floats) : alloc_floats(b_floats);
    float *packed_a = serial ? packed_b + b_floats : alloc_floats(a_floats);
    const int in_place = sak == 1  /* row-major A only: see v6 above, and v8 */
                         && (features & A_SLIVER_IN_L1
                             || (features & A_IN_PLACE && (sam <= A_IN_PLACE_STRIDE || N <= A_IN_PLACE_WIDTH)));
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
        {
#ifdef _OPENMP
            const team_t team = {omp_get_thread_num(), omp_get_num_threads()};
#else
            const team_t team = {0, 1};
#endif
            gemm_loops(A, B, C, M, N, K, sam, sak, sbk, sbn, ldc, accumulate, bias, in_place, kc_max, mc_max,
                       nc_max, packed_a, packed_b, features, team);
        }
    } else
        gemm_loops(A, B, C, M, N, K, sam, sak, sbk, sbn, ldc, accumulate, bias, in_place, kc_max, mc_max,
                   nc_max, packed_a, packed_b, features, (team_t){0, 1});
    if (!serial) {
        free(packed_a);
        free(packed_b);
    }
}

void sgemm_block(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                 long sbn, long ldc, int accumulate, int threads) {
    gemm_block(A, B, C, NULL, M, N, K, sam, sak, sbk, sbn, ldc, accumulate, threads, A_IN_PLACE);
}

/* Few rows of A (generating one token: M is the batch, often 1). Packing B would copy the
 * whole matrix to use each element once, and a register tile of MR rows would be mostly
 * padding, so B is read where it lies, the columns of C shared out among the threads:
 *   B with contiguous rows (sbn = 1):    C[i, :] += A[i, k] · B[k, :], vectorised along N;
 *   B with contiguous columns (sbk = 1, x · Wᵀ as a Linear layer computes it):
 *                                        C[i, j] = A[i, :] · B[:, j], vectorised along K.
 * Returns 0 when neither layout applies (the packed path takes it). */
#define FEW_ROWS 4
#define COLUMN_CHUNK 256

static int gemm_few_rows(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                         long sbn, int threads) {
    const int parallel = threads > 1 && (long)N * K >= 65536;  /* below that, waking a thread costs more */
    if (sbn == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
        for (int j0 = 0; j0 < N; j0 += COLUMN_CHUNK) {
            const int j1 = j0 + COLUMN_CHUNK < N ? j0 + COLUMN_CHUNK : N;
            for (int i = 0; i < M; ++i) {
                float *restrict c = C + (long)i * N;
                for (int j = j0; j < j1; ++j) c[j] = 0.0f;
                for (int k = 0; k < K; ++k) {
                    const float a = A[i * sam + k * sak];
                    const float *restrict b = B + k * sbk;
#pragma omp simd
                    for (int j = j0; j < j1; ++j) c[j] += a * b[j];
                }
            }
        }
        return 1;
    }
    if (sbk == 1 && sak == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
        for (int j = 0; j < N; ++j) {
            const float *restrict b = B + j * sbn;
            for (int i = 0; i < M; ++i) {
                const float *restrict a = A + i * sam;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int k = 0; k < K; ++k) acc += a[k] * b[k];
                C[(long)i * N + j] = acc;
            }
        }
        return 1;
    }
    return 0;
}

/* v7: each thread its own rows of C (a multiple of MR), computed by v6 on one thread.
 *
 * v5 shares every block out: all threads pack the panels together, wait at a barrier, share
 * the tiles, wait again. On the 2-core Intel Xeon (Sapphire Rapids, AVX-512) the small
 * products of a GPT step (a Linear layer's forward, 768 rows) ran at 1.3–1.9× one core's rate
 * that way. Here nothing is shared and nobody waits: each core packs the B panels it needs itself, so B
 * is packed once per thread instead of once (K·N copies per thread, against M/threads·K·N
 * multiply-adds: a few percent once a thread has ROWS_PER_THREAD rows). 2 threads, GFLOP/s,
 * v6 → v7: 768×128·128×128 251 → 399, 768×512·512×128 333 → 423, 1024³ 334 → 388, 2048³
 * 351 → 390, 4096×1536·1536×384 344 → 392; with fewer rows it loses (48×1024·1024×1024
 * 274 → 238: B packed twice for 24 rows a thread), hence the limit. (On the AMD EPYC of
 * earlier sessions giving each thread its own rows was tried for the backward's products
 * and lost, 16.0 → 18.4 ms a step; the threshold is this machine's.)
 *
 * C cleared first. Each thread zeroes a block of its rows of C (MC rows × NC columns) with
 * memset just before that block's tiles. The tiles then store into lines already in the
 * core's L2 instead of fetching every line they write (a store to a line not in the cache
 * reads it first; a GEMM's output is fresh memory, and a tile writes 12 rows 128 B wide, a
 * pattern the prefetchers do not follow, while glibc's memset writes whole lines in order).
 * 2 threads, 768×512·(128), GFLOP/s, without → with: C evicted from the caches 184–204 →
 * 278–286, C just written by the other core 261–281 → 297–305, C already in the caches
 * 341–351 → 329–333 (the memset's cost); inside the recipe's step (ms a step, the 17 forward
 * products, two pairs of runs) 5.80 / 5.77 → 5.24 / 5.19.
 * At first each thread cleared all its rows at once. That is too early when a share is larger
 * than L2: the base GPT's MLP, 2048×1024·(256), gives a thread 4 MB of C, and its first
 * lines were evicted again before their tiles came. Block by block, C evicted / rotating
 * through 16 outputs, GFLOP/s, two runs: 2048×1024·(256) 291–300 → 337–348, 2048×768·(256)
 * 296–308 → 335–342, 4096×1536·(384) 322 → 350, 4096×1152·(384) 316 → 353, 1024³ 341 → 350;
 * the recipe's shapes within 1–2 %. Step, interleaved runs, ms: base 153.4 / 153.8 / 153.3
 * → 149.6 / 150.6 / 150.3, large 947 / 962 → 932 / 944, recipe unchanged. The same clearing
 * on the backward's serial products (gx and partial gw: four times the k per output) changed
 * nothing. */
#define ROWS_PER_THREAD (4 * MR)

/* v8: the A sliver stays in L1. Up to v7 the tiles of a block go column by column: one B
 * sliver (KC×NR) meets every A sliver of the block, so the B sliver is the operand meant to
 * stay in L1. With AVX-512's tile it cannot: 512×32×4 B = 64 KB against a 48 KB L1, so both
 * slivers stream from L2 on every tile, and the A block (MC×KC, 480 KB) and the B panel
 * (KC×NC: 8 MB at NC = 4096, in L3) are what the caches hold. BLIS's kernels for AVX-512
 * turn this around, and so does v8:
 *   - tiles row by row (ir outer, jr inner): one A sliver, MR×KC = 12×512×4 B = 24 KB, meets
 *     every B sliver of the panel and stays in L1 (half of its 48 KB);
 *   - so the B panel is what must stay in L2: NC_L2 = 512 columns, KC×NC_L2×4 B = 1 MB, half
 *     of the Xeon's 2 MB L2 (1024 columns, the whole L2, lost: 1024³ 368–404 → 288–305
 *     GFLOP/s); each tile reads its B sliver from L2 once, 2 vectors (128 B) per k-step of 24
 *     FMAs, 12 cycles on two FMA pipes: about 11 B a cycle of L2's 64;
 *   - a row-major A is always read where it lies: each sliver's 12 rows are walked once per
 *     panel and then sit in L1, so the far-apart rows that made v6 pack a wide A (a block
 *     spanning 120 pages, read again for every B sliver) cost 12 pages per sliver here;
 *   - v7's clearing of C is dropped: row by row, consecutive tiles store along the same 12 rows
 *     of C, line after line, a pattern the prefetchers follow; clearing first now cost time
 *     (base GPT step, its fc and qkv products 14.3 / 11.0 → 12.2 / 9.5 ms a step without it).
 * AVX2 takes NC_L2 = 256 (256×256×4 B = 256 KB, half of Zen 3's 512 KB L2; A sliver 6 KB).
 * Measured inside training steps, one process taking v7 and v8 in turns step by step (the only
 * way this VM's drift cancels), ms a step of all the Linear layers' products, v7 → v8: base
 * GPT 112.8 → 108.3, large 734 → 683 (its forward 4096×384·(1536) 85.5 → 74.4), recipe 10.93 →
 * 10.78; the whole step base 151.4 → 145.5, large 932 → 878. Alone, 2 threads, GFLOP/s, two
 * runs: 4096³ 360 / 365 → 404 / 404, 2048³ 380 / 381 → 409 / 401, 1024³ 383 / 382 → 399 /
 * 389, 2048×256·(1024) with B transposed 381 / 381 → 401 / 400. Each part alone: rows first with
 * 4096-column panels lost (4096³ 252: the panel no longer in any cache it is read from);
 * 512-column panels in the old order changed nothing. Only one thread's own product takes
 * v8's order: a team sharing a panel (v5, for products with too few rows for v7) splits the
 * B slivers between the cores for packing, and column by column each core's tiles use the
 * slivers it packed itself; row by row every core read the other's half from the other
 * core's cache: 66×768·(128) 231 → 142 GFLOP/s, 48×1024·(1024) 284 → 166. */

static void gemm_own_rows(const float *A, const float *B, float *C, const float *bias, int M, int N, int K,
                          long sam, long sak, long sbk, long sbn, int threads, int features) {
#pragma omp parallel num_threads(threads)
    {
        const int me = team_member(), size = team_size();
        const int per = (M + size - 1) / size;
        const int share_rows = (per + MR - 1) / MR * MR;  /* whole slivers: only the last share has an edge */
        const int first = me * share_rows < M ? me * share_rows : M;
        const int last = first + share_rows < M ? first + share_rows : M;
        if (first < last) {
            gemm_block(A + first * sam, B, C + (long)first * N, bias, last - first, N, K, sam, sak, sbk, sbn, N, 0, 1,
                       features);
        }
    }
}

static void gemm_one(const float *A, const float *B, float *C, const float *bias, int M, int N, int K, long sam,
                     long sak, long sbk, long sbn, int threads) {
    if (M <= FEW_ROWS && gemm_few_rows(A, B, C, M, N, K, sam, sak, sbk, sbn, threads)) {
        if (bias)
            for (int i = 0; i < M; ++i)
                for (int j = 0; j < N; ++j) C[(long)i * N + j] += bias[j];
        return;
    }
    if (threads > 1 && M >= ROWS_PER_THREAD * threads)
        gemm_own_rows(A, B, C, bias, M, N, K, sam, sak, sbk, sbn, threads, A_IN_PLACE | A_SLIVER_IN_L1);
    else
        gemm_block(A, B, C, bias, M, N, K, sam, sak, sbk, sbn, N, 0, threads, A_IN_PLACE | A_SLIVER_IN_L1);
}

/* C = op(A)·op(B) (+ bias on every row, bias may be NULL) for one 2-D product (a Linear layer):
 * the bias is added by the tiles' stores. */
void sgemm_bias(const float *A, const float *B, const float *bias, float *C, int M, int N, int K, long long sam,
                long long sak, long long sbk, long long sbn, int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    gemm_one(A, B, C, bias, M, N, K, sam, sak, sbk, sbn, threads);
}

void sgemm_strided(const float *A, const float *B, float *C, int batches, int M, int N, int K, long long sab,
                   long long sam, long long sak, long long sbb, long long sbk, long long sbn, int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (batches >= 2 * threads && M <= 2 * MC) {
        /* many small products (attention heads): one product per thread at a time */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
        for (int z = 0; z < batches; ++z)
            gemm_one(A + z * sab, B + z * sbb, C + (long long)z * M * N, NULL, M, N, K, sam, sak, sbk, sbn, 1);
    } else {
        for (int z = 0; z < batches; ++z)
            gemm_one(A + z * sab, B + z * sbb, C + (long long)z * M * N, NULL, M, N, K, sam, sak, sbk, sbn, threads);
    }
}

static int all_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void matmul_v4_packed(const float *A, const float *B, float *C, int M, int N, int K) {
    gemm_block(A, B, C, NULL, M, N, K, K, 1, N, 1, N, 0, 1, 0);
}

void matmul_v5_threaded(const float *A, const float *B, float *C, int M, int N, int K) {
    gemm_block(A, B, C, NULL, M, N, K, K, 1, N, 1, N, 0, all_threads(), 0);
}

void matmul_v6_in_place(const float *A, const float *B, float *C, int M, int N, int K) {
    gemm_block(A, B, C, NULL, M, N, K, K, 1, N, 1, N, 0, all_threads(), A_IN_PLACE);
}

void matmul_v7_own_rows(const float *A, const float *B, float *C, int M, int N, int K) {
    gemm_own_rows(A, B, C, NULL, M, N, K, K, 1, N, 1, all_threads(), A_IN_PLACE | CLEAR_C);
}

void matmul_v8_sliver_in_l1(const float *A, const float *B, float *C, int M, int N, int K) {
    gemm_own_rows(A, B, C, NULL, M, N, K, K, 1, N, 1, all_threads(), A_IN_PLACE | A_SLIVER_IN_L1);
}
