/* Attention v2: flash attention in tiles that run on the GEMM micro-kernel, for (N, T, D)
 * float32 tensors (N = batch·heads); the structure of PyTorch's CPU flash attention.
 *
 * v1 (attention_rows.c) took one query row at a time: every score cost a load of Kᵀ and a
 * load/store of the score row, every output row an axpy per key. That is matrix-vector
 * work, bound by the loads, and it reached a tenth of the GEMM's rate. Here a tile of QB
 * query rows meets a block of KB keys, and both products of the tile are matrix-matrix:
 *
 *   S = scale · Q_tile · K_blockᵀ   (QB × KB)         O_tile += P · V_block   (QB × D)
 *
 * each one sgemm_block call (packing, register-blocked micro-kernel; transposes are strides).
 * Between them an online softmax, vectorised along the key block: the running row maximum
 * m and sum l are rescaled by e^(m_old − m_new) when a block raises the maximum, so no
 * T×T matrix is ever stored: memory is O(T·D) plus one QB×KB tile per thread
 * (64 × 256 × 4 B = 64 KB, in L2). Causal tiles stop at the diagonal: key blocks wholly
 * above it are never computed; the one that straddles it is masked.
 *
 * Backward, one pass per head (each thread owns whole heads, so dK and dV accumulate with
 * no races and no atomics). For each tile, with P recomputed from the saved log-sum-exp:
 *
 *   P  = exp(S − lse)          dV_block += Pᵀ · dO_tile     dP = dO_tile · V_blockᵀ
 *   dS = P ∘ (dP − rowsum(dO ∘ O)) · scale
 *   dQ_tile += dS · K_block    dK_block += dSᵀ · Q_tile
 *
 * five GEMMs per tile, as FlashAttention-2 and PyTorch's CPU kernel do it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minillm_kernels.h"
#include "exp_poly.h"
#include "sgemm_block.h"

#define QB 64   /* query rows per tile */
#define KB 256  /* keys per block */

/* The last key (exclusive) that query row i may see: queries are the last t_query of the
 * t_key positions, so row i sees keys 0 … i + offset. */
static inline int visible(int i, int offset, int t_key, int causal) {
    return causal ? (i + offset + 1 < t_key ? i + offset + 1 : t_key) : t_key;
}

/* How many of the block's `cols` keys from j0 on row i may see. The loops stop there rather
 * than test every key: a loop of `j < last ? … : 0` with a running sum was split by gcc into
 * a vector part and a scalar tail whose additions of 0 (kept, for the sign of −0) wait on each
 * other — with T = 64 and causal, the tail was half of every row and a quarter of the forward. */
static inline int live_keys(int i, int j0, int cols, int offset, int t_key, int causal) {
    const int last = visible(i, offset, t_key, causal) - j0;
    return last < 0 ? 0 : last < cols ? last : cols;
}

/* P = exp(S − shift_row) for the tile's rows, zero past each row's last visible key. */
static void exp_rows(float *s, int rows, int cols, const float *shift, int i0, int j0, int offset, int t_key,
                     int causal) {
    for (int r = 0; r < rows; ++r) {
        float *row = s + (long)r * KB;
        const float m = shift[r];
        const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
#pragma omp simd
        for (int j = 0; j < live; ++j) row[j] = exp_poly(row[j] - m);
        memset(row + live, 0, sizeof(float) * (cols - live));
    }
}

void attention_forward(const float *q, const float *k, const float *v, float *out, float *lse, int n, int t_query,
                       int t_key, int d, int causal, float scale) {
    const int offset = t_key - t_query, q_tiles = (t_query + QB - 1) / QB;
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * QB * KB);
        float peak[QB], total[QB];
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < (long)n * q_tiles; ++task) {
            const long z = task / q_tiles;
            const int i0 = (int)(task % q_tiles) * QB, rows = t_query - i0 < QB ? t_query - i0 : QB;
            const float *qz = q + (z * t_query + i0) * d, *kz = k + z * t_key * d, *vz = v + z * t_key * d;
            float *o = out + (z * t_query + i0) * d;
            for (int r = 0; r < rows; ++r) peak[r] = -INFINITY, total[r] = 0.0f;
            const int keys = visible(i0 + rows - 1, offset, t_key, causal);
            for (int j0 = 0; j0 < keys; j0 += KB) {
                const int cols = keys - j0 < KB ? keys - j0 : KB;
                sgemm_block(qz, kz + (long)j0 * d, s, rows, cols, d, d, 1, 1, d, KB, 0, 1);  /* Q·Kᵀ */
                for (int r = 0; r < rows; ++r) {
                    float *row = s + (long)r * KB;
                    const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
                    float block_peak = -INFINITY;
#pragma omp simd reduction(max : block_peak)
                    for (int j = 0; j < live; ++j) {
                        row[j] *= scale;
                        block_peak = row[j] > block_peak ? row[j] : block_peak;
                    }
                    const float new_peak = block_peak > peak[r] ? block_peak : peak[r];
                    const float correction = exp_poly(peak[r] - new_peak);  /* rescale what came before */
                    peak[r] = new_peak;
                    if (j0 > 0)
                        for (int c = 0; c < d; ++c) o[(long)r * d + c] *= correction;
                    float block_total = 0.0f;
#pragma omp simd reduction(+ : block_total)
                    for (int j = 0; j < live; ++j) {
                        row[j] = exp_poly(row[j] - new_peak);
                        block_total += row[j];
                    }
                    memset(row + live, 0, sizeof(float) * (cols - live));
                    total[r] = total[r] * correction + block_total;
                }
                sgemm_block(s, vz + (long)j0 * d, o, rows, d, cols, KB, 1, d, 1, d, j0 > 0, 1);  /* (+)= P·V */
            }
            for (int r = 0; r < rows; ++r) {
                const float inv = 1.0f / total[r];
                for (int c = 0; c < d; ++c) o[(long)r * d + c] *= inv;
                lse[z * t_query + i0 + r] = peak[r] + logf(total[r]);
            }
        }
        free(s);
    }
}

