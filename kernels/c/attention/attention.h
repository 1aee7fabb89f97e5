/* Attention, softmax(scale · Q·Kᵀ) · V over many heads, in three complete versions and a
 * decoder, one file each. Every version computes the same forward (out and the row-wise
 * log-sum-exp lse) and backward (dQ, dK, dV) on its own and can be read top to bottom; each
 * adds one idea to the one before:
 *
 *  v1_naive.c  the textbook: per head, the T×T scores are stored, softmaxed row by row and
 *              multiplied by V; the backward stores P and dS as well. O(T²) memory per head,
 *              one head at a time on one core
 *  v2_rows.c   one query row at a time with an online softmax: the row streams over its keys
 *              in blocks, the running maximum and sum rescaled when a block raises the
 *              maximum (raise_peak), so no T×T matrix is stored; a row per task on every core,
 *              scores vectorised along the keys of a transposed Kᵀ
 *  v3_tiles.c  a tile of query rows meets a block of keys, and both products of the tile
 *              (Q·Kᵀ and P·V, five in the backward) run on the GEMM's micro-kernel: matrix-
 *              matrix work instead of v2's matrix-vector loads. The production path
 *  v4_rotary.c v3 with RoPE (Llama's rotary position embedding) turned inside the kernel: q and
 *              k are turned as each tile and each key/value head is loaded, dQ and dK turned
 *              back as they complete, so no turned copy of q and k, and no pass over the
 *              gradient, is left outside it. The production path for problems with the tables
 *  decode.c    a few new queries (generation) against a long KV cache: memory-bound, so a
 *              dot product per key and an axpy per value, no packing
 *
 * Every version takes the layout of its tensors as an attention_t (below): the
 * number of query heads n and key/value heads n_kv, and where each tensor's heads lie. So the
 * q, k and v thirds of one (B, T, 3C) projection, a KV cache's first T positions, or plain
 * (N, T, D) tensors are all read where they lie, and grouped-query attention (n_kv < n: query
 * head z reads key/value head z / (n / n_kv)) repeats no keys: every version supports it. In
 * the backward dK and dV of a key/value head are sums over its group of query heads, so each
 * thread owns a key/value head and all of its query heads: no two threads write the same row.
 * The price: the backward has B·n_kv tasks, so with fewer key/value heads than cores (one
 * sequence, multi-query attention) some cores wait.
 *
 * What the backend runs (attention.c): v4 for a problem with RoPE's tables, else decode.c for
 * t_query ≤ DECODE_ROWS and v3 otherwise. */
#ifndef MINILLM_ATTENTION_H
#define MINILLM_ATTENTION_H
#include <math.h>
#include <stddef.h>
#include "minillm_kernels.h"
#include "exp_poly.h"

#define DECODE_ROWS 4  /* at most this many queries go to decode.c */

/* Where one tensor's heads lie: head z is a (T, D) block of rows `ld` floats apart that starts
 * at (z / heads)·seq + (z % heads)·step. A contiguous (N, T, D) tensor is heads = 1, seq = T·D,
 * ld = D; the q third of a (B, T, 3C) projection is heads = H, seq = T·3C, step = D, ld = 3C.
 * (MINILLM_API before a typedef: Python builds it too, so build.py reads it for cffi.) */
MINILLM_API
typedef struct {
    int heads;
    long long seq, step, ld;
} head_layout_t;

/* One attention: n query heads against n_kv key/value heads (n_kv divides n; query head z
 * reads key/value head z / (n / n_kv): grouped-query attention, no repeated copies). dq
 * shares q's layout, dk and dv share kv's, dout shares out's; lse is contiguous (n, t_query).
 * The queries are the last t_query of the t_key positions.
 * rope_cos, rope_sin: RoPE's (t_key × d/2) tables, d even, or NULL. Only v4 reads them
 * (attention.c sends it every problem that has them); v1–v3 and the decoder take problems
 * without. */
MINILLM_API
typedef struct {
    int n, n_kv, t_query, t_key, d, causal;
    float scale;
    head_layout_t q, kv, out;
    const float *rope_cos, *rope_sin;
} attention_t;

/* what attention.c calls in the other files: the decoder, v3 and v4 */
void attention_decode_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                              float *lse);
void attention_v3_tiles_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                                float *lse);
void attention_v3_tiles_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                 const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                 float *dv);
void attention_v4_rotary_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                                 float *lse);
void attention_v4_rotary_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                  const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                  float *dv);

/* Where head z of a tensor with this layout starts. */
static inline long long head_start(head_layout_t h, long long z) {
    return z / h.heads * h.seq + z % h.heads * h.step;
}

/* Query heads per key/value head. */
static inline int group_size(const attention_t *a) { return a->n / a->n_kv; }

/* The key/value head that query head z reads. */
static inline long long kv_head(const attention_t *a, long long z) { return z / group_size(a); }

/* The last key (exclusive) that query row i may see: queries are the last t_query of the
 * t_key positions, so row i sees keys 0 … i + offset. */
static inline int visible(int i, int offset, int t_key, int causal) {
    return causal ? (i + offset + 1 < t_key ? i + offset + 1 : t_key) : t_key;
}

/* The online softmax's step: a block of keys whose largest score is block_peak arrives. The
 * running maximum becomes the larger of the two, and what was summed so far (the running
 * total and the output row) must be multiplied by the returned e^(old − new) to be relative to
 * it. (The first block, from peak = −∞, gets a factor of about 0 that multiplies nothing yet.) */
static inline float raise_peak(float *peak, float block_peak) {
    const float new_peak = block_peak > *peak ? block_peak : *peak;
    const float correction = exp_poly(*peak - new_peak);
    *peak = new_peak;
    return correction;
}

#endif
