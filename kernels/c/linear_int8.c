/* Weight-only int8 linear layers for decoding: y (M×N) = x (M×K) · (s ⊙ W)ᵀ + b, with W int8
 * (N×K, row-major: one row per output), s one float scale per output row (W_float ≈ s[n]·W[n]),
 * x and y float32 and M small (one row per sequence being generated).
 *
 * Why it pays: generating a token multiplies one row of activations by every weight matrix,
 * so each weight is read once and used for one multiply-add. The arithmetic is nothing next
 * to the reading: GPT-2 small has 85 M weights in its 12 blocks and 38.6 M in the output
 * layer, 494 MB a token in float32 and 124 MB in int8 (+ 4 bytes of scale per output row,
 * under 0.3 MB). When the memory delivers B bytes/s, a token cannot take less than
 * bytes ÷ B, so int8 weights can at best make decoding 4× faster. But a core must then
 * also turn 4× as many weights a second into products, and the numbered versions are the
 * steps to doing that faster than the memory delivers them:
 *
 *   v1 scalar      each weight converted to float and multiplied in turn: one multiply-add
 *                  per instruction (the compiler may not reorder a float sum, so it stays
 *                  scalar). Reads the right bytes, far too slowly.
 *   v2 widened     16 weights at once: 16 int8 widened to 16 int32, converted to 16 floats
 *                  and multiplied into 16 partial sums (vpmovsxbd, vcvtdq2ps, vfmadd), in a
 *                  tile of 4 weight rows × up to 4 activation rows, so each converted weight
 *                  vector feeds every activation row. Activations stay float32. Three
 *                  instructions per 16 weights: on one core about as fast as the memory, no
 *                  faster.
 *   v3 vnni        the activations quantised too, once per call (per row: q = round(x / sx),
 *                  sx = max|x| / 127, K bytes a row), and the products in integers: one
 *                  vpdpbusd multiplies 64 unsigned by 64 signed bytes and adds each group of
 *                  four into 16 int32 sums, 64 multiply-adds an instruction. The unsigned
 *                  operand is the weight plus 128 (an xor with 0x80), and the 128·Σ q that adds
 *                  is taken off at the end. But 8-bit activations err by up to max|x| / 254 each,
 *                  and a row with a few large channels (transformers have them) puts that step
 *                  on every small value of the row.
 *   v4 two digits  v3 with each activation as two int8 digits, x ≈ sx·(hi + lo / 254),
 *                  hi = round(x / sx), lo = round(254·(x / sx − hi)): a 16-bit activation (error
 *                  at most max|x| / 64516) for two vpdpbusd per 64 weights, still 32
 *                  multiply-adds an instruction.
 *   v5 row order   v4's sums with the weights read in address order: one weight row from its
 *                  first byte to its last, then the next, instead of a tile's 4 rows side by
 *                  side. The arithmetic is no faster; the memory is.
 *
 * The backend's linear_int8 (at the end) runs v5 for one or two activation rows and v4 for
 * more. v3–v5 need AVX512-VNNI (and -march=native to be told so); without it they take the same
 * integer sums in a portable loop (same results bit for bit, more slowly). v2 uses AVX-512 for
 * its conversions where there is one, else a loop.
 *
 * Reading order: a tile's 4 weight rows are 4 streams K bytes apart, each only K bytes long
 * (768 for most of GPT-2's layers, 12 cache lines), too short for the hardware prefetcher to
 * get going on each; so every step also asks for the same bytes PF_TILES tiles further on.
 * v5's single stream in address order is what the hardware prefetcher follows best, and its
 * own prefetch runs PF_ROWS rows ahead.
 *
 * Threads: a layer of N·K weight bytes is split into contiguous ranges of output rows, one per
 * thread (each weight is read by one thread, once). Below PARALLEL_FROM bytes the layer runs
 * on the calling thread with no OpenMP region at all: waking a team costs microseconds, as
 * long as one core takes to read some tens of KB. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minillm_kernels.h"
#include "team.h"
#include "lanes.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define HAVE_VNNI 1
#else
#define HAVE_VNNI 0
#endif

#define PARALLEL_FROM (256 * 1024)  /* bytes of weights from which a layer is split across threads */
#define PF_TILES 2                  /* prefetch distance, in tiles (2·4·K bytes ahead) */
#define WR 4                        /* weight rows per tile */
#define XR 4                        /* activation rows per tile (v4 and v5: 2, their sums are twice as many) */

