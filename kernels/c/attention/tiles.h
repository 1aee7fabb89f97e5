/* The pieces of the tiled flash attention that its versions share (v3_tiles.c, v4_rotary.c):
 * the tile sizes, how heads go to threads, the masks of the causal diagonal, the transposes of
 * K and V, and the work of one query tile forward (forward_tile) and backward (backward_tile).
 * A version decides where the tile's operands come from (read where they lie in v3, turned by
 * RoPE into a thread's buffer in v4) and hands them over with their row strides. */
#ifndef MINILLM_ATTENTION_TILES_H
#define MINILLM_ATTENTION_TILES_H
#include <math.h>
#include <string.h>
#include "attention.h"
#include "team.h"
#include "lanes.h"
#include "sgemm_block.h"

#define QB 128  /* query rows per tile (at most; see tile_rows) */
#define KB 256  /* keys per block */

/* Query rows per tile. Causal tiles skip the key blocks above the diagonal, but inside the
 * diagonal tile the products still compute the whole square and the mask throws half of it
 * away. When the sequence is one or two tiles long that half is most of the work, so short
 * sequences take 32-row tiles: at T = 64 the products shrink by a quarter (32×32 + 32×64
 * scores instead of 64×64). Smaller tiles lose again, to the GEMM's set-up per call. Long
 * sequences take tall tiles: each key block is packed for the tile's product once, so taller
 * tiles pack less per flop, and the diagonal's wasted half is a small part of many tiles.
 * Between them, and for the tall tiles too, whole slivers of the micro-kernel: 48 and 120 rows
 * are 4 and 10 slivers of 12 rows (AVX-512's MR; 5 × 6 and 20 × 6 on AVX2), where 32, 64 and
 * 128 each end in a sliver padded with zero rows. (`python -m benchmarks --op attention`
 * times the kernel at these shapes.) */
static inline int tile_rows(int t_query) {
    return t_query <= 64 ? 32 : t_query < 1024 ? 48 : 120;
}

/* How many neighbouring heads one thread takes at a time (each chunk goes to the threads in
 * turn: schedule(static, chunk)).
 *
 * 1. One head at a time, dynamically: neighbouring heads of a sequence sit side by side in the
 *    same rows (the layout of a (B, T, 3C) projection: with C = 128 and 4 heads, 32 floats each), and an array from
 *    malloc is 16-byte aligned, not 64, so two neighbours share a cache line at every row
 *    they meet in. Neighbours went to different cores, and every accumulation into dQ, dK, dV
 *    (and every store of the output) pulled the shared lines back and forth between them.
 * 2. Groups of heads that the lines cannot straddle, dynamically: all of a sequence's heads
 *    when there are enough sequences to keep every core busy (two groups per thread), else
 *    the largest divisor of `heads` that leaves that many groups. The backward, which
 *    accumulates into dQ, dK and dV, gains the most.
 * 3. When the heads divide evenly among the threads, one contiguous run of n/threads heads
 *    each. Every head costs the same, so the split is still even, and a thread's heads are
 *    those of the sequences whose rows the kernels before (layer norm, the residual add, the
 *    GEMMs' own rows) cut the same way and left in that core's cache; dynamically, about half
 *    of them had gone to the other core. That matters for short sequences, where the
 *    kernel moves more bytes than it computes; a compute-bound one (T = 128 and more) is
 *    unchanged. */
static inline int heads_per_task(int n, int heads) {
    const int threads = team_threads(0);
    if (n % threads == 0)
        return n / threads;
    int group = heads;
    while (group > 1 && (heads % group != 0 || n / group < 2 * threads)) --group;
    return group;
}

/* How many of the block's `cols` keys from j0 on row i may see. (A first version tested every
 * key, `j < last ? … : 0`, with one running sum: gcc split it into a vector part and a scalar
 * tail whose additions of 0 (kept, for the sign of −0) waited on each other. The next stopped
 * the loops at the last visible key, which left a scalar tail of its own. The loops now test
 * every key again, but in whole vectors with one partial sum per lane: see LANES.) */
static inline int live_keys(int i, int j0, int cols, int offset, int t_key, int causal) {
    const int last = visible(i, offset, t_key, causal) - j0;
    return last < 0 ? 0 : last < cols ? last : cols;
}

