/* Attention v3: flash attention in tiles that run on the GEMM micro-kernel; the structure of
 * PyTorch's CPU flash attention, and the production path (attention.h lists the versions).
 *
 * v2 (v2_rows.c) took one query row at a time: every score cost a load of Kᵀ and a
 * load/store of the score row, every output row an axpy per key. That is matrix-vector
 * work, bound by the loads. Here a tile of QB query rows meets a block of KB keys, and both
 * products of the tile are matrix-matrix:
 *
 *   S = scale · Q_tile · K_blockᵀ   (QB × KB)         O_tile += P · V_block   (QB × D)
 *
 * each one sgemm_block call (packing, register-blocked micro-kernel; transposes are strides,
 * except Kᵀ and Vᵀ: transposed once per key/value head, see transpose_head).
 * Between them an online softmax (raise_peak), vectorised along the key block, so no T×T
 * matrix is ever stored: memory is O(T·D) plus one QB×KB tile per thread
 * (at most 128 × 256 × 4 B = 128 KB, in L2). Causal tiles stop at the diagonal: key blocks wholly
 * above it are never computed; the one that straddles it is masked.
 *
 * Backward, one pass per key/value head (each thread owns whole key/value heads and the query
 * heads of their groups, so dK and dV accumulate with no races and no atomics). For each tile,
 * with P recomputed from the saved log-sum-exp:
 *
 *   P  = exp(S − lse)          dV_block += Pᵀ · dO_tile     dP = dO_tile · V_blockᵀ
 *   dS = P ∘ (dP − rowsum(dO ∘ O)) · scale
 *   dQ_tile += dS · K_block    dK_block += dSᵀ · Q_tile
 *
 * five GEMMs per tile, as FlashAttention-2 and PyTorch's CPU kernel do it.
 *
 * Layout (attention_t): each tensor's heads where they lie, e.g. the q, k or v third of one
 * (B, T, 3C) projection (nanoGPT's c_attn) with rows 3C apart, and the output's heads side by
 * side in (B, T, C), ready for the output projection, so the reshapes and transposes around
 * attention copy nothing. Only the GEMMs see strides. Grouped-query attention: the query heads
 * of a group are neighbours (z / group), so a thread's consecutive tasks reuse one Kᵀ. */
#include <math.h>
#include <stdlib.h>
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
static int heads_per_task(int n, int heads) {
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
 * tile's GEMM packed them by gathering one float per key row (perf, base GPT's attention:
 * pack_b was 22 % of the time), and each key block was gathered again for every query tile
 * that sees it (at T = 128 with 32-row tiles, 320 key rows gathered for 128 keys). Transposed
 * once per head, the packing copies contiguous rows (memcpy). Cache arithmetic: 16 key rows
 * of d = 64 floats are 4 KB, read once into L1 while the 16-float pieces of each out row are
 * written. */
#define TRANSPOSE_ROWS 16

static void transpose_head(const float *in, long ld, int t, int d, float *out) {
    for (int j0 = 0; j0 < t; j0 += TRANSPOSE_ROWS) {
        const int j1 = j0 + TRANSPOSE_ROWS < t ? j0 + TRANSPOSE_ROWS : t;
        for (int c = 0; c < d; ++c)
            for (int j = j0; j < j1; ++j) out[(long)c * t + j] = in[j * ld + c];
    }
}

/* The row loops below run over whole vectors of LANES floats (lanes.h), the keys past a row's
 * last visible one selected away (−∞ before the exponential, 0 after), instead of stopping at
 * that key. Stopping left a scalar tail of up to 15 keys a row, each with a scalar exp, and a
 * reduction clause made GCC add a row's 16 partial sums one by one through the stack: perf put
 * half of the forward at nanoGPT's recipe (T = 64, 1 thread) in that row code. A row of the
 * score tile has KB floats of room, a multiple of LANES, so the whole vectors never leave it. */
static inline int whole_vectors(int cols) {
    return (cols + LANES - 1) / LANES * LANES;
}

/* P = exp(scale · S − shift_row) for the tile's rows, zero past each row's last visible key. */
static void exp_rows(float *s, int rows, int cols, float scale, const float *shift, int i0, int j0, int offset,
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

/* v3: tiles of query rows against blocks of keys, both products on the micro-kernel */
MINILLM_API
void attention_v3_tiles_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                                float *lse) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, causal = a->causal;
    const long ld_q = a->q.ld, ld_kv = a->kv.ld, ld_out = a->out.ld;
    const float scale = a->scale;
    const int offset = t_key - t_query, qb = tile_rows(t_query), q_tiles = (t_query + qb - 1) / qb;
    const int chunk = q_tiles > 0 ? heads_per_task(a->n, a->q.heads) * q_tiles : 1;  /* a head's tiles are consecutive tasks */
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * QB * KB), *kt = malloc(sizeof(float) * (size_t)d * t_key);
        long long kt_head = -1;  /* whose Kᵀ kt holds: a thread's tasks take a head's tiles, a group's heads, in turn */
        float peak[QB], total[QB];