/* One call's operands, passed to the row functions whole. v3–v5 add the activations'
 * digits (rows kp bytes apart, zero-padded to a multiple of 64), their scales and Σ digits. */
struct call {
    const float *x, *scale, *bias;
    const signed char *w;
    float *y;
    int M, N, K;
    const signed char *hi, *lo;
    const float *sx;
    const int *sum_hi, *sum_lo;
    long long kp;
};

typedef void (*rows_fn)(const struct call *c, int n0, int n1);

static inline float bias_of(const struct call *c, int n) { return c->bias ? c->bias[n] : 0.0f; }

/* Output rows [0, N) of every activation row, split across the team (or not, see above). */
static void over_rows(rows_fn rows, const struct call *c, int threads) {
    threads = team_threads(threads);
    if (threads > 1 && (long long)c->N * c->K >= PARALLEL_FROM) {
#pragma omp parallel num_threads(threads)
        {
            const int id = team_member(), size = team_size();
            const int blocks = (c->N + 15) / 16, per = (blocks + size - 1) / size;  /* 16-row blocks */
            const int n0 = id * per * 16 < c->N ? id * per * 16 : c->N;
            const int n1 = n0 + per * 16 < c->N ? n0 + per * 16 : c->N;
            if (n0 < n1) rows(c, n0, n1);
        }
    } else {
        rows(c, 0, c->N);
    }
}

/* Output rows [n0, n1) in tiles of WR weight rows (then single rows at the end), each tile
 * against every group of xr activation rows while its WR·K weight bytes are still in L1: more
 * activation rows cost arithmetic, not more reading of the weights. `tile` is inlined with
 * constant row counts, so that its accumulators live in registers. */
#define TILE_ROWS(tile, xr)                                                                 \
    static inline __attribute__((always_inline)) void tile##_any(const struct call *c, int m0, \
                                                                 int n, const int nr) {     \
        switch (c->M - m0 < (xr) ? c->M - m0 : (xr)) {                                      \
            case 1: tile(c, m0, n, 1, nr); break;                                           \
            case 2: tile(c, m0, n, 2, nr); break;                                           \
            case 3: tile(c, m0, n, 3, nr); break;                                           \
            default: tile(c, m0, n, 4, nr); break;                                          \
        }                                                                                   \
    }                                                                                       \
    static void tile##_rows(const struct call *c, int n0, int n1) {                         \
        int n = n0;                                                                         \
        for (; n + WR <= n1; n += WR)                                                       \
            for (int m0 = 0; m0 < c->M; m0 += (xr)) tile##_any(c, m0, n, WR);               \
        for (; n < n1; ++n)                                                                 \
            for (int m0 = 0; m0 < c->M; m0 += (xr)) tile##_any(c, m0, n, 1);                \
    }

/* ---- v1: scalar dequantise-and-dot ------------------------------------------------------
 * y[m][n] = s[n] · Σ_k x[m][k] · W[n][k] + b[n]: the scale is the same for the whole row, so it
 * leaves the sum and costs one multiply per output, not one per weight. */
static void rows_v1(const struct call *c, int n0, int n1) {
    for (int n = n0; n < n1; ++n) {
        const signed char *wn = c->w + (long long)n * c->K;
        for (int m = 0; m < c->M; ++m) {
            const float *xm = c->x + (long long)m * c->K;
            float acc = 0.0f;
            for (int k = 0; k < c->K; ++k) acc += xm[k] * (float)wn[k];
            c->y[(long long)m * c->N + n] = acc * c->scale[n] + bias_of(c, n);
        }
    }
}

/* ---- v2: widened to float in registers, a 4×4 tile ---------------------------------------
 * GCC's vector extensions: 16-float AVX-512 registers here, pairs of narrower ones elsewhere.
 * Per 16 values of k a tile reads 4×16 weight bytes (from memory) and up to 4×64 activation
 * bytes (from L1: a few KB, read again by every tile). */
typedef float f16v __attribute__((vector_size(64)));

/* 16 int8 → 16 float. (GCC 12 compiles __builtin_convertvector of 16 chars to 16 scalar
 * converts, and a loop to narrow pieces through the stack, so on AVX-512 by name.) */
static inline f16v widen16(const signed char *p) {
#if defined(__AVX512F__)
    return (f16v)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
#else
    float lane[16];
    for (int i = 0; i < 16; ++i) lane[i] = (float)p[i];
    f16v v;
    memcpy(&v, lane, sizeof v);
    return v;
#endif
}

