/* bf16 matrix multiplication on the CPU: C (M×N, float32) = A (M×K) · B (K×N), A and B in
 * bfloat16, the products summed in float32. Three numbered versions, each complete on its own:
 *
 *  v1  scalar: widen each bf16 to a float and multiply-add; the layout lesson
 *  v2  vdpbf16ps: the instruction that multiplies bf16 pairs, B packed into pairs along k
 *  v3  v2 with a register tile of C (MR rows × NV vectors) and packed blocks, on every core
 *  v4  v3 fed with float32 in any layout (A or B transposed): rounding to bf16 happens inside
 *      the packing, so no bf16 copy of an operand is ever written; the bias added as C is stored
 *      (a Linear layer's three products: x·Wᵀ + b, g·W, gᵀ·x)
 *
 * What bf16 is. A float32 is 1 sign bit, 8 exponent bits and 23 mantissa bits; a bfloat16 is
 * the top 16 bits of it: the same sign and exponent (so the same range, 1e-38 … 3e38, and the
 * same inf and nan) and only 7 mantissa bits (about 3 significant digits). Widening is free,
 * a shift left by 16; narrowing is rounding the low 16 bits away (bf16_from_float). Half the
 * bytes of float32 means half the memory traffic and, with an instruction made for it, twice
 * the products per instruction.
 *
 * The products are exact: two 8-bit significands multiply into at most 16 bits, which a
 * float32's 24 hold. Only the sums round, in float32, as in the fp32 GEMM: the result is
 * A·B of the bf16 values with float32 accumulation, not A·B of the floats before rounding.
 *
 * The AVX512_BF16 code (v2, v3) is compiled where the compiler targets it (__AVX512BF16__,
 * i.e. -march=native on a CPU that has it). Elsewhere — the sanitizer build, which has no
 * -march — v2 and v3 run v1's loop, which gives the same products up to float32 rounding.
 * One difference: vdpbf16ps treats subnormal inputs and results as zero (it ignores MXCSR
 * and always flushes), the scalar loop does not; for values a network holds this never
 * shows. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "minillm_kernels.h"
#include "team.h"
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

/* ---- conversion --------------------------------------------------------------------------- */

static inline float widen(uint16_t h) {  /* bf16 → float: the 16 bits become the top half */
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* float → bf16, rounding to nearest, ties to even: add 0x7FFF plus the lowest bit that is
 * kept, then cut. Below the halfway point (low half < 0x8000) the carry does not reach the
 * kept bits; above it, it does; exactly halfway it does only when the kept part is odd, which
 * makes it even. A carry out of the mantissa steps the exponent up, which is the right answer
 * (and the largest finite floats round to inf, as they should). A nan keeps its sign and top
 * mantissa bits and is made quiet, so that rounding cannot turn it into inf. */
MINILLM_API
unsigned short bf16_from_float(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u)
        return (unsigned short)((bits >> 16) | 0x0040u);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (unsigned short)(bits >> 16);
}

MINILLM_API
void bf16_from_floats(const float *x, unsigned short *out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = bf16_from_float(x[i]);
}

MINILLM_API
void bf16_to_floats(const unsigned short *x, float *out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = widen(x[i]);
}

/* 1 when v2–v4 run on vdpbf16ps */
MINILLM_API
int matmul_bf16_has_avx512bf16(void) {
#if defined(__AVX512BF16__)
    return 1;
#else
    return 0;
#endif
}

/* ---- v1: scalar --------------------------------------------------------------------------- */
/* The fp32 ladder's v2 loop order (i-k-j: rows of B and C run contiguous), each bf16 widened
 * as it is read. The layout lesson: a bf16 matrix is a uint16 matrix, row-major like any
 * other; nothing about the product changes but the two shifts. The compiler may vectorise the
 * j loop (widening 16 values at once is one vpmovzxwd and one shift), but each multiply still
 * takes one float lane: no more products per instruction than float32 — only half the bytes
 * read. */