/* out (d × t, rows t apart) = the head's t rows of d values (rows ld apart), transposed.
 *
 * Why: S = Q·Kᵀ and dP = dO·Vᵀ take Kᵀ and Vᵀ as their B. Handed over as strides, every
 * tile's GEMM packed them by gathering one float per key row (perf showed pack_b high in
 * base GPT's attention), and each key block was gathered again for every query tile
 * that sees it (at T = 128 with 32-row tiles, 320 key rows gathered for 128 keys). Transposed
 * once per head, the packing copies contiguous rows (memcpy). Cache arithmetic: 16 key rows
 * of d = 64 floats are 4 KB, read once into L1 while the 16-float pieces of each out row are
 * written. */
#define TRANSPOSE_ROWS 16

static inline void transpose_head(const float *in, long ld, int t, int d, float *out) {
    for (int j0 = 0; j0 < t; j0 += TRANSPOSE_ROWS) {
        const int j1 = j0 + TRANSPOSE_ROWS < t ? j0 + TRANSPOSE_ROWS : t;
        for (int c = 0; c < d; ++c)
            for (int j = j0; j < j1; ++j) out[(long)c * t + j] = in[j * ld + c];
    }
}

/* Zero `rows` rows of d floats, ld apart: a head's gradient before its tiles accumulate into it. */
static inline void zero_rows(float *x, long ld, int rows, int d) {
    for (int t = 0; t < rows; ++t) memset(x + t * ld, 0, sizeof(float) * d);
}

/* The row loops below run over whole vectors of LANES floats (lanes.h), the keys past a row's
 * last visible one selected away (−∞ before the exponential, 0 after), instead of stopping at
 * that key. Stopping left a scalar tail of up to 15 keys a row, each with a scalar exp, and a
 * reduction clause made GCC add a row's 16 partial sums one by one through the stack (perf
 * found the short rows of nanoGPT's recipe, T = 64, spending their time there). A row of the
 * score tile has KB floats of room, a multiple of LANES, so the whole vectors never leave it. */
static inline int whole_vectors(int cols) {
    return (cols + LANES - 1) / LANES * LANES;
}

/* P = exp(scale · S − shift_row) for the tile's rows, zero past each row's last visible key. */
static inline void exp_rows(float *s, int rows, int cols, float scale, const float *shift, int i0, int j0, int offset,
                     int t_key, int causal) {
    const int width = whole_vectors(cols);
    for (int r = 0; r < rows; ++r) {
        float *row = s + (long)r * KB;
        const float m = shift[r];
        const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
#pragma omp simd
        for (int j = 0; j < width; ++j) row[j] = j < live ? exp_poly(row[j] * scale - m) : 0.0f;
    }
}


/* Where one query tile's operands lie. The tile is `rows` query rows from row i0 of a query
 * head; q, out, dout, dq point at its first row, each with its own row stride. k (row j of the
 * key/value head at k + j·ld_k) feeds dQ += dS·K; kt and vt are the head's Kᵀ and Vᵀ (d × t_key,
 * transpose_head); v, dk and dv are the head's rows, ld_kv apart; lse is the head's row of
 * log-sum-exps (the backward reads it). */
typedef struct {
    const float *q, *k, *kt, *v, *vt, *out, *dout, *lse;
    float *o, *dq, *dk, *dv;
    long ld_q, ld_k, ld_kv, ld_out, ld_dq;
    int rows, i0;
} tile_t;

/* The forward of one tile: S = scale · Q·Kᵀ block by block, the online softmax, O (+)= P·V,
 * then O divided by each row's total and the row's log-sum-exp saved in lse (the head's row of
 * them). s is the thread's QB × KB score tile. */
