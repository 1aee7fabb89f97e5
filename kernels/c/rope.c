/* Rotary position embedding (RoPE) in Hugging Face's layout: dimension i of a head pairs with
 * i + d/2, and the pair turns by the angle of its position and frequency:
 *     out[i]       = x[i] · cos − x[i + d/2] · sin
 *     out[i + d/2] = x[i + d/2] · cos + x[i] · sin,     cos, sin = tables[t][i], i < d/2.
 * The composite (x·cos + rotate_half(x)·sin) makes five arrays the size of x; this is one
 * read of x and one write of out. The backward is the rotation by −θ: the same kernel with
 * the sin table negated (the caller passes −sin).
 *
 * x and out are (B, H, T, d) addressed through their own strides (x_strides, out_strides: b, h,
 * t in floats; the last axis contiguous). The forward reads the heads of a (B, T, H·d)
 * projection where they lie and writes them contiguous (B, H, T, d), so the transpose that
 * attention needs costs nothing extra; the backward writes the gradient back in the
 * projection's (B, T, H·d) order, so the transpose's backward copies nothing either. The tables
 * (T × d/2 floats each: 16 KB for T = 128, d = 64) stay in L1/L2 while every head of every
 * batch element walks its T rows; one row of x (d floats) is both halves of its pairs, so
 * each value is loaded once.
 *
 * Threads over the B·H heads only above ROPE_PARALLEL_FROM values: a decoding step's few rows
 * cost less than waking the team (layernorm/v4_threaded.c decides the same way). */
#include "minillm_kernels.h"

#define ROPE_PARALLEL_FROM 32768

MINILLM_API
void rope_forward(const float *x, const float *cos_table, const float *sin_table, float *out, int batch, int heads,
                  int t_len, int d, const long long *x_strides, const long long *out_strides) {
    const int half = d / 2;
    /* threads over the B·H heads, each walking its T rows: the row's addresses are two adds
     * from the last, where one loop over all B·H·T rows needs four integer divisions a row to
     * find b, h and t, which cost more than turning the row's d values */
#pragma omp parallel for collapse(2) schedule(static) if ((long long)batch * heads * t_len * d >= ROPE_PARALLEL_FROM)
    for (int b = 0; b < batch; ++b)
        for (int h = 0; h < heads; ++h) {
            const float *xr = x + b * x_strides[0] + h * x_strides[1];
            float *o = out + b * out_strides[0] + h * out_strides[1];
            for (int t = 0; t < t_len; ++t, xr += x_strides[2], o += out_strides[2]) {
                const float *c = cos_table + (long long)t * half, *s = sin_table + (long long)t * half;
#pragma omp simd
                for (int i = 0; i < half; ++i) {
                    const float x1 = xr[i], x2 = xr[i + half];
                    o[i] = x1 * c[i] - x2 * s[i];
                    o[i + half] = x2 * c[i] + x1 * s[i];
                }
            }
        }
}