static inline f16v load16(const float *p) {
    f16v v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float hsum16(f16v v) {
    float lane[LANES];
    memcpy(lane, &v, sizeof lane);
    return lanes_sum(lane);
}

static inline __attribute__((always_inline)) void tile_v2(const struct call *c, int m0, int n0, const int mr,
                                                          const int nr) {
    const int K = c->K;
    const float *x = c->x + (long long)m0 * K;
    const signed char *w = c->w + (long long)n0 * K;
    f16v acc[XR][WR] = {{{0}}};
    float tail[XR][WR] = {{0}};
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        f16v wv[WR];
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) {
            if ((k & 63) == 0) __builtin_prefetch(w + (long long)(j + PF_TILES * WR) * K + k);
            wv[j] = widen16(w + (long long)j * K + k);
        }
#pragma GCC unroll 4
        for (int i = 0; i < mr; ++i) {
            const f16v xv = load16(x + (long long)i * K + k);
#pragma GCC unroll 4
            for (int j = 0; j < nr; ++j) acc[i][j] += xv * wv[j];
        }
    }
    for (; k < K; ++k)
#pragma GCC unroll 4
        for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < nr; ++j) tail[i][j] += x[(long long)i * K + k] * (float)w[(long long)j * K + k];
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j)
            c->y[(long long)(m0 + i) * c->N + n0 + j] = (hsum16(acc[i][j]) + tail[i][j]) * c->scale[n0 + j]
                                                       + bias_of(c, n0 + j);
}

TILE_ROWS(tile_v2, XR)

/* ---- the activations as int8 digits (v3: one, v4: two) ------------------------------------
 * Per row: sx = max|x| / 127, hi = round(x / sx) ∈ [−127, 127] and, for v4, lo = round(254 ·
 * (x / sx − hi)) ∈ [−127, 127] (the remainder is within ±0.5). Σ hi and Σ lo for the offset. */
static void digits(const float *x, int M, int K, long long kp, signed char *hi, signed char *lo, float *sx,
                   int *sum_hi, int *sum_lo) {
    for (int m = 0; m < M; ++m) {
        const float *xm = x + (long long)m * K;
        signed char *h = hi + (long long)m * kp, *l = lo ? lo + (long long)m * kp : NULL;
        float peak = 0.0f;
        for (int k = 0; k < K; ++k) peak = fabsf(xm[k]) > peak ? fabsf(xm[k]) : peak;
        const float s = peak > 0.0f ? peak / 127.0f : 1.0f, inv = 1.0f / s;
        int total_hi = 0, total_lo = 0;
        for (int k = 0; k < K; ++k) {
            const float scaled = xm[k] * inv;
            float d = nearbyintf(scaled);
            d = d > 127.0f ? 127.0f : d < -127.0f ? -127.0f : d;
            h[k] = (signed char)d;
            total_hi += (int)d;
            if (l) {
                float e = nearbyintf((scaled - d) * 254.0f);
                e = e > 127.0f ? 127.0f : e < -127.0f ? -127.0f : e;
                l[k] = (signed char)e;
                total_lo += (int)e;
            }
        }
        memset(h + K, 0, (size_t)(kp - K));
        if (l) memset(l + K, 0, (size_t)(kp - K));
        sx[m] = s;
        sum_hi[m] = total_hi;
        if (sum_lo) sum_lo[m] = total_lo;
    }
}

/* The sums are exact in int32: |Σ| ≤ K·127·127 (v3 portable), or K·255·127 with the offset
 * (K < 66,000). */
#if HAVE_VNNI
/* the weights of row j at k, plus 128 as unsigned bytes; the last step reads only the row's
 * remaining bytes (a masked load cannot fault past the end): the missing ones read 0, flipped
 * to 128, and multiply a zero-padded digit */
static inline __m512i weights_u8(const signed char *w, long long K, int j, int k, __mmask64 mask) {
    __builtin_prefetch(w + (j + PF_TILES * WR) * K + k);
    return _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, w + j * K + k), _mm512_set1_epi8((char)0x80));
}

static inline __mmask64 remaining(int K, int k) { return K - k >= 64 ? ~0ULL : (1ULL << (K - k)) - 1; }
#endif