void attention_backward(const float *q, const float *k, const float *v, const float *out, const float *lse,
                        const float *dout, float *dq, float *dk, float *dv, int n, int t_query, int t_key, int d,
                        int causal, float scale) {
    const int offset = t_key - t_query;
    memset(dq, 0, sizeof(float) * (size_t)n * t_query * d);
    memset(dk, 0, sizeof(float) * (size_t)n * t_key * d);
    memset(dv, 0, sizeof(float) * (size_t)n * t_key * d);
#pragma omp parallel
    {
        float *p = malloc(sizeof(float) * QB * KB), *ds = malloc(sizeof(float) * QB * KB);
        float row_dot[QB];  /* rowsum(dO ∘ O): the softmax's own term in dS */
#pragma omp for schedule(dynamic, 1)
        for (long z = 0; z < n; ++z) {
            const float *qz = q + z * t_query * d, *kz = k + z * t_key * d, *vz = v + z * t_key * d;
            const float *oz = out + z * t_query * d, *doz = dout + z * t_query * d, *lz = lse + z * t_query;
            float *dqz = dq + z * t_query * d, *dkz = dk + z * t_key * d, *dvz = dv + z * t_key * d;
            for (int i0 = 0; i0 < t_query; i0 += QB) {
                const int rows = t_query - i0 < QB ? t_query - i0 : QB;
                for (int r = 0; r < rows; ++r) {
                    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int c = 0; c < d; ++c) acc += doz[(long)(i0 + r) * d + c] * oz[(long)(i0 + r) * d + c];
                    row_dot[r] = acc;
                }
                const int keys = visible(i0 + rows - 1, offset, t_key, causal);
                for (int j0 = 0; j0 < keys; j0 += KB) {
                    const int cols = keys - j0 < KB ? keys - j0 : KB;
                    const float *qt = qz + (long)i0 * d, *dot = doz + (long)i0 * d;
                    sgemm_block(qt, kz + (long)j0 * d, p, rows, cols, d, d, 1, 1, d, KB, 0, 1);      /* Q·Kᵀ */
                    for (int r = 0; r < rows; ++r) {
                        const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
#pragma omp simd
                        for (int j = 0; j < live; ++j) p[(long)r * KB + j] *= scale;
                    }
                    exp_rows(p, rows, cols, lz + i0, i0, j0, offset, t_key, causal);                /* P */
                    sgemm_block(p, dot, dvz + (long)j0 * d, cols, d, rows, 1, KB, d, 1, d, 1, 1);   /* dV += Pᵀ·dO */
                    sgemm_block(dot, vz + (long)j0 * d, ds, rows, cols, d, d, 1, 1, d, KB, 0, 1);   /* dP = dO·Vᵀ */
                    for (int r = 0; r < rows; ++r) {
                        float *dsr = ds + (long)r * KB;
                        const float *pr = p + (long)r * KB;
                        const int live = live_keys(i0 + r, j0, cols, offset, t_key, causal);
#pragma omp simd
                        for (int j = 0; j < live; ++j) dsr[j] = pr[j] * (dsr[j] - row_dot[r]) * scale;
                        memset(dsr + live, 0, sizeof(float) * (cols - live));
                    }
                    sgemm_block(ds, kz + (long)j0 * d, dqz + (long)i0 * d, rows, d, cols, KB, 1, d, 1, d, 1, 1);
                    sgemm_block(ds, qt, dkz + (long)j0 * d, cols, d, rows, 1, KB, d, 1, d, 1, 1);   /* dK += dSᵀ·Q */
                }
            }
        }
        free(p);
        free(ds);
    }
}