static void bf16_scalar(const uint16_t *A, const uint16_t *B, float *C, int M, int N, int K) {
    for (int i = 0; i < M; ++i) {
        float *c = C + (long)i * N;
        for (int j = 0; j < N; ++j) c[j] = 0.0f;
        for (int k = 0; k < K; ++k) {
            const float a = widen(A[(long)i * K + k]);
            const uint16_t *b = B + (long)k * N;
            for (int j = 0; j < N; ++j) c[j] += a * widen(b[j]);
        }
    }
}

/* bf16 · bf16 → float32: C (M×N) = A (M×K) · B (K×N), A and B bfloat16 (the top 16 bits of a
 * float32, as uint16), summed in float32 (matmul_bf16.c). v1 scalar, v2 vdpbf16ps on pairs of k,
 * v3 v2 with a register tile and packed blocks on every core; without AVX512_BF16, v2 and v3 run
 * v1's loop */
MINILLM_API
void matmul_bf16_v1_scalar(const unsigned short *A, const unsigned short *B, float *C, int M, int N, int K) {
    bf16_scalar(A, B, C, M, N, K);
}

#if defined(__AVX512BF16__)
/* ---- what v2 and v3 share: pairs -----------------------------------------------------------
 * vdpbf16ps (_mm512_dpbf16_ps(c, a, b)) sees each 32-bit lane of a and b as two bf16s and
 * does, in each of the 16 lanes,
 *
 *     c[lane] += a.lo · b.lo + a.hi · b.hi
 *
 * two products into one float32 accumulator: 32 multiply-adds per instruction where an fp32
 * FMA does 16. The two products of a lane go into the same sum, so they must be two terms of
 * the same dot product: the same C element, two consecutive k. Hence the layout
 *
 *     lane j of the B vector for pair p:  (B[2p][j], B[2p+1][j])    16 columns, one pair of k each
 *     the A broadcast for pair p:         (A[i][2p], A[i][2p+1])    the same pair, every lane
 *
 * A row of A already holds its k-neighbours side by side, so (A[i][2p], A[i][2p+1]) is one
 * 32-bit load. In B they are N elements apart (different rows), so B is packed: its rows
 * 2p and 2p+1 interleaved, element by element. An odd K leaves the last pair with one term;
 * its other half is zero in both. */
