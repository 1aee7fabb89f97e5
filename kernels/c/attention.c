/* Flash attention on the CPU, for (N, T, D) float32 tensors (N = batch·heads).
 *
 * Forward: each query row streams over its keys with an online softmax (running max,
 * running sum, running output), so no T×T matrix is ever stored; causal rows stop at
 * their own position (queries are the last Tq of the Tk positions). The row's
 * log-sum-exp is saved for the backward.
 * Backward: recompute P = exp(S − lse) block by block. dQ is accumulated row by row;
 * dK and dV are accumulated key by key in a second sweep, so the threads (over rows,
 * then over keys) never write the same output. Dot products over D are contiguous and
 * vectorised by the compiler. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minillm_kernels.h"

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

void attention_forward(const float *q, const float *k, const float *v, float *out, float *lse, int n, int t_query,
                       int t_key, int d, int causal, float scale) {
    const int offset = t_key - t_query;
#pragma omp parallel for schedule(dynamic, 16)
    for (long row = 0; row < (long)n * t_query; ++row) {
        const long z = row / t_query;
        const int i = (int)(row % t_query);
        const int last = causal ? i + offset + 1 : t_key;
        const float *qi = q + row * d, *kz = k + z * t_key * d, *vz = v + z * t_key * d;
        float *acc = out + row * d;
        memset(acc, 0, sizeof(float) * d);
        float peak = -INFINITY, total = 0.0f;
        for (int j = 0; j < last; ++j) {
            const float s = dot(qi, kz + (long)j * d, d) * scale;
            if (s > peak) {  /* a new maximum: rescale what was gathered so far */
                const float correction = expf(peak - s);
                total *= correction;
                for (int c = 0; c < d; ++c) acc[c] *= correction;
                peak = s;
            }
            const float p = expf(s - peak);
            total += p;
            axpy(p, vz + (long)j * d, acc, d);
        }
        for (int c = 0; c < d; ++c) acc[c] /= total;
        lse[row] = peak + logf(total);
    }
}

void attention_backward(const float *q, const float *k, const float *v, const float *out, const float *lse,
                        const float *dout, float *dq, float *dk, float *dv, int n, int t_query, int t_key, int d,
                        int causal, float scale) {
    const int offset = t_key - t_query;
    float *row_dot = malloc(sizeof(float) * (size_t)n * t_query);  /* rowsum(dO ⊙ O) */
#pragma omp parallel for
    for (long row = 0; row < (long)n * t_query; ++row) row_dot[row] = dot(dout + row * d, out + row * d, d);

#pragma omp parallel for schedule(dynamic, 16)
    for (long row = 0; row < (long)n * t_query; ++row) {
        const long z = row / t_query;
        const int i = (int)(row % t_query);
        const int last = causal ? i + offset + 1 : t_key;
        const float *qi = q + row * d, *doi = dout + row * d;
        const float *kz = k + z * t_key * d, *vz = v + z * t_key * d;
        float *dqi = dq + row * d;
        memset(dqi, 0, sizeof(float) * d);
        for (int j = 0; j < last; ++j) {
            const float p = expf(dot(qi, kz + (long)j * d, d) * scale - lse[row]);
            const float ds = p * (dot(doi, vz + (long)j * d, d) - row_dot[row]) * scale;
            axpy(ds, kz + (long)j * d, dqi, d);
        }
    }

#pragma omp parallel for schedule(dynamic, 16)
    for (long key = 0; key < (long)n * t_key; ++key) {
        const long z = key / t_key;
        const int j = (int)(key % t_key);
        const int first = causal ? (j - offset > 0 ? j - offset : 0) : 0;
        const float *kj = k + key * d, *vj = v + key * d;
        const float *qz = q + z * t_query * d, *doz = dout + z * t_query * d;
        float *dkj = dk + key * d, *dvj = dv + key * d;
        memset(dkj, 0, sizeof(float) * d);
        memset(dvj, 0, sizeof(float) * d);
        for (int i = first; i < t_query; ++i) {
            const long row = z * t_query + i;
            const float p = expf(dot(qz + (long)i * d, kj, d) * scale - lse[row]);
            const float ds = p * (dot(doz + (long)i * d, vj, d) - row_dot[row]) * scale;
            axpy(p, doz + (long)i * d, dvj, d);
            axpy(ds, qz + (long)i * d, dkj, d);
        }
    }
    free(row_dot);
}
