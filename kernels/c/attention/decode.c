/* Attention for decoding: a few new queries (t_query ≤ DECODE_ROWS) against a long KV cache.
 *
 * Generating one token with the cache is one query row per head against every cached key:
 * 2·T·D flops that read T·D keys and T·D values once — memory-bound, where the tile
 * kernel's packing and GEMM set-up (v3_tiles.c) cost more than the work itself. So here
 * each (head, query row) streams its keys in blocks of KEY_BLOCK: scores by dot products
 * (the horizontal sum is cheap next to the loads), the online softmax (raise_peak) with
 * the vectorised exp_poly, and Σ_j p_j v_j one multiply-add along D per key.
 *
 * A token's keys and values were last touched a whole pass over the weights ago, so they come
 * from memory, and one core walking them key by key waits on each row's lines in turn (a head's
 * rows are D floats: a few lines, too short for the hardware prefetcher to run ahead). So the
 * score loop asks for the key PREFETCH_KEYS rows ahead and for the value row it will need in
 * the weighted sum: the loads overlap the dot products (prefetching changes no result).
 *
 * The cache is preallocated (KVCache(capacity)), so its first T positions are a view whose
 * heads lie capacity·D apart: the layout (attention_t) says so, and the view is read where
 * it lies, with no copy of the cache per token. With grouped-query attention the cache holds
 * only the n_kv heads, and the query heads of a group read the same one. */
#include <string.h>
#include "attention.h"

#define KEY_BLOCK 256
#define PREFETCH_KEYS 4  /* rows ahead: a few lines each, enough in flight to cover the latency */

/* every cache line of the D-float row at p, for reading */
static inline void prefetch_row(const float *p, int d) {
    for (int c = 0; c < d; c += 16) __builtin_prefetch(p + c, 0, 3);
}

/* decoding: a few queries (t_query ≤ DECODE_ROWS) against a KV cache, forward only */
MINILLM_API
void attention_decode_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                              float *lse) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, causal = a->causal;
    const int offset = t_key - t_query;  /* the queries are the last t_query positions */
    const float scale = a->scale;
    /* (head, query) rows split over the team from 32 KB of keys on: the keys come from memory,
     * where one core waits on its misses alone, and the team is awake from the GEMM before */
#pragma omp parallel for schedule(dynamic, 1) if ((long long)a->n * t_key * d > 8192)
    for (long long row = 0; row < (long long)a->n * t_query; ++row) {
        const long long z = row / t_query, at_kv = head_start(a->kv, kv_head(a, z));
        const int i = (int)(row % t_query), last = visible(i, offset, t_key, causal);
        const float *qr = q + head_start(a->q, z) + i * a->q.ld, *kz = k + at_kv, *vz = v + at_kv;
        float *acc = out + head_start(a->out, z) + i * a->out.ld;
        float s[KEY_BLOCK], peak = -INFINITY, total = 0.0f;
        memset(acc, 0, sizeof(float) * d);
        for (int j0 = 0; j0 < last; j0 += KEY_BLOCK) {
            const int count = last - j0 < KEY_BLOCK ? last - j0 : KEY_BLOCK;
            float block_peak = -INFINITY;
            for (int j = 0; j < count; ++j) {
                const float *kj = kz + (long long)(j0 + j) * a->kv.ld;
                if (j0 + j + PREFETCH_KEYS < last) prefetch_row(kj + PREFETCH_KEYS * a->kv.ld, d);
                prefetch_row(vz + (long long)(j0 + j) * a->kv.ld, d);
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < d; ++c) dot += qr[c] * kj[c];
                s[j] = dot * scale;
                block_peak = s[j] > block_peak ? s[j] : block_peak;
            }
            const float correction = raise_peak(&peak, block_peak);  /* rescale what came before */
            float block_total = 0.0f;
#pragma omp simd reduction(+ : block_total)
            for (int j = 0; j < count; ++j) {
                s[j] = exp_poly(s[j] - peak);
                block_total += s[j];
            }
            total = total * correction + block_total;
#pragma omp simd
            for (int c = 0; c < d; ++c) acc[c] *= correction;
            for (int j = 0; j < count; ++j) {
                const float *vj = vz + (long long)(j0 + j) * a->kv.ld, p = s[j];
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