static inline uint32_t pair(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

/* The pair of A's row (K long) at pair p: one unaligned 32-bit load, or k = K−1 and a zero. */
static inline uint32_t a_pair(const uint16_t *row, int K, int p) {
    if (2 * p + 1 < K) {
        uint32_t v;
        memcpy(&v, row + 2 * p, sizeof v);  /* little-endian: A[2p] is the low half */
        return v;
    }
    return pair(row[2 * p], 0);
}

static inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

/* The columns of a vector of 16 that lie inside C: all, or the first `left`. */
static inline __mmask16 columns_mask(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* ---- v2: vdpbf16ps, B packed into pairs ------------------------------------------------------
 * B is packed in panels of 16 columns, one zmm wide: panel q holds, for every pair p, the 16
 * lanes (B[2p][16q+l], B[2p+1][16q+l]) — 64 bytes, one cache line, per pair. A panel is
 * ⌈K/2⌉ × 64 B = 32·K bytes: the whole depth of K = 1024 is 32 KB, within a 32–48 KB L1. Each
 * panel is then used by every row of A in turn, so it is read from L1 M times; each row of A
 * (2·K bytes) is read once per panel, from L2 or L3.
 * Per pair: one load of B, one broadcast of A, one vdpbf16ps into a single accumulator. That
 * accumulator is the weakness v3 removes: each vdpbf16ps waits for the one before (a chain as
 * long as K/2), so the unit that could start one or two a cycle starts one every few cycles. */
static void v2_pairs(const uint16_t *A, const uint16_t *B, float *C, int M, int N, int K) {
    const int pairs = (K + 1) / 2, panels = (N + 15) / 16;
    uint32_t *packed = aligned_alloc(64, (size_t)panels * pairs * 64 + 64);
    for (int q = 0; q < panels; ++q)
        for (int p = 0; p < pairs; ++p)
            for (int l = 0; l < 16; ++l) {
                const int j = 16 * q + l, k = 2 * p;
                const uint16_t lo = j < N ? B[(long)k * N + j] : 0;
                const uint16_t hi = j < N && k + 1 < K ? B[(long)(k + 1) * N + j] : 0;
                packed[((long)q * pairs + p) * 16 + l] = pair(lo, hi);
            }
    for (int q = 0; q < panels; ++q) {
        const uint32_t *panel = packed + (long)q * pairs * 16;
        const __mmask16 mask = columns_mask(N - 16 * q);
        for (int i = 0; i < M; ++i) {
            const uint16_t *row = A + (long)i * K;
            __m512 acc = _mm512_setzero_ps();
            for (int p = 0; p < pairs; ++p) {
                const __m512i a = _mm512_set1_epi32((int)a_pair(row, K, p));
                const __m512i b = _mm512_load_si512(panel + p * 16);
                acc = _mm512_dpbf16_ps(acc, as_bh(a), as_bh(b));
            }
            _mm512_mask_storeu_ps(C + (long)i * N + 16 * q, mask, acc);
        }
    }
    free(packed);
}

/* ---- v3: a register tile, packed blocks, every core ------------------------------------------
 * The fp32 micro-kernel's idea (kernels/c/matmul/blocking.h) with pairs: a tile of C, MR rows ×
 * NV vectors of 16 columns, stays in zmm registers for a whole KC-deep pass. Per pair the
 * kernel loads NV vectors of B, broadcasts MR pairs of A and issues MR·NV independent
 * vdpbf16ps — 24 chains instead of v2's one, enough to keep the unit busy, and each load now
 * feeds MR (or NV) instructions instead of one.
 *
 *   registers: 12 × 2 = 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm
 *
 * Blocks, in pairs of k (4 bytes a pair, the same as one float — so the fp32 GEMM's byte
 * arithmetic holds with KC counted in pairs, and each block covers twice the depth):
 *
 *   B sliver  KC2 × NR    256 pairs × 32 × 4 B =  32 KB   L1 (read by every A sliver of a block)
 *   A sliver  MR × KC2     12 × 256 pairs × 4 B = 12 KB   L1/L2
 *   A block   MC × KC2    240 × 256 pairs × 4 B = 240 KB  L2 (read once per B sliver)
 *
 * B is packed once, whole, before the cores start — sliver by sliver, each sliver's pairs
 * from k = 0 to K, so that the KC2-deep piece a tile reads is contiguous — as many bytes as B
 * itself, read by every core. Each core then takes its own blocks of rows of C (no core writes
 * another's rows; no barrier) and packs its own A blocks: row by row of a sliver, the MR pairs
 * of one k-pair side by side, rows past M zero. Columns past N are zero in the packed B, so a
 * tile always computes MR × NR and stores only what lies inside C. */
#define V3_MR 12
#define V3_NV 2
#define V3_NR (16 * V3_NV)
#define V3_KC2 256
#define V3_MC (20 * V3_MR)

/* C tile (mr × nr of it inside C) = or += A sliver · B sliver over kc2 pairs; ``bias`` (NULL:
 * none; else the nr values of this tile's columns) is added on the first pass. */
static inline void v3_tile(const uint32_t *a, const uint32_t *b, int kc2, float *c, long ldc, int mr, int nr,
                           int accumulate, const float *bias) {
    __m512 acc[V3_MR][V3_NV];
#pragma GCC unroll 12
    for (int r = 0; r < V3_MR; ++r)
#pragma GCC unroll 2
        for (int v = 0; v < V3_NV; ++v) acc[r][v] = _mm512_setzero_ps();
    for (int p = 0; p < kc2; ++p) {
        __m512i bv[V3_NV];
#pragma GCC unroll 2
        for (int v = 0; v < V3_NV; ++v) bv[v] = _mm512_load_si512(b + p * V3_NR + 16 * v);
#pragma GCC unroll 12
        for (int r = 0; r < V3_MR; ++r) {
            const __m512i av = _mm512_set1_epi32((int)a[p * V3_MR + r]);
#pragma GCC unroll 2
            for (int v = 0; v < V3_NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], as_bh(av), as_bh(bv[v]));
        }
    }
    for (int r = 0; r < mr; ++r)
        for (int v = 0; v < V3_NV; ++v) {
            const __mmask16 mask = columns_mask(nr - 16 * v);
            float *out = c + r * ldc + 16 * v;
            __m512 sum = acc[r][v];
            if (accumulate)
                sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, out));
            else if (bias)
                sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, bias + 16 * v));
            _mm512_mask_storeu_ps(out, mask, sum);
        }
}