#if HAVE_VNNI
static inline __attribute__((always_inline)) void tile_v3(const struct call *c, int m0, int n0, const int mr,
                                                          const int nr) {
    const int K = c->K;
    const signed char *w = c->w + (long long)n0 * K;
    __m512i acc[XR][WR];
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int k = 0; k < K; k += 64) {
        const __mmask64 mask = remaining(K, k);
        __m512i wv[WR];
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) wv[j] = weights_u8(w, K, j, k, mask);
#pragma GCC unroll 4
        for (int i = 0; i < mr; ++i) {
            const __m512i xv = _mm512_loadu_si512(c->hi + (long long)(m0 + i) * c->kp + k);
#pragma GCC unroll 4
            for (int j = 0; j < nr; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], wv[j], xv);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) {
            const int total = _mm512_reduce_add_epi32(acc[i][j]) - 128 * c->sum_hi[m0 + i];
            c->y[(long long)(m0 + i) * c->N + n0 + j] = (float)total * (c->sx[m0 + i] * c->scale[n0 + j])
                                                       + bias_of(c, n0 + j);
        }
}

static inline __attribute__((always_inline)) void tile_v4(const struct call *c, int m0, int n0, const int mr,
                                                          const int nr) {
    const int K = c->K;
    const signed char *w = c->w + (long long)n0 * K;
    __m512i acc_hi[XR][WR], acc_lo[XR][WR];  /* (only [2][4] used: 16 registers) */
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) acc_hi[i][j] = acc_lo[i][j] = _mm512_setzero_si512();
    for (int k = 0; k < K; k += 64) {
        const __mmask64 mask = remaining(K, k);
        __m512i wv[WR];
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) wv[j] = weights_u8(w, K, j, k, mask);
#pragma GCC unroll 4
        for (int i = 0; i < mr; ++i) {
            const long long at = (long long)(m0 + i) * c->kp + k;
            const __m512i hv = _mm512_loadu_si512(c->hi + at), lv = _mm512_loadu_si512(c->lo + at);
#pragma GCC unroll 4
            for (int j = 0; j < nr; ++j) {
                acc_hi[i][j] = _mm512_dpbusd_epi32(acc_hi[i][j], wv[j], hv);
                acc_lo[i][j] = _mm512_dpbusd_epi32(acc_lo[i][j], wv[j], lv);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < nr; ++j) {
            const int hi = _mm512_reduce_add_epi32(acc_hi[i][j]) - 128 * c->sum_hi[m0 + i];
            const int lo = _mm512_reduce_add_epi32(acc_lo[i][j]) - 128 * c->sum_lo[m0 + i];
            c->y[(long long)(m0 + i) * c->N + n0 + j] = ((float)hi + (float)lo * (1.0f / 254.0f))
                                                       * (c->sx[m0 + i] * c->scale[n0 + j]) + bias_of(c, n0 + j);
        }
}
#else
/* the portable road: the same integer sums, one output at a time */
static inline int dot_int8(const signed char *a, const signed char *b, int K) {
    int total = 0;
#pragma omp simd reduction(+ : total)
    for (int k = 0; k < K; ++k) total += (int)a[k] * (int)b[k];
    return total;
}

static inline void tile_v3(const struct call *c, int m0, int n0, const int mr, const int nr) {
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) {
            const int total = dot_int8(c->hi + (long long)(m0 + i) * c->kp, c->w + (long long)(n0 + j) * c->K, c->K);
            c->y[(long long)(m0 + i) * c->N + n0 + j] = (float)total * (c->sx[m0 + i] * c->scale[n0 + j])
                                                       + bias_of(c, n0 + j);
        }
}

static inline void tile_v4(const struct call *c, int m0, int n0, const int mr, const int nr) {
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) {
            const signed char *w = c->w + (long long)(n0 + j) * c->K;
            const int hi = dot_int8(c->hi + (long long)(m0 + i) * c->kp, w, c->K);
            const int lo = dot_int8(c->lo + (long long)(m0 + i) * c->kp, w, c->K);
            c->y[(long long)(m0 + i) * c->N + n0 + j] = ((float)hi + (float)lo * (1.0f / 254.0f))
                                                       * (c->sx[m0 + i] * c->scale[n0 + j]) + bias_of(c, n0 + j);
        }
}
#endif

TILE_ROWS(tile_v3, XR)
TILE_ROWS(tile_v4, XR / 2)

