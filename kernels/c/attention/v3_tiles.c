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
#include <stdlib.h>
#include "tiles.h"

/* v3: tiles of query rows against blocks of keys, both products on the micro-kernel (the
 * tile sizes, the masks and the tile's work are tiles.h's) */
MINILLM_API
void attention_v3_tiles_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                                float *lse) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d;
    const int qb = tile_rows(t_query), q_tiles = (t_query + qb - 1) / qb;
    const int chunk = q_tiles > 0 ? heads_per_task(a->n, a->q.heads) * q_tiles : 1;  /* a head's tiles are consecutive tasks */
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * QB * KB), *kt = malloc(sizeof(float) * (size_t)d * t_key);
        long long kt_head = -1;  /* whose Kᵀ kt holds: a thread's tasks take a head's tiles, a group's heads, in turn */
#pragma omp for schedule(static, chunk)
        for (long task = 0; task < (long)a->n * q_tiles; ++task) {
            const long z = task / q_tiles;
            const long long zk = kv_head(a, z);
            const int i0 = (int)(task % q_tiles) * qb;
            const float *kz = k + head_start(a->kv, zk);
            if (kt_head != zk) {
                transpose_head(kz, a->kv.ld, t_key, d, kt);
                kt_head = zk;
            }
            const tile_t tile = {.q = q + head_start(a->q, z) + i0 * a->q.ld, .ld_q = a->q.ld, .kt = kt,
                                 .v = v + head_start(a->kv, zk), .ld_kv = a->kv.ld,
                                 .o = out + head_start(a->out, z) + i0 * a->out.ld, .ld_out = a->out.ld,
                                 .rows = t_query - i0 < qb ? t_query - i0 : qb, .i0 = i0};
            forward_tile(a, &tile, s, lse + z * t_query);
        }
        free(s);
        free(kt);
    }
}

MINILLM_API
void attention_v3_tiles_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                 const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                 float *dv) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, group = group_size(a);
    const long ld_q = a->q.ld, ld_kv = a->kv.ld, ld_out = a->out.ld;
    const int qb = tile_rows(t_query), chunk = heads_per_task(a->n_kv, a->kv.heads);
#pragma omp parallel
    {
        float *p = malloc(sizeof(float) * QB * KB), *ds = malloc(sizeof(float) * QB * KB);
        float *kt = malloc(sizeof(float) * (size_t)d * t_key), *vt = malloc(sizeof(float) * (size_t)d * t_key);
#pragma omp for schedule(static, chunk)
        for (long zk = 0; zk < a->n_kv; ++zk) {
            const long long at_k = head_start(a->kv, zk);
            float *dkz = dk + at_k, *dvz = dv + at_k;
            transpose_head(k + at_k, ld_kv, t_key, d, kt);
            transpose_head(v + at_k, ld_kv, t_key, d, vt);
            zero_rows(dkz, ld_kv, t_key, d);
            zero_rows(dvz, ld_kv, t_key, d);
            for (long z = zk * group; z < (zk + 1) * group; ++z) {  /* the query heads that read this one */
                const long long at_q = head_start(a->q, z), at_o = head_start(a->out, z);
                float *dqz = dq + at_q;
                zero_rows(dqz, ld_q, t_query, d);
                for (int i0 = 0; i0 < t_query; i0 += qb) {
                    const tile_t tile = {.q = q + at_q + i0 * ld_q, .ld_q = ld_q, .k = k + at_k, .ld_k = ld_kv,
                                         .kt = kt, .vt = vt, .ld_kv = ld_kv, .dk = dkz, .dv = dvz,
                                         .out = out + at_o + i0 * ld_out, .dout = dout + at_o + i0 * ld_out,
                                         .ld_out = ld_out, .lse = lse + z * t_query,
                                         .dq = dqz + i0 * ld_q, .ld_dq = ld_q,
                                         .rows = t_query - i0 < qb ? t_query - i0 : qb, .i0 = i0};
                    backward_tile(a, &tile, p, ds);
                }
            }
        }
        free(p);
        free(ds);
        free(kt);
        free(vt);
    }
}