/* Blocks of rows of about equal size, whole slivers, at least one per thread when M allows. */
static int rows_per_block(int M, int threads) {
    int blocks = (M + V3_MC - 1) / V3_MC;
    blocks = (blocks + threads - 1) / threads * threads;
    const int mc = (M + blocks - 1) / blocks;
    return (mc + V3_MR - 1) / V3_MR * V3_MR;
}

static void v3_tiled(const uint16_t *A, const uint16_t *B, float *C, int M, int N, int K) {
    const int pairs = (K + 1) / 2, slivers = (N + V3_NR - 1) / V3_NR;
    uint32_t *packed_b = aligned_alloc(64, (size_t)slivers * pairs * V3_NR * 4 + 64);
#pragma omp parallel for schedule(static)
    for (int s = 0; s < slivers; ++s)
        for (int p = 0; p < pairs; ++p)
            for (int l = 0; l < V3_NR; ++l) {
                const int j = s * V3_NR + l, k = 2 * p;
                const uint16_t lo = j < N ? B[(long)k * N + j] : 0;
                const uint16_t hi = j < N && k + 1 < K ? B[(long)(k + 1) * N + j] : 0;
                packed_b[((long)s * pairs + p) * V3_NR + l] = pair(lo, hi);
            }
    const int mc = rows_per_block(M, team_threads(0)), blocks = (M + mc - 1) / mc;
#pragma omp parallel
    {
        uint32_t *packed_a = aligned_alloc(64, (size_t)mc * V3_KC2 * 4 + 64);
#pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; ++blk) {
            const int ic = blk * mc, rows = M - ic < mc ? M - ic : mc;
            for (int pc = 0; pc < pairs; pc += V3_KC2) {
                const int kc2 = pairs - pc < V3_KC2 ? pairs - pc : V3_KC2;
                for (int ir = 0; ir < rows; ir += V3_MR)  /* pack this block of A, sliver by sliver */
                    for (int p = 0; p < kc2; ++p)
                        for (int r = 0; r < V3_MR; ++r)
                            packed_a[ir * kc2 + p * V3_MR + r] =
                                ir + r < rows ? a_pair(A + (long)(ic + ir + r) * K, K, pc + p) : 0;
                for (int s = 0; s < slivers; ++s) {  /* a B sliver stays in L1 while the A slivers pass */
                    const uint32_t *b = packed_b + ((long)s * pairs + pc) * V3_NR;
                    for (int ir = 0; ir < rows; ir += V3_MR)
                        v3_tile(packed_a + ir * kc2, b, kc2, C + (long)(ic + ir) * N + s * V3_NR, N,
                                rows - ir < V3_MR ? rows - ir : V3_MR, N - s * V3_NR, pc > 0, NULL);
                }
            }
        }
        free(packed_a);
    }
    free(packed_b);
}