/* ---- v5: v4's sums, the weight rows read in memory order ----------------------------------
 * A tile's 4 rows are 4 streams read side by side; here each weight row is read from its first
 * byte to its last before the next, so the weights are one stream through memory, in address
 * order, and the prefetch runs PF_ROWS rows ahead of it. The arithmetic is v4's (the same integer
 * sums, so the same results bit for bit); what a row alone loses is independent sums, so each
 * digit keeps two, for alternate 64-byte steps, added at the end. Every activation row (two at
 * a time) takes the weight row while it is in L1. */
#define PF_ROWS 8
#if HAVE_VNNI
static inline __attribute__((always_inline)) void row_v5(const struct call *c, int m0, int n, const int mr) {
    const int K = c->K;
    const signed char *w = c->w + (long long)n * K, *ahead = w + (long long)PF_ROWS * K;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i hi[2][2], lo[2][2];  /* [activation row][even or odd step] */
#pragma GCC unroll 2
    for (int i = 0; i < mr; ++i) hi[i][0] = hi[i][1] = lo[i][0] = lo[i][1] = _mm512_setzero_si512();
    int k = 0;
    for (; k + 128 <= K; k += 128) {
        __builtin_prefetch(ahead + k);
        __builtin_prefetch(ahead + k + 64);
        const __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(w + k), flip);
        const __m512i w1 = _mm512_xor_si512(_mm512_loadu_si512(w + k + 64), flip);
#pragma GCC unroll 2
        for (int i = 0; i < mr; ++i) {
            const long long at = (long long)(m0 + i) * c->kp + k;
            hi[i][0] = _mm512_dpbusd_epi32(hi[i][0], w0, _mm512_loadu_si512(c->hi + at));
            lo[i][0] = _mm512_dpbusd_epi32(lo[i][0], w0, _mm512_loadu_si512(c->lo + at));
            hi[i][1] = _mm512_dpbusd_epi32(hi[i][1], w1, _mm512_loadu_si512(c->hi + at + 64));
            lo[i][1] = _mm512_dpbusd_epi32(lo[i][1], w1, _mm512_loadu_si512(c->lo + at + 64));
        }
    }
    for (; k < K; k += 64) {  /* at most one whole step and a partial one (see weights_u8) */
        __builtin_prefetch(ahead + k);
        const __m512i w0 = weights_u8(w, K, 0, k, remaining(K, k));
#pragma GCC unroll 2
        for (int i = 0; i < mr; ++i) {
            const long long at = (long long)(m0 + i) * c->kp + k;
            hi[i][0] = _mm512_dpbusd_epi32(hi[i][0], w0, _mm512_loadu_si512(c->hi + at));
            lo[i][0] = _mm512_dpbusd_epi32(lo[i][0], w0, _mm512_loadu_si512(c->lo + at));
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < mr; ++i) {
        const int h = _mm512_reduce_add_epi32(_mm512_add_epi32(hi[i][0], hi[i][1])) - 128 * c->sum_hi[m0 + i];
        const int l = _mm512_reduce_add_epi32(_mm512_add_epi32(lo[i][0], lo[i][1])) - 128 * c->sum_lo[m0 + i];
        c->y[(long long)(m0 + i) * c->N + n] = ((float)h + (float)l * (1.0f / 254.0f))
                                              * (c->sx[m0 + i] * c->scale[n]) + bias_of(c, n);
    }
}
#else
static inline void row_v5(const struct call *c, int m0, int n, const int mr) { tile_v4(c, m0, n, mr, 1); }
#endif

static void rows_v5(const struct call *c, int n0, int n1) {
    for (int n = n0; n < n1; ++n)
        for (int m0 = 0; m0 < c->M; m0 += 2) {
            if (c->M - m0 >= 2)
                row_v5(c, m0, n, 2);
            else
                row_v5(c, m0, n, 1);
        }
}

/* ---- the entry points ------------------------------------------------------------------- */
static void run(rows_fn rows, int digit_count, const float *x, const signed char *w, const float *scale,
                const float *bias, float *y, int M, int N, int K, int threads) {
    struct call c = {x, scale, bias, w, y, M, N, K, NULL, NULL, NULL, NULL, NULL, 0};
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  /* an empty sum: y = b */
        for (int m = 0; m < M; ++m)
            for (int n = 0; n < N; ++n) y[(long long)m * N + n] = bias_of(&c, n);
        return;
    }
    if (digit_count == 0) {
        over_rows(rows, &c, threads);
        return;
    }
    c.kp = ((long long)K + 63) / 64 * 64;
    signed char *hi = malloc((size_t)(M * c.kp)), *lo = digit_count > 1 ? malloc((size_t)(M * c.kp)) : NULL;
    float *sx = malloc(sizeof(float) * (size_t)M);
    int *sums = malloc(2 * sizeof(int) * (size_t)M);
    if (hi && sx && sums && (lo || digit_count == 1)) {
        digits(x, M, K, c.kp, hi, lo, sx, sums, digit_count > 1 ? sums + M : NULL);
        c.hi = hi, c.lo = lo, c.sx = sx, c.sum_hi = sums, c.sum_lo = sums + M;
        over_rows(rows, &c, threads);
    } else {  /* no memory for a few KB: the float road, which needs none */
        over_rows(tile_v2_rows, &c, threads);
    }
    free(hi), free(lo), free(sx), free(sums);
}