static inline void forward_tile(const attention_t *a, const tile_t *w, float *s, float *lse) {
    const int t_key = a->t_key, d = a->d, causal = a->causal, rows = w->rows, i0 = w->i0;
    const int offset = t_key - a->t_query;
    const float scale = a->scale;
    float peak[QB], total[QB];
    for (int r = 0; r < rows; ++r) peak[r] = -INFINITY, total[r] = 0.0f;
    const int keys = visible(i0 + rows - 1, offset, t_key, causal);
    for (int j0 = 0; j0 < keys; j0 += KB) {
        const int cols = keys - j0 < KB ? keys - j0 : KB;
        sgemm_block(w->q, w->kt + j0, s, rows, cols, d, w->ld_q, 1, t_key, 1, KB, 0, 1);  /* Q·Kᵀ */
        const int width = whole_vectors(cols);
        for (int r = 0; r < rows; ++r) {
            float *row = s + (long)r * KB, lane[LANES];
            const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
            for (int l = 0; l < LANES; ++l) lane[l] = -INFINITY;
            for (int j = 0; j < width; j += LANES)
#pragma omp simd
                for (int l = 0; l < LANES; ++l) {
                    const float x = j + l < live ? row[j + l] * scale : -INFINITY;
                    row[j + l] = x;
                    lane[l] = x > lane[l] ? x : lane[l];
                }
            const float correction = raise_peak(&peak[r], lanes_max(lane)), new_peak = peak[r];
            if (j0 > 0)
                for (int c = 0; c < d; ++c) w->o[r * w->ld_out + c] *= correction;
            for (int l = 0; l < LANES; ++l) lane[l] = 0.0f;
            for (int j = 0; j < width; j += LANES)
#pragma omp simd
                for (int l = 0; l < LANES; ++l) {
                    const float e = j + l < live ? exp_poly(row[j + l] - new_peak) : 0.0f;
                    row[j + l] = e;
                    lane[l] += e;
                }
            const float block_total = lanes_sum(lane);
            total[r] = total[r] * correction + block_total;
        }
        sgemm_block(s, w->v + j0 * w->ld_kv, w->o, rows, d, cols, KB, 1, w->ld_kv, 1, w->ld_out, j0 > 0, 1);  /* (+)= P·V */
    }
    for (int r = 0; r < rows; ++r) {
        const float inv = 1.0f / total[r];
        for (int c = 0; c < d; ++c) w->o[r * w->ld_out + c] *= inv;
        lse[i0 + r] = peak[r] + logf(total[r]);
    }
}

/* The backward of one tile, P recomputed from the saved log-sum-exp: dV += Pᵀ·dO, dP = dO·Vᵀ,
 * dS = P ∘ (dP − rowsum(dO ∘ O)) · scale, dQ += dS·K, dK += dSᵀ·Q, block by block. p and ds
 * are the thread's QB × KB tiles. */
static inline void backward_tile(const attention_t *a, const tile_t *w, float *p, float *ds) {
    const int t_key = a->t_key, d = a->d, causal = a->causal, rows = w->rows, i0 = w->i0;
    const int offset = t_key - a->t_query;
    const float scale = a->scale;
    float row_dot[QB];  /* rowsum(dO ∘ O): the softmax's own term in dS */
    for (int r = 0; r < rows; ++r) {
        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
        for (int c = 0; c < d; ++c) acc += w->dout[r * w->ld_out + c] * w->out[r * w->ld_out + c];
        row_dot[r] = acc;
    }
    const int keys = visible(i0 + rows - 1, offset, t_key, causal);
    for (int j0 = 0; j0 < keys; j0 += KB) {
        const int cols = keys - j0 < KB ? keys - j0 : KB;
        sgemm_block(w->q, w->kt + j0, p, rows, cols, d, w->ld_q, 1, t_key, 1, KB, 0, 1);  /* Q·Kᵀ */
        exp_rows(p, rows, cols, scale, w->lse + i0, i0, j0, offset, t_key, causal);        /* P */
        sgemm_block(p, w->dout, w->dv + j0 * w->ld_kv, cols, d, rows, 1, KB, w->ld_out, 1, w->ld_kv, 1, 1);  /* dV += Pᵀ·dO */
        sgemm_block(w->dout, w->vt + j0, ds, rows, cols, d, w->ld_out, 1, t_key, 1, KB, 0, 1);  /* dP = dO·Vᵀ */
        for (int r = 0; r < rows; ++r) {
            float *dsr = ds + (long)r * KB;
            const float *pr = p + (long)r * KB;
            const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
            const int width = whole_vectors(cols);
#pragma omp simd
            for (int j = 0; j < width; ++j) dsr[j] = j < live ? pr[j] * (dsr[j] - row_dot[r]) * scale : 0.0f;
        }
        sgemm_block(ds, w->k + j0 * w->ld_k, w->dq, rows, d, cols, KB, 1, w->ld_k, 1, w->ld_dq, 1, 1);  /* dQ += dS·K */
        sgemm_block(ds, w->q, w->dk + j0 * w->ld_kv, cols, d, rows, 1, KB, w->ld_q, 1, w->ld_kv, 1, 1);  /* dK += dSᵀ·Q */
    }
}

#endif