/* ---- v4: float32 operands in any layout, rounded as they are packed ---------------------------
 * A Linear layer needs three products of float32 matrices, two with an operand transposed:
 *
 *   forward   y  = x · Wᵀ + b    A = x,    B = Wᵀ (W's rows are B's columns)
 *   backward  dx = g · W         A = g,    B = W
 *             dW = gᵀ · x        A = gᵀ,   B = x  (g's columns are A's rows)
 *
 * v3 wants A and B as row-major bf16; making them would take a pass that rounds and one that
 * transposes, each writing a copy as large as the operand. But v3 already copies every element
 * once, into its packed blocks: v4 rounds there. Element (i, k) of A is A[i·sam + k·sak] and
 * (k, j) of B is B[k·sbk + j·sbn], so one packing routine reads any layout: 16 lanes along the
 * packed dimension (B's columns, the rows of an A sliver) by a plain vector load where those
 * lanes are neighbours in memory, a gather where they are not. Each lane takes two floats, k
 * and k+1, rounds them with bf16_from_float's integer rounding (16 lanes at once) and joins
 * them into the pair vdpbf16ps reads. The rounded operand exists only in L1/L2-sized blocks.
 * The packing reads each element of A once and each of B once, against M·N·K/32 vdpbf16ps,
 * so the gathers cost little beside the products for any but the thinnest matrices.
 * The bias, one float per column of C, joins the tiles' first store. */

/* 16 floats → each one's bf16 in the top half of its 32-bit lane, the bottom half zero. */
static inline __m512i round_to_top(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)),
                                                  _mm512_set1_epi32(0x7F800000));
    const __m512i kept = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(bits, _mm512_set1_epi32(0x00400000)));
    return _mm512_and_si512(kept, _mm512_set1_epi32((int)0xFFFF0000u));
}

/* x[l·stride] for the lanes l < n (a load when stride is 1, else a gather); the rest zero. */
static inline __m512 lanes(const float *x, long stride, int n) {
    const __mmask16 mask = columns_mask(n);
    if (stride == 1)
        return _mm512_maskz_loadu_ps(mask, x);
    const __m512i index = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int)stride));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, index, x, 4);
}

/* The pairs (x[0][l], x[1][l]) of 16 lanes, rows sk apart and lanes sl apart, rounded to bf16;
 * without a second row (k + 1 = K) its half is zero. */
static inline __m512i pairs16(const float *x, long sk, long sl, int n, int second) {
    const __m512i lo = _mm512_srli_epi32(round_to_top(lanes(x, sl, n)), 16);
    return second ? _mm512_or_si512(lo, round_to_top(lanes(x + sk, sl, n))) : lo;
}

/* The 16 × 16 block of 32-bit lanes r[row][column] transposed in registers: out[column] holds
 * that column of the 16 rows. Two rounds of unpacks transpose the 4 × 4 blocks inside each
 * 128-bit quarter; two rounds of quarter shuffles move the quarters. */
static inline void transpose16(const __m512i r[16], __m512i out[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  /* u[4g + c], quarter k: column 4k + c of rows 4g … 4g+3 */
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int c = 0; c < 4; ++c) {  /* the quarters k of u[c], u[4+c], u[8+c], u[12+c] side by side */
        const __m512i p = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), q = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        const __m512i r2 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE), s = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        out[c] = _mm512_shuffle_i32x4(p, q, 0x88);
        out[4 + c] = _mm512_shuffle_i32x4(p, q, 0xDD);
        out[8 + c] = _mm512_shuffle_i32x4(r2, s, 0x88);
        out[12 + c] = _mm512_shuffle_i32x4(r2, s, 0xDD);
    }
}

/* 16 pairs of 16 lanes where each lane's floats run along k (a row of x or of W, rows `stride`
 * apart; n lanes and `left` floats of each inside the matrix): out[q], lane l = pair q of
 * lane l's row. A lane's 32 floats are rounded and narrowed into one vector of 16 pairs
 * (vpermt2w keeps the top 16 bits of each), then the 16 × 16 pairs are transposed: 32
 * contiguous loads and 64 shuffles where pairs16 would gather 32 times. */