/* int8 weights, float activations: y (M×N) = x (M×K) · (scale ⊙ W)ᵀ + bias, W int8 (N×K) with
 * one float scale per output row, bias NULL for none; for decoding, M small (linear_int8.c). The
 * numbered versions teach; threads: 0 = all (a small layer runs on the calling thread) */
MINILLM_API
void linear_int8_v1_scalar(const float *x, const signed char *w, const float *scale, const float *bias, float *y,
                           int M, int N, int K, int threads) {
    run(rows_v1, 0, x, w, scale, bias, y, M, N, K, threads);
}

MINILLM_API
void linear_int8_v2_widened(const float *x, const signed char *w, const float *scale, const float *bias, float *y,
                            int M, int N, int K, int threads) {
    run(tile_v2_rows, 0, x, w, scale, bias, y, M, N, K, threads);
}

MINILLM_API
void linear_int8_v3_vnni(const float *x, const signed char *w, const float *scale, const float *bias, float *y,
                         int M, int N, int K, int threads) {
    run(tile_v3_rows, 1, x, w, scale, bias, y, M, N, K, threads);
}

MINILLM_API
void linear_int8_v4_two_digits(const float *x, const signed char *w, const float *scale, const float *bias,
                               float *y, int M, int N, int K, int threads) {
    run(tile_v4_rows, 2, x, w, scale, bias, y, M, N, K, threads);
}

MINILLM_API
void linear_int8_v5_row_order(const float *x, const signed char *w, const float *scale, const float *bias,
                              float *y, int M, int N, int K, int threads) {
    run(rows_v5, 2, x, w, scale, bias, y, M, N, K, threads);
}

/* The backend's: v5 for one or two activation rows (decoding, where the order in which the
 * weights stream from memory is what counts), v4's tiles for more (a prompt's rows, where the
 * arithmetic per weight byte grows and the tiles do it with fewer loads). Both give the same
 * results. Without vpdpbusd (a CPU without AVX512-VNNI) v3–v5 run their portable loop, many
 * times slower than the float32 GEMM: v2's widened float products instead. */
MINILLM_API
void linear_int8(const float *x, const signed char *w, const float *scale, const float *bias, float *y, int M, int N,
                 int K, int threads) {
    if (HAVE_VNNI)
        run(M <= 2 ? rows_v5 : tile_v4_rows, 2, x, w, scale, bias, y, M, N, K, threads);
    else
        run(tile_v2_rows, 0, x, w, scale, bias, y, M, N, K, threads);
}

/* 1 when v3–v5 run on vpdpbusd, 0 when on their portable loop */
MINILLM_API
int linear_int8_has_vnni(void) { return HAVE_VNNI; }

/* ---- what the memory delivers: a streaming read of n floats ------------------------------
 * Four independent vector sums (so the adds' latency never waits on memory's), each thread a
 * contiguous share. The result is returned so that the compiler cannot drop the reads. */
MINILLM_API
float stream_read(const float *x, long long n, int threads) {
    threads = team_threads(threads);
    float total = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        const int id = team_member(), size = team_size();
        const long long per = (n / 64 + size - 1) / size * 64;
        const long long begin = id * per < n ? id * per : n;
        const long long end = id == size - 1 || begin + per > n ? n : begin + per;
        f16v a = {0}, b = {0}, c = {0}, d = {0};
        long long i = begin;
        for (; i + 64 <= end; i += 64) {
            a += load16(x + i), b += load16(x + i + 16), c += load16(x + i + 32), d += load16(x + i + 48);
        }
        float rest = hsum16(a + b + c + d);
        for (; i < end; ++i) rest += x[i];
        total += rest;
    }
    return total;
}
