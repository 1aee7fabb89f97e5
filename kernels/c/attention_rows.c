/* Attention v1: flash attention one query row at a time, for (N, T, D) float32 tensors
 * (N = batch·heads). attention.c (v2) replaced it with tiles that run on the GEMM
 * micro-kernel; this version stays as the step before, timed against it in the benchmarks.
 *
 * Forward: each query row streams over its keys in blocks of KEY_BLOCK with an online
 * softmax (running max, running sum, running output), so no T×T matrix is ever stored;
 * causal rows stop at their own position (queries are the last Tq of the Tk positions).
 * The row's log-sum-exp is saved for the backward.
 *
 * Vectorising: a dot product per (query, key) pair ends in a horizontal sum, which wastes
 * most of a 16-lane vector. So each head's keys are first transposed (Kᵀ: D × Tk, O(T·D)
 * memory like K itself), and a block of scores s_j = Σ_c q_c Kᵀ[c][j] becomes D vector
 * multiply-adds running along j. exp is a polynomial (exp_poly) the compiler vectorises.
 * The output Σ_j p_j v_j is one multiply-add along D per key.
 *
 * Backward: recompute P = exp(S − lse). dQ by rows (scores and dP = dO·Vᵀ vectorised
 * along keys), then dK and dV by keys (scores and dP vectorised along queries, using
 * Qᵀ and dOᵀ), so the threads never write the same output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minillm_kernels.h"
#include "exp_poly.h"

#define KEY_BLOCK 256

static inline float dot(const float *restrict a, const float *restrict b, int d) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int c = 0; c < d; ++c) acc += a[c] * b[c];
    return acc;
}

static inline void axpy(float alpha, const float *restrict x, float *restrict y, int d) {
#pragma omp simd
    for (int c = 0; c < d; ++c) y[c] += alpha * x[c];
}

/* out[z] (D × T) = in[z] (T × D) transposed, for every head. */
static float *transpose_heads(const float *in, int n, int t, int d) {
    float *out = malloc(sizeof(float) * (size_t)n * t * d);
#pragma omp parallel for collapse(2) schedule(static)
    for (long z = 0; z < n; ++z)
        for (int c = 0; c < d; ++c)
            for (int j = 0; j < t; ++j) out[(z * d + c) * t + j] = in[(z * t + j) * d + c];
    return out;
}

/* s[j] = scale · Σ_c row[c] · colsT[c][first + j] for j < count (colsT is D × stride). */
static inline void scores(const float *restrict row, const float *restrict colsT, long stride, int first, int count,
                          int d, float scale, float *restrict s) {
    memset(s, 0, sizeof(float) * count);
    for (int c = 0; c < d; ++c) {
        const float rc = row[c] * scale;
        const float *col = colsT + c * stride + first;
#pragma omp simd
        for (int j = 0; j < count; ++j) s[j] += rc * col[j];
    }
}

/* v1, one query row at a time (attention_rows.c): the step before the tiles, kept to be timed */
MINILLM_API
void attention_rows_forward(const float *q, const float *k, const float *v, float *out, float *lse, int n, int t_query,
                       int t_key, int d, int causal, float scale) {
    const int offset = t_key - t_query;
    float *kT = transpose_heads(k, n, t_key, d);
#pragma omp parallel
    {
        float s[KEY_BLOCK];
#pragma omp for schedule(dynamic, 8)
        for (long row = 0; row < (long)n * t_query; ++row) {
            const long z = row / t_query;
            const int i = (int)(row % t_query);
            const int last = causal ? i + offset + 1 : t_key;
            const float *vz = v + z * t_key * d;
            float *acc = out + row * d;
            memset(acc, 0, sizeof(float) * d);
            float peak = -INFINITY, total = 0.0f;
            for (int j0 = 0; j0 < last; j0 += KEY_BLOCK) {
                const int count = last - j0 < KEY_BLOCK ? last - j0 : KEY_BLOCK;
                scores(q + row * d, kT + z * d * t_key, t_key, j0, count, d, scale, s);
                float block_peak = peak;
#pragma omp simd reduction(max : block_peak)
                for (int j = 0; j < count; ++j) block_peak = s[j] > block_peak ? s[j] : block_peak;
                const float correction = exp_poly(peak - block_peak);  /* rescale what came before */
                total *= correction;
                for (int c = 0; c < d; ++c) acc[c] *= correction;
                peak = block_peak;
                float block_total = 0.0f;
#pragma omp simd reduction(+ : block_total)
                for (int j = 0; j < count; ++j) {
                    s[j] = exp_poly(s[j] - peak);
                    block_total += s[j];
                }
                total += block_total;
                for (int j = 0; j < count; ++j) axpy(s[j], vz + (long)(j0 + j) * d, acc, d);
            }
            for (int c = 0; c < d; ++c) acc[c] /= total;
            lse[row] = peak + logf(total);
        }
    }
    free(kT);
}

