/* Rotary position embedding (RoPE) in Hugging Face's layout: dimension i of a head pairs with
 * i + d/2, and the pair turns by the angle of its position and frequency:
 *     out[i]       = x[i] · cos − x[i + d/2] · sin
 *     out[i + d/2] = x[i + d/2] · cos + x[i] · sin,     cos, sin = tables[t][i], i < d/2.
 * The composite (x·cos + rotate_half(x)·sin) makes five arrays the size of x; this is one
 * read of x and one write of out. The backward is the rotation by −θ: the same kernel with
 * the sin table negated (the caller passes −sin).
 *
 * x is (B, H, T, d) read through its strides (sb, sh, st in floats; the last axis contiguous),
 * so the heads of a (B, T, H·d) projection are read where they lie, and out is written
 * contiguous (B, H, T, d): the transpose that attention needs costs nothing extra. The tables
 * (T × d/2 floats each: 16 KB for T = 128, d = 64) stay in L1/L2 while every head of every
 * batch element walks its T rows; one row of x (d floats) is both halves of its pairs, so
 * each value is loaded once.
 *
 * Threads over the B·H·T rows only above ROPE_PARALLEL_FROM values: a decoding step's few rows
 * cost less than waking the team (layernorm.c decides the same way). */
#include "minillm_kernels.h"

#define ROPE_PARALLEL_FROM 32768

void rope_forward(const float *x, const float *cos_table, const float *sin_table, float *out, int batch, int heads,
                  int t_len, int d, long long sb, long long sh, long long st) {
    const int half = d / 2;
    const long long rows = (long long)batch * heads * t_len;
#pragma omp parallel for schedule(static) if (rows * d >= ROPE_PARALLEL_FROM)
    for (long long row = 0; row < rows; ++row) {
        const long long t = row % t_len, bh = row / t_len, b = bh / heads, h = bh % heads;
        const float *xr = x + b * sb + h * sh + t * st;
        const float *c = cos_table + t * half, *s = sin_table + t * half;
        float *o = out + row * d;
#pragma omp simd
        for (int i = 0; i < half; ++i) {
            const float x1 = xr[i], x2 = xr[i + half];
            o[i] = x1 * c[i] - x2 * s[i];
            o[i + half] = x2 * c[i] + x1 * s[i];
        }
    }
}