#pragma omp for schedule(static, chunk)
        for (long task = 0; task < (long)a->n * q_tiles; ++task) {
            const long z = task / q_tiles;
            const long long zk = kv_head(a, z);
            const int i0 = (int)(task % q_tiles) * qb, rows = t_query - i0 < qb ? t_query - i0 : qb;
            const float *qz = q + head_start(a->q, z) + i0 * ld_q;
            const float *kz = k + head_start(a->kv, zk), *vz = v + head_start(a->kv, zk);
            float *o = out + head_start(a->out, z) + i0 * ld_out;
            if (kt_head != zk) {
                transpose_head(kz, ld_kv, t_key, d, kt);
                kt_head = zk;
            }
            for (int r = 0; r < rows; ++r) peak[r] = -INFINITY, total[r] = 0.0f;
            const int keys = visible(i0 + rows - 1, offset, t_key, causal);
            for (int j0 = 0; j0 < keys; j0 += KB) {
                const int cols = keys - j0 < KB ? keys - j0 : KB;
                sgemm_block(qz, kt + j0, s, rows, cols, d, ld_q, 1, t_key, 1, KB, 0, 1);  /* Q·Kᵀ */
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
                        for (int c = 0; c < d; ++c) o[r * ld_out + c] *= correction;
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
                sgemm_block(s, vz + j0 * ld_kv, o, rows, d, cols, KB, 1, ld_kv, 1, ld_out, j0 > 0, 1);  /* (+)= P·V */
            }
            for (int r = 0; r < rows; ++r) {
                const float inv = 1.0f / total[r];
                for (int c = 0; c < d; ++c) o[r * ld_out + c] *= inv;
                lse[z * t_query + i0 + r] = peak[r] + logf(total[r]);
            }
        }
        free(s);
        free(kt);
    }
}

MINILLM_API
void attention_v3_tiles_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                 const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                 float *dv) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, causal = a->causal, group = group_size(a);
    const long ld_q = a->q.ld, ld_kv = a->kv.ld, ld_out = a->out.ld;
    const float scale = a->scale;
    const int offset = t_key - t_query, qb = tile_rows(t_query), chunk = heads_per_task(a->n_kv, a->kv.heads);
#pragma omp parallel
    {
        float *p = malloc(sizeof(float) * QB * KB), *ds = malloc(sizeof(float) * QB * KB);
        float *kt = malloc(sizeof(float) * (size_t)d * t_key), *vt = malloc(sizeof(float) * (size_t)d * t_key);
        float row_dot[QB];  /* rowsum(dO ∘ O): the softmax's own term in dS */
#pragma omp for schedule(static, chunk)
        for (long zk = 0; zk < a->n_kv; ++zk) {
            const long long at_k = head_start(a->kv, zk);
            const float *kz = k + at_k, *vz = v + at_k;
            float *dkz = dk + at_k, *dvz = dv + at_k;
            transpose_head(kz, ld_kv, t_key, d, kt);
            transpose_head(vz, ld_kv, t_key, d, vt);
            for (int t = 0; t < t_key; ++t) {
                memset(dkz + t * ld_kv, 0, sizeof(float) * d);
                memset(dvz + t * ld_kv, 0, sizeof(float) * d);
            }
            for (long z = zk * group; z < (zk + 1) * group; ++z) {  /* the query heads that read this one */
                const long long at_q = head_start(a->q, z), at_o = head_start(a->out, z);
                const float *qz = q + at_q, *oz = out + at_o, *doz = dout + at_o, *lz = lse + z * t_query;
                float *dqz = dq + at_q;
                for (int t = 0; t < t_query; ++t) memset(dqz + t * ld_q, 0, sizeof(float) * d);
                for (int i0 = 0; i0 < t_query; i0 += qb) {
                    const int rows = t_query - i0 < qb ? t_query - i0 : qb;
                    for (int r = 0; r < rows; ++r) {
                        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                        for (int c = 0; c < d; ++c) acc += doz[(i0 + r) * ld_out + c] * oz[(i0 + r) * ld_out + c];
                        row_dot[r] = acc;
                    }
                    const int keys = visible(i0 + rows - 1, offset, t_key, causal);
                    for (int j0 = 0; j0 < keys; j0 += KB) {
                        const int cols = keys - j0 < KB ? keys - j0 : KB;
                        const float *qt = qz + i0 * ld_q, *dot = doz + i0 * ld_out;
                        sgemm_block(qt, kt + j0, p, rows, cols, d, ld_q, 1, t_key, 1, KB, 0, 1);  /* Q·Kᵀ */
                        exp_rows(p, rows, cols, scale, lz + i0, i0, j0, offset, t_key, causal);   /* P */
                        sgemm_block(p, dot, dvz + j0 * ld_kv, cols, d, rows, 1, KB, ld_out, 1, ld_kv, 1, 1);  /* dV += Pᵀ·dO */
                        sgemm_block(dot, vt + j0, ds, rows, cols, d, ld_out, 1, t_key, 1, KB, 0, 1);  /* dP = dO·Vᵀ */
                        for (int r = 0; r < rows; ++r) {
                            float *dsr = ds + (long)r * KB;
                            const float *pr = p + (long)r * KB;
                            const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
                            const int width = whole_vectors(cols);
#pragma omp simd
                            for (int j = 0; j < width; ++j) dsr[j] = j < live ? pr[j] * (dsr[j] - row_dot[r]) * scale : 0.0f;
                        }
                        sgemm_block(ds, kz + j0 * ld_kv, dqz + i0 * ld_q, rows, d, cols, KB, 1, ld_kv, 1, ld_q, 1, 1);  /* dQ += dS·K */
                        sgemm_block(ds, qt, dkz + j0 * ld_kv, cols, d, rows, 1, KB, ld_q, 1, ld_kv, 1, 1);  /* dK += dSᵀ·Q */
                    }
                }
            }
        }
        free(p);
        free(ds);
        free(kt);
        free(vt);
    }
}
