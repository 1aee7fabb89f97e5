/* Attention v4: v3's tiles with the rotary position embedding (RoPE, Llama's) turned inside the
 * kernel (attention.h lists the versions; attention.c runs v4 for every problem that carries
 * the tables).
 *
 * Llama turns q and k by their positions' angles before attention. As a pass of its own
 * (rope.c), that pass writes a turned copy of q and k for the attention to read again, and the
 * backward turns dQ and dK back in one more pass over the gradient: two trips through memory
 * per layer, each the size of the attention's inputs, for three flops a value. Here the turn
 * happens where the tiles already hold each row:
 *
 *   K   transpose_head reads every key row once per key/value head to build Kᵀ; the rows are
 *       turned into the thread's K buffer first (t_key × d: 32 KB at T = 128, d = 64, in L1/L2)
 *       and Kᵀ transposed from it. The backward's dQ += dS·K reads that buffer's rows.
 *   Q   each query tile is turned into the thread's QB × d buffer (32 KB at d = 64) when the
 *       tile starts; the tile's products read it instead of q.
 *   dQ  complete when the tile's key blocks are done: turned back (by −θ) in place, while the
 *       tile's rows are still in cache.
 *   dK  complete when every query head of the group is done: turned back in place then.
 *
 * So the turned q and k never exist in memory and the gradient needs no pass of its own. The
 * tables are (t_key × d/2): key j turns by row j, query i by row t_key − t_query + i (the
 * queries are the last t_query positions). Without tables (NULL) a turn is a copy and v4
 * computes what v3 does. */
#include <stdlib.h>
#include <string.h>
#include "tiles.h"

/* out = `rows` rows of x (ld_x apart) turned by the angles of positions first, first + 1, …:
 * dimension i of a row pairs with i + d/2, as rope.c turns them. sign = −1 turns by −θ, the
 * transpose of the turn (the backward). out may be x: each pair is read before it is written.
 * RoPE needs d even (Python checks); an odd d's last column, which no pair holds, is copied. */
static void turn_rows(const attention_t *a, const float *x, long ld_x, int rows, int first, float sign, float *out,
                      long ld_out) {
    const int d = a->d, half = d / 2;
    for (int r = 0; r < rows; ++r) {
        const float *xr = x + r * ld_x;
        float *o = out + r * ld_out;
        if (a->rope_cos == NULL) {
            if (o != xr) memcpy(o, xr, sizeof(float) * d);
            continue;
        }
        const float *c = a->rope_cos + (long)(first + r) * half, *s = a->rope_sin + (long)(first + r) * half;
#pragma omp simd
        for (int i = 0; i < half; ++i) {
            const float x1 = xr[i], x2 = xr[i + half], si = sign * s[i];
            o[i] = x1 * c[i] - x2 * si;
            o[i + half] = x2 * c[i] + x1 * si;
        }
        if (d % 2)
            o[d - 1] = xr[d - 1];
    }
}

MINILLM_API
void attention_v4_rotary_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                                 float *lse) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, offset = t_key - t_query;
    const int qb = tile_rows(t_query), q_tiles = (t_query + qb - 1) / qb;
    const int chunk = q_tiles > 0 ? heads_per_task(a->n, a->q.heads) * q_tiles : 1;  /* a head's tiles are consecutive tasks */
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * QB * KB), *q_turned = malloc(sizeof(float) * QB * (size_t)d);
        float *k_turned = malloc(sizeof(float) * (size_t)d * t_key), *kt = malloc(sizeof(float) * (size_t)d * t_key);
        long long kt_head = -1;  /* whose Kᵀ kt holds: a thread's tasks take a head's tiles, a group's heads, in turn */
