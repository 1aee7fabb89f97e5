/* Attention for decoding: a few new queries (Tq ≤ 4) against a long KV cache.
 *
 * Generating one token with the cache is one query row per head against every cached key:
 * 2·T·D flops that read T·D keys and T·D values once — memory-bound, where the tile
 * kernel's packing and GEMM set-up (attention.c) cost more than the work itself. So here
 * each (head, query row) streams its keys in blocks of KEY_BLOCK: scores by dot products
 * (the horizontal sum is cheap next to the loads), the online softmax of attention.c with
 * the vectorised exp_poly, and Σ_j p_j v_j one multiply-add along D per key.
 *
 * The cache is preallocated (KVCache(capacity)), so the keys of head z start at
 * k + z·k_head_stride, not z·T·D: the view of the first T positions of a (heads, capacity,
 * D) buffer is read where it lies, with no copy of the cache per token. Rows within a head
 * are D apart as usual. Queries, out and lse are contiguous (N, Tq, D) / (N, Tq). */
#include <math.h>
#include <string.h>
#include "minillm_kernels.h"
#include "exp_poly.h"

#define KEY_BLOCK 256

/* decoding: Tq ≤ 4 queries against a cache whose heads lie k_head_stride / v_head_stride apart */
MINILLM_API
void attention_decode_forward(const float *q, const float *k, const float *v, float *out, float *lse, int n,
                              int t_query, int t_key, int d, long long k_head_stride, long long v_head_stride,
                              int causal, float scale) {
    const int offset = t_key - t_query;  /* the queries are the last t_query positions */
#pragma omp parallel for schedule(dynamic, 1) if ((long long)n * t_key * d > 65536)
    for (long long row = 0; row < (long long)n * t_query; ++row) {
        const long long z = row / t_query;
        const int i = (int)(row % t_query), last = causal ? i + offset + 1 : t_key;
        const float *qr = q + row * d, *kz = k + z * k_head_stride, *vz = v + z * v_head_stride;
        float *acc = out + row * d;
        float s[KEY_BLOCK], peak = -INFINITY, total = 0.0f;
        memset(acc, 0, sizeof(float) * d);
        for (int j0 = 0; j0 < last; j0 += KEY_BLOCK) {
            const int count = last - j0 < KEY_BLOCK ? last - j0 : KEY_BLOCK;
            float block_peak = peak;
            for (int j = 0; j < count; ++j) {
                const float *kj = kz + (long long)(j0 + j) * d;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < d; ++c) dot += qr[c] * kj[c];
                s[j] = dot * scale;
                block_peak = s[j] > block_peak ? s[j] : block_peak;
            }
            const float correction = exp_poly(peak - block_peak);  /* rescale what came before */
            float block_total = 0.0f;
#pragma omp simd reduction(+ : block_total)
            for (int j = 0; j < count; ++j) {
                s[j] = exp_poly(s[j] - block_peak);
                block_total += s[j];
            }
            total = total * correction + block_total;
            peak = block_peak;
#pragma omp simd
            for (int c = 0; c < d; ++c) acc[c] *= correction;
            for (int j = 0; j < count; ++j) {
                const float *vj = vz + (long long)(j0 + j) * d, p = s[j];
#pragma omp simd
                for (int c = 0; c < d; ++c) acc[c] += p * vj[c];
            }
        }
        const float inverse = 1.0f / total;
#pragma omp simd
        for (int c = 0; c < d; ++c) acc[c] *= inverse;
        lse[row] = peak + logf(total);
    }
}
