/* Attention v1: the textbook (attention.h lists the versions). For each query head, on one
 * core, the whole T×T matrix of scores is stored:
 *
 *   S = scale · Q·Kᵀ,  masked (−∞ above the diagonal when causal)
 *   P = softmax(S) row by row: subtract the row's maximum, exponentiate, divide by the sum
 *   O = P·V,  and lse = max + log(sum) per row, kept for the backward
 *
 * Backward, with P rebuilt from lse (P = exp(S − lse)) and dP = dO·Vᵀ:
 *
 *   dS = P ∘ (dP − rowsum(dO ∘ O)) · scale      (the softmax's Jacobian; rowsum(dO ∘ O) =
 *                                                rowsum(P ∘ dP), one dot per row)
 *   dQ = dS·K      dK += dSᵀ·Q      dV += Pᵀ·dO  (+=: a key/value head sums its group)
 *
 * Memory is O(Tq·Tk) per head, and every product is a plain triple loop: the numbers are
 * right and everything is slow. v2 keeps no T×T matrix, v3 makes the products GEMMs. */
#include <stdlib.h>
#include <string.h>
#include "attention.h"

/* One head's scores, S[i][j] = scale · q_i·k_j for the keys row i may see, −∞ for the rest. */
static void head_scores(const attention_t *a, const float *qz, const float *kz, float *s) {
    const int offset = a->t_key - a->t_query;
    for (int i = 0; i < a->t_query; ++i)
        for (int j = 0; j < a->t_key; ++j) {
            float acc = 0.0f;
            for (int c = 0; c < a->d; ++c) acc += qz[i * a->q.ld + c] * kz[j * a->kv.ld + c];
            s[(long)i * a->t_key + j] = j < visible(i, offset, a->t_key, a->causal) ? acc * a->scale : -INFINITY;
        }
}

MINILLM_API
void attention_v1_naive_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                                float *lse) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d;
    float *s = malloc(sizeof(float) * ((size_t)t_query * t_key + 1));
    for (long z = 0; z < a->n; ++z) {
        const long long at_kv = head_start(a->kv, kv_head(a, z));
        float *o = out + head_start(a->out, z);
        head_scores(a, q + head_start(a->q, z), k + at_kv, s);
        for (int i = 0; i < t_query; ++i) {
            float *row = s + (long)i * t_key, peak = -INFINITY, total = 0.0f;
            for (int j = 0; j < t_key; ++j) peak = row[j] > peak ? row[j] : peak;
            for (int j = 0; j < t_key; ++j) total += row[j] = expf(row[j] - peak);
            for (int j = 0; j < t_key; ++j) row[j] /= total;
            lse[z * t_query + i] = peak + logf(total);
            for (int c = 0; c < d; ++c) {
                float acc = 0.0f;
                for (int j = 0; j < t_key; ++j) acc += row[j] * v[at_kv + j * a->kv.ld + c];
                o[i * a->out.ld + c] = acc;
            }
        }
    }
    free(s);
}

MINILLM_API
void attention_v1_naive_backward(const attention_t *a, const float *q, const float *k, const float *v,
                                 const float *out, const float *lse, const float *dout, float *dq, float *dk,
                                 float *dv) {
    const int t_query = a->t_query, t_key = a->t_key, d = a->d;
    float *p = malloc(sizeof(float) * ((size_t)t_query * t_key + 1));
    float *ds = malloc(sizeof(float) * ((size_t)t_query * t_key + 1));
    for (long zk = 0; zk < a->n_kv; ++zk)
        for (int j = 0; j < t_key; ++j) {
            memset(dk + head_start(a->kv, zk) + j * a->kv.ld, 0, sizeof(float) * d);
            memset(dv + head_start(a->kv, zk) + j * a->kv.ld, 0, sizeof(float) * d);
        }
    for (long z = 0; z < a->n; ++z) {
        const long long at_q = head_start(a->q, z), at_kv = head_start(a->kv, kv_head(a, z));
        const long long at_o = head_start(a->out, z);
        head_scores(a, q + at_q, k + at_kv, p);
        for (int i = 0; i < t_query; ++i) {
            const float *doi = dout + at_o + i * a->out.ld, *oi = out + at_o + i * a->out.ld;
            float row_dot = 0.0f;  /* rowsum(dO ∘ O) */
            for (int c = 0; c < d; ++c) row_dot += doi[c] * oi[c];
            for (int j = 0; j < t_key; ++j) {
                float *pij = p + (long)i * t_key + j, dp = 0.0f;
                *pij = expf(*pij - lse[z * t_query + i]);  /* exp(−∞) = 0 above the diagonal */
                for (int c = 0; c < d; ++c) dp += doi[c] * v[at_kv + j * a->kv.ld + c];
                ds[(long)i * t_key + j] = *pij * (dp - row_dot) * a->scale;
            }
        }
        for (int i = 0; i < t_query; ++i)  /* dQ = dS·K */
            for (int c = 0; c < d; ++c) {
                float acc = 0.0f;
                for (int j = 0; j < t_key; ++j) acc += ds[(long)i * t_key + j] * k[at_kv + j * a->kv.ld + c];
                dq[at_q + i * a->q.ld + c] = acc;
            }
        for (int j = 0; j < t_key; ++j)  /* dK += dSᵀ·Q, dV += Pᵀ·dO */
            for (int c = 0; c < d; ++c) {
                float acc_k = 0.0f, acc_v = 0.0f;
                for (int i = 0; i < t_query; ++i) {
                    acc_k += ds[(long)i * t_key + j] * q[at_q + i * a->q.ld + c];
                    acc_v += p[(long)i * t_key + j] * dout[at_o + i * a->out.ld + c];
                }
                dk[at_kv + j * a->kv.ld + c] += acc_k;
                dv[at_kv + j * a->kv.ld + c] += acc_v;
            }
    }
    free(p);
    free(ds);
}
