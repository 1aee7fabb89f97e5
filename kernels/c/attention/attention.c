/* What the backend runs (attention.h lists the versions): a problem with RoPE's tables goes to
 * v4, which turns q and k inside; a few queries against a cache go to decode.c, whose dot
 * products cost less than the tiles' packing when there is one row to a tile; everything
 * else, and every backward without the tables, to v3's tiles. */
#include "attention.h"

MINILLM_API
void attention_forward(const attention_t *a, const float *q, const float *k, const float *v, float *out,
                       float *lse) {
    if (a->rope_cos != NULL)
        attention_v4_rotary_forward(a, q, k, v, out, lse);
    else if (a->t_query <= DECODE_ROWS)
        attention_decode_forward(a, q, k, v, out, lse);
    else
        attention_v3_tiles_forward(a, q, k, v, out, lse);
}

MINILLM_API
void attention_backward(const attention_t *a, const float *q, const float *k, const float *v, const float *out,
                        const float *lse, const float *dout, float *dq, float *dk, float *dv) {
    if (a->rope_cos != NULL)
        attention_v4_rotary_backward(a, q, k, v, out, lse, dout, dq, dk, dv);
    else
        attention_v3_tiles_backward(a, q, k, v, out, lse, dout, dq, dk, dv);
}
