/* Attention v2: flash attention one query row at a time (attention.h lists the versions).
 *
 * v1 stored each head's T×T scores. Here each query row streams over its keys in blocks of
 * KEY_BLOCK with an online softmax (running max, running sum, running output, rescaled by
 * raise_peak when a block raises the max), so no T×T matrix is ever stored; causal rows
 * stop at their own position (queries are the last Tq of the Tk positions). The row's
 * log-sum-exp is saved for the backward.
 *
 * Vectorising: a dot product per (query, key) pair ends in a horizontal sum, which wastes
 * most of a 16-lane vector. So each key/value head's keys are first transposed (Kᵀ: D × Tk,
 * O(T·D) memory like K itself), and a block of scores s_j = Σ_c q_c Kᵀ[c][j] becomes D vector
 * multiply-adds running along j. exp is a polynomial (exp_poly) the compiler vectorises.
 * The output Σ_j p_j v_j is one multiply-add along D per key.
 *
 * Backward: recompute P = exp(S − lse). dQ by query rows (scores and dP = dO·Vᵀ vectorised
 * along keys), then dK and dV by keys (scores and dP vectorised along queries, using Qᵀ and
 * dOᵀ): a task is one key of one key/value head, and sums over every query head of the
 * group, so the threads never write the same output. */
#include <stdlib.h>
#include <string.h>
#include "attention.h"

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

/* out[z] (D × T) = head z (T × D, where the layout puts it) transposed, for each of n heads. */
static float *transpose_heads(const float *in, head_layout_t layout, int n, int t, int d) {
    float *out = malloc(sizeof(float) * ((size_t)n * t * d + 1));
#pragma omp parallel for collapse(2) schedule(static)
    for (long z = 0; z < n; ++z)
        for (int c = 0; c < d; ++c)
            for (int j = 0; j < t; ++j) out[(z * d + c) * t + j] = in[head_start(layout, z) + j * layout.ld + c];
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

MINILLM_API
void attention_v2_rows_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                               float *lse) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, offset = t_key - t_query;
    float *kT = transpose_heads(k, a->kv, a->n_kv, t_key, d);
#pragma omp parallel
    {
        float s[KEY_BLOCK];
#pragma omp for schedule(dynamic, 8)
        for (long row = 0; row < (long)a->n * t_query; ++row) {
            const long z = row / t_query, zk = kv_head(a, z);
            const int i = (int)(row % t_query), last = visible(i, offset, t_key, a->causal);
            const float *qi = q + head_start(a->q, z) + i * a->q.ld, *vz = v + head_start(a->kv, zk);
            float *acc = out + head_start(a->out, z) + i * a->out.ld;
            memset(acc, 0, sizeof(float) * d);
            float peak = -INFINITY, total = 0.0f;
            for (int j0 = 0; j0 < last; j0 += KEY_BLOCK) {
                const int count = last - j0 < KEY_BLOCK ? last - j0 : KEY_BLOCK;
                scores(qi, kT + zk * d * t_key, t_key, j0, count, d, a->scale, s);
                float block_peak = -INFINITY;
#pragma omp simd reduction(max : block_peak)
                for (int j = 0; j < count; ++j) block_peak = s[j] > block_peak ? s[j] : block_peak;
                const float correction = raise_peak(&peak, block_peak);  /* rescale what came before */
                total *= correction;
                for (int c = 0; c < d; ++c) acc[c] *= correction;
                float block_total = 0.0f;
#pragma omp simd reduction(+ : block_total)
                for (int j = 0; j < count; ++j) {
                    s[j] = exp_poly(s[j] - peak);
                    block_total += s[j];
                }
                total += block_total;
                for (int j = 0; j < count; ++j) axpy(s[j], vz + (long)(j0 + j) * a->kv.ld, acc, d);
            }
            for (int c = 0; c < d; ++c) acc[c] /= total;
            lse[row] = peak + logf(total);
        }
    }
    free(kT);
}

MINILLM_API
void attention_v2_rows_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                float *dv) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, offset = t_key - t_query, group = group_size(a);
    const float scale = a->scale;
    float *row_dot = malloc(sizeof(float) * ((size_t)a->n * t_query + 1));  /* rowsum(dO ⊙ O) */