#pragma omp for schedule(static, chunk)
        for (long task = 0; task < (long)a->n * q_tiles; ++task) {
            const long z = task / q_tiles;
            const long long zk = kv_head(a, z);
            const int i0 = (int)(task % q_tiles) * qb, rows = t_query - i0 < qb ? t_query - i0 : qb;
            if (kt_head != zk) {
                turn_rows(a, k + head_start(a->kv, zk), a->kv.ld, t_key, 0, 1.0f, k_turned, d);
                transpose_head(k_turned, d, t_key, d, kt);
                kt_head = zk;
            }
            turn_rows(a, q + head_start(a->q, z) + i0 * a->q.ld, a->q.ld, rows, offset + i0, 1.0f, q_turned, d);
            const tile_t tile = {.q = q_turned, .ld_q = d, .kt = kt, .v = v + head_start(a->kv, zk), .ld_kv = a->kv.ld,
                                 .o = out + head_start(a->out, z) + i0 * a->out.ld, .ld_out = a->out.ld,
                                 .rows = rows, .i0 = i0};
            forward_tile(a, &tile, s, lse + z * t_query);
        }
        free(s);
        free(q_turned);
        free(k_turned);
        free(kt);
    }
}

MINILLM_API
void attention_v4_rotary_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                  const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                  float *dv) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d, group = group_size(a), offset = t_key - t_query;
    const long ld_q = a->q.ld, ld_kv = a->kv.ld, ld_out = a->out.ld;
    const int qb = tile_rows(t_query), chunk = heads_per_task(a->n_kv, a->kv.heads);
#pragma omp parallel
    {
        float *p = malloc(sizeof(float) * QB * KB), *ds = malloc(sizeof(float) * QB * KB);
        float *q_turned = malloc(sizeof(float) * QB * (size_t)d), *k_turned = malloc(sizeof(float) * (size_t)d * t_key);
        float *kt = malloc(sizeof(float) * (size_t)d * t_key), *vt = malloc(sizeof(float) * (size_t)d * t_key);
#pragma omp for schedule(static, chunk)
        for (long zk = 0; zk < a->n_kv; ++zk) {
            const long long at_k = head_start(a->kv, zk);
            float *dkz = dk + at_k, *dvz = dv + at_k;
            turn_rows(a, k + at_k, ld_kv, t_key, 0, 1.0f, k_turned, d);
            transpose_head(k_turned, d, t_key, d, kt);
            transpose_head(v + at_k, ld_kv, t_key, d, vt);
            zero_rows(dkz, ld_kv, t_key, d);
            zero_rows(dvz, ld_kv, t_key, d);
            for (long z = zk * group; z < (zk + 1) * group; ++z) {  /* the query heads that read this one */
                const long long at_q = head_start(a->q, z), at_o = head_start(a->out, z);
                float *dqz = dq + at_q;
                zero_rows(dqz, ld_q, t_query, d);
                for (int i0 = 0; i0 < t_query; i0 += qb) {
                    const int rows = t_query - i0 < qb ? t_query - i0 : qb;
                    turn_rows(a, q + at_q + i0 * ld_q, ld_q, rows, offset + i0, 1.0f, q_turned, d);
                    const tile_t tile = {.q = q_turned, .ld_q = d, .k = k_turned, .ld_k = d, .kt = kt, .vt = vt,
                                         .ld_kv = ld_kv, .dk = dkz, .dv = dvz, .out = out + at_o + i0 * ld_out,
                                         .dout = dout + at_o + i0 * ld_out, .ld_out = ld_out, .lse = lse + z * t_query,
                                         .dq = dqz + i0 * ld_q, .ld_dq = ld_q, .rows = rows, .i0 = i0};
                    backward_tile(a, &tile, p, ds);
                    turn_rows(a, dqz + i0 * ld_q, ld_q, rows, offset + i0, -1.0f, dqz + i0 * ld_q, ld_q);  /* dQ back by −θ */
                }
            }
            turn_rows(a, dkz, ld_kv, t_key, 0, -1.0f, dkz, ld_kv);  /* dK, summed over the group, back by −θ */
        }
        free(p);
        free(ds);
        free(q_turned);
        free(k_turned);
        free(kt);
        free(vt);
    }
}