static inline void pairs16x16(const float *x, long stride, int n, int left, __m512i out[16]) {
    static const uint16_t top_words[32] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31,
                                           33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    const __m512i index = _mm512_loadu_si512(top_words);
    const __mmask16 first = columns_mask(left), second = columns_mask(left - 16);
    __m512i rows[16];
    for (int l = 0; l < 16; ++l) {
        if (l >= n) {
            rows[l] = _mm512_setzero_si512();
            continue;
        }
        const __m512i lo = round_to_top(_mm512_maskz_loadu_ps(first, x + l * stride));
        const __m512i hi = round_to_top(_mm512_maskz_loadu_ps(second, x + l * stride + 16));
        rows[l] = _mm512_permutex2var_epi16(lo, index, hi);
    }
    transpose16(rows, out);
}

static void v4_tiled(const float *A, const float *B, const float *bias, float *C, int M, int N, int K,
                     long sam, long sak, long sbk, long sbn, int threads) {
    const int pairs = (K + 1) / 2, slivers = (N + V3_NR - 1) / V3_NR;
    uint32_t *packed_b = aligned_alloc(64, (size_t)slivers * pairs * V3_NR * 4 + 64);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int s = 0; s < slivers; ++s)
        for (int v = 0; v < V3_NV; ++v) {
            const int j = s * V3_NR + 16 * v;
            uint32_t *to = packed_b + (long)s * pairs * V3_NR + 16 * v;
            if (sbk == 1 && sbn != 1)  /* B = Wᵀ: each column a row of W */
                for (int p0 = 0; p0 < pairs; p0 += 16) {
                    __m512i block[16];
                    pairs16x16(B + 2L * p0 + (long)j * sbn, sbn, N - j, K - 2 * p0, block);
                    for (int q = 0; q < 16 && p0 + q < pairs; ++q)
                        _mm512_store_si512(to + (long)(p0 + q) * V3_NR, block[q]);
                }
            else
                for (int p = 0; p < pairs; ++p)
                    _mm512_store_si512(to + (long)p * V3_NR,
                                       pairs16(B + 2L * p * sbk + (long)j * sbn, sbk, sbn, N - j, 2 * p + 1 < K));
        }
    const int row_slivers = (M + V3_MR - 1) / V3_MR;
#pragma omp parallel num_threads(threads)
    {
        /* each thread an equal share of C's MR-row slivers (one sliver more or less), in blocks of
         * at most MC rows: v3's equal blocks leave the last one short, so the thread that owns it
         * waits for the others (1,024 rows on two threads: 540 rows against 484) */
        const int me = team_member(), size = team_size();
        const int first = (int)((long)me * row_slivers / size) * V3_MR;
        const int end = (int)((long)(me + 1) * row_slivers / size) * V3_MR, last = end < M ? end : M;
        uint32_t *packed_a = aligned_alloc(64, (size_t)V3_MC * V3_KC2 * 4 + 64);
        for (int ic = first; ic < last; ic += V3_MC) {
            const int rows = last - ic < V3_MC ? last - ic : V3_MC;
            for (int pc = 0; pc < pairs; pc += V3_KC2) {
                const int kc2 = pairs - pc < V3_KC2 ? pairs - pc : V3_KC2;
                for (int ir = 0; ir < rows; ir += V3_MR) {  /* MR rows of a pair: lanes 0…11 of one vector */
                    const float *a = A + (long)(ic + ir) * sam;
                    uint32_t *to = packed_a + ir * kc2;
                    const int n = rows - ir < V3_MR ? rows - ir : V3_MR;
                    if (sak == 1 && sam != 1)  /* A's rows run along k (x, g) */
                        for (int p0 = 0; p0 < kc2; p0 += 16) {
                            __m512i block[16];
                            pairs16x16(a + 2L * (pc + p0), sam, n, K - 2 * (pc + p0), block);
                            for (int q = 0; q < 16 && p0 + q < kc2; ++q)
                                _mm512_mask_storeu_epi32(to + (p0 + q) * V3_MR, columns_mask(V3_MR), block[q]);
                        }
                    else
                        for (int p = 0; p < kc2; ++p)
                            _mm512_mask_storeu_epi32(to + p * V3_MR, columns_mask(V3_MR),
                                                     pairs16(a + 2L * (pc + p) * sak, sak, sam, n,
                                                             2 * (pc + p) + 1 < K));
                }
                for (int s = 0; s < slivers; ++s) {
                    const uint32_t *b = packed_b + ((long)s * pairs + pc) * V3_NR;
                    for (int ir = 0; ir < rows; ir += V3_MR)
                        v3_tile(packed_a + ir * kc2, b, kc2, C + (long)(ic + ir) * N + s * V3_NR, N,
                                rows - ir < V3_MR ? rows - ir : V3_MR, N - s * V3_NR, pc > 0,
                                bias ? bias + s * V3_NR : NULL);
                }
            }
        }
        free(packed_a);
    }
    free(packed_b);
}
#endif