#pragma omp parallel for
    for (long row = 0; row < (long)a->n * t_query; ++row) {
        const long long at = head_start(a->out, row / t_query) + row % t_query * a->out.ld;
        row_dot[row] = dot(dout + at, out + at, d);
    }
    float *kT = transpose_heads(k, a->kv, a->n_kv, t_key, d), *vT = transpose_heads(v, a->kv, a->n_kv, t_key, d);

#pragma omp parallel
    {
        float s[KEY_BLOCK], dp[KEY_BLOCK];
#pragma omp for schedule(dynamic, 8)
        for (long row = 0; row < (long)a->n * t_query; ++row) {
            const long z = row / t_query, zk = kv_head(a, z);
            const int i = (int)(row % t_query), last = visible(i, offset, t_key, a->causal);
            const float *kz = k + head_start(a->kv, zk);
            const float *qi = q + head_start(a->q, z) + i * a->q.ld, *doi = dout + head_start(a->out, z) + i * a->out.ld;
            float *dqi = dq + head_start(a->q, z) + i * a->q.ld;
            memset(dqi, 0, sizeof(float) * d);
            for (int j0 = 0; j0 < last; j0 += KEY_BLOCK) {
                const int count = last - j0 < KEY_BLOCK ? last - j0 : KEY_BLOCK;
                scores(qi, kT + zk * d * t_key, t_key, j0, count, d, scale, s);
                scores(doi, vT + zk * d * t_key, t_key, j0, count, d, 1.0f, dp);
#pragma omp simd
                for (int j = 0; j < count; ++j) s[j] = exp_poly(s[j] - lse[row]) * (dp[j] - row_dot[row]) * scale;
                for (int j = 0; j < count; ++j) axpy(s[j], kz + (long)(j0 + j) * a->kv.ld, dqi, d);
            }
        }
    }
    free(kT);
    free(vT);

    float *qT = transpose_heads(q, a->q, a->n, t_query, d), *doT = transpose_heads(dout, a->out, a->n, t_query, d);
#pragma omp parallel
    {
        float s[KEY_BLOCK], dp[KEY_BLOCK];
#pragma omp for schedule(dynamic, 8)
        for (long key = 0; key < (long)a->n_kv * t_key; ++key) {
            const long zk = key / t_key;
            const int j = (int)(key % t_key);
            const int first = a->causal ? (j - offset > 0 ? j - offset : 0) : 0;
            const float *kj = k + head_start(a->kv, zk) + j * a->kv.ld, *vj = v + head_start(a->kv, zk) + j * a->kv.ld;
            float *dkj = dk + head_start(a->kv, zk) + j * a->kv.ld, *dvj = dv + head_start(a->kv, zk) + j * a->kv.ld;
            memset(dkj, 0, sizeof(float) * d);
            memset(dvj, 0, sizeof(float) * d);
            for (long z = zk * group; z < (zk + 1) * group; ++z) {  /* every query head that reads this key */
                const float *qz = q + head_start(a->q, z), *doz = dout + head_start(a->out, z);
                const float *lse_z = lse + z * t_query, *dot_z = row_dot + z * t_query;
                for (int i0 = first; i0 < t_query; i0 += KEY_BLOCK) {
                    const int count = t_query - i0 < KEY_BLOCK ? t_query - i0 : KEY_BLOCK;
                    scores(kj, qT + z * d * t_query, t_query, i0, count, d, scale, s);
                    scores(vj, doT + z * d * t_query, t_query, i0, count, d, 1.0f, dp);
#pragma omp simd
                    for (int r = 0; r < count; ++r) {
                        s[r] = exp_poly(s[r] - lse_z[i0 + r]);                        /* p */
                        dp[r] = s[r] * (dp[r] - dot_z[i0 + r]) * scale;               /* ds */
                    }
                    for (int r = 0; r < count; ++r) {
                        axpy(s[r], doz + (long)(i0 + r) * a->out.ld, dvj, d);
                        axpy(dp[r], qz + (long)(i0 + r) * a->q.ld, dkj, d);
                    }
                }
            }
        }
    }
    free(qT);
    free(doT);
    free(row_dot);
}