MINILLM_API
void attention_rows_backward(const float *q, const float *k, const float *v, const float *out, const float *lse,
                        const float *dout, float *dq, float *dk, float *dv, int n, int t_query, int t_key, int d,
                        int causal, float scale) {
    const int offset = t_key - t_query;
    float *row_dot = malloc(sizeof(float) * (size_t)n * t_query);  /* rowsum(dO ⊙ O) */
#pragma omp parallel for
    for (long row = 0; row < (long)n * t_query; ++row) row_dot[row] = dot(dout + row * d, out + row * d, d);
    float *kT = transpose_heads(k, n, t_key, d), *vT = transpose_heads(v, n, t_key, d);

#pragma omp parallel
    {
        float s[KEY_BLOCK], dp[KEY_BLOCK];
#pragma omp for schedule(dynamic, 8)
        for (long row = 0; row < (long)n * t_query; ++row) {
            const long z = row / t_query;
            const int i = (int)(row % t_query);
            const int last = causal ? i + offset + 1 : t_key;
            const float *kz = k + z * t_key * d;
            float *dqi = dq + row * d;
            memset(dqi, 0, sizeof(float) * d);
            for (int j0 = 0; j0 < last; j0 += KEY_BLOCK) {
                const int count = last - j0 < KEY_BLOCK ? last - j0 : KEY_BLOCK;
                scores(q + row * d, kT + z * d * t_key, t_key, j0, count, d, scale, s);
                scores(dout + row * d, vT + z * d * t_key, t_key, j0, count, d, 1.0f, dp);
#pragma omp simd
                for (int j = 0; j < count; ++j) s[j] = exp_poly(s[j] - lse[row]) * (dp[j] - row_dot[row]) * scale;
                for (int j = 0; j < count; ++j) axpy(s[j], kz + (long)(j0 + j) * d, dqi, d);
            }
        }
    }
    free(kT);
    free(vT);

    float *qT = transpose_heads(q, n, t_query, d), *doT = transpose_heads(dout, n, t_query, d);
#pragma omp parallel
    {
        float s[KEY_BLOCK], dp[KEY_BLOCK];
#pragma omp for schedule(dynamic, 8)
        for (long key = 0; key < (long)n * t_key; ++key) {
            const long z = key / t_key;
            const int j = (int)(key % t_key);
            const int first = causal ? (j - offset > 0 ? j - offset : 0) : 0;
            const float *qz = q + z * t_query * d, *doz = dout + z * t_query * d;
            const float *lse_z = lse + z * t_query, *dot_z = row_dot + z * t_query;
            float *dkj = dk + key * d, *dvj = dv + key * d;
            memset(dkj, 0, sizeof(float) * d);
            memset(dvj, 0, sizeof(float) * d);
            for (int i0 = first; i0 < t_query; i0 += KEY_BLOCK) {
                const int count = t_query - i0 < KEY_BLOCK ? t_query - i0 : KEY_BLOCK;
                scores(k + key * d, qT + z * d * t_query, t_query, i0, count, d, scale, s);
                scores(v + key * d, doT + z * d * t_query, t_query, i0, count, d, 1.0f, dp);
#pragma omp simd
                for (int r = 0; r < count; ++r) {
                    s[r] = exp_poly(s[r] - lse_z[i0 + r]);                        /* p */
                    dp[r] = s[r] * (dp[r] - dot_z[i0 + r]) * scale;               /* ds */
                }
                for (int r = 0; r < count; ++r) {
                    axpy(s[r], doz + (long)(i0 + r) * d, dvj, d);
                    axpy(dp[r], qz + (long)(i0 + r) * d, dkj, d);
                }
            }
        }
    }
    free(qT);
    free(doT);
    free(row_dot);
}