MINILLM_API
void matmul_bf16_v2_dpbf16(const unsigned short *A, const unsigned short *B, float *C, int M, int N, int K) {
    if (M <= 0 || N <= 0)
        return;
#if defined(__AVX512BF16__)
    v2_pairs(A, B, C, M, N, K);
#else
    bf16_scalar(A, B, C, M, N, K);
#endif
}

MINILLM_API
void matmul_bf16_v3_tiled(const unsigned short *A, const unsigned short *B, float *C, int M, int N, int K) {
    if (M <= 0 || N <= 0)
        return;
#if defined(__AVX512BF16__)
    if (K <= 0) {
        memset(C, 0, (size_t)M * N * sizeof *C);
        return;
    }
    v3_tiled(A, B, C, M, N, K);
#else
    bf16_scalar(A, B, C, M, N, K);
#endif
}

/* v4 without AVX512_BF16 (or with a stride a gather's 32-bit index cannot hold): v1's loop over
 * strided float32, each element rounded as it is read. */
static void bf16_scalar_strided(const float *A, const float *B, const float *bias, float *C, int M, int N, int K,
                                long sam, long sak, long sbk, long sbn) {
    for (int i = 0; i < M; ++i) {
        float *c = C + (long)i * N;
        for (int j = 0; j < N; ++j) c[j] = bias ? bias[j] : 0.0f;
        for (int k = 0; k < K; ++k) {
            const float a = widen(bf16_from_float(A[i * sam + k * sak]));
            for (int j = 0; j < N; ++j) c[j] += a * widen(bf16_from_float(B[k * sbk + j * sbn]));
        }
    }
}

/* v4: C (M×N) = op(A) · op(B) (+ bias[j] on every row; bias may be NULL) from float32 in any layout,
 * element (i, k) of A at A[i·sam + k·sak] and (k, j) of B at B[k·sbk + j·sbn], rounded to bf16 as
 * it is packed (a Linear layer's x·Wᵀ + b, g·W and gᵀ·x), on `threads` threads (0: all) */
void matmul_bf16_product(const float *A, const float *B, const float *bias, float *C, int M, int N, int K,
                         long long sam, long long sak, long long sbk, long long sbn, int threads) {
    if (M <= 0 || N <= 0)
        return;
#if defined(__AVX512BF16__)
    const long long gatherable = (1LL << 31) / 16;  /* the gather's index is 32 bits: lane 15 · stride */
    if (K > 0 && sam < gatherable && sak < gatherable && sbk < gatherable && sbn < gatherable) {
        v4_tiled(A, B, bias, C, M, N, K, (long)sam, (long)sak, (long)sbk, (long)sbn, team_threads(threads));
        return;
    }
#else
    (void)threads;
#endif
    bf16_scalar_strided(A, B, bias, C, M, N, K, (long)sam, (long)sak, (long)sbk, (long)sbn);
}

MINILLM_API
void matmul_bf16_v4_from_float(const float *A, const float *B, const float *bias, float *C, int M, int N, int K,
                               long long sam, long long sak, long long sbk, long long sbn) {
    matmul_bf16_product(A, B, bias, C, M, N, K, sam, sak, sbk, sbn, 0);
}
