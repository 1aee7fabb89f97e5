/* The backward of a Linear layer, y = x·Wᵀ + b, for g = ∂L/∂y (rows × out):
 *
 *   gx = g·W   (rows × in)      gw = gᵀ·x   (out × in)      gb = Σ_rows g   (out)
 *
 * gx and gw are independent products of exactly the same size, rows·in·out multiply-adds
 * each. How the cores share them, in the order it was measured:
 *
 * 1. One product after the other, each shared out between the cores: both cores wait at a
 *    barrier after every packed panel (14 times in a 768-row product), and the core that did
 *    not pack a panel reads it from the other core's cache.
 * 2. On two cores, each core one whole product on one thread: no barrier, no shared panel,
 *    faster than 1 when the products are measured alone. But
 *    each core reads all of g, and inside a training step half of g lies in the other core's
 *    cache: every kernel before this one (GELU's backward, layer norm's, the attention's)
 *    gave each core its own half of the rows.
 * 3. Each core its own rows (`gradients_by_rows`): gx for its rows of g, and gᵀ·x over its
 *    rows into a partial gw of its own; after one barrier the partials are summed, each core
 *    a slice of gw. Everything but W and the partials stays in the core that wrote it. The
 *    extra work is a pass over (cores − 1) partial gw, small beside the products. Inside a
 *    training step it beats 2 (the rows it reads are the ones its core left in its cache);
 *    alone, outside a step, it runs at 2's speed. `python -m benchmarks.profile_step` times a
 *    step's calls.
 *
 * 3 is used when every thread gets MIN_ROWS_PER_THREAD rows and the partials are small; otherwise
 * 2 on two cores (an output layer of 50,000 words would need a 150 MB partial) and 1 on more.
 *
 * The products are a parameter: float32 (sgemm_bias) for linear_backward, bf16 inputs with
 * float32 sums (matmul_bf16.c's v4) for linear_backward_bf16. A bf16 step gains from the sharing
 * by rows as much as a float32 one: the two products one after the other, each over all rows,
 * read g and x from the other core's cache as 1 does. */
#include <stddef.h>
#include <stdlib.h>
#include "minillm_kernels.h"
#include "team.h"

/* gb[first:last] = Σ_i g[i, first:last], row by row (the order NumPy's sum(axis=0) adds in) */
static void column_sums(const float *g, float *gb, int rows, int cols, int first, int last) {
    for (int j = first; j < last; ++j) gb[j] = 0.0f;
    for (int i = 0; i < rows; ++i) {
        const float *row = g + (long)i * cols;
#pragma omp simd
        for (int j = first; j < last; ++j) gb[j] += row[j];
    }
}

/* C = A·B + bias for strided A and B (sgemm_bias's arguments) */
typedef void product_t(const float *A, const float *B, const float *bias, float *C, int M, int N, int K, long long sam,
                       long long sak, long long sbk, long long sbn, int threads);

/* gx = g·W (W is out × in, row-major): A = g as it lies, B = W */
static void input_gradient(product_t *product, const float *g, const float *w, float *gx, int rows, int in, int out,
                           int threads) {
    product(g, w, NULL, gx, rows, in, out, out, 1, in, 1, threads);
}

/* gw = gᵀ·x: A = g transposed (a stride), B = x */
static void weight_gradient(product_t *product, const float *g, const float *x, float *gw, int rows, int in, int out,
                            int threads) {
    product(g, x, NULL, gw, out, in, rows, 1, out, in, 1, threads);
}

#define MIN_ROWS_PER_THREAD 48
#define MAX_PARTIAL_FLOATS (4L << 20) /* 16 MB of partial gradients */

/* 3: each thread its own rows; the first thread's partials are gw and gb themselves. */
static void gradients_by_rows(product_t *product, const float *g, const float *x, const float *w, float *gx,
                              float *gw, float *gb, int rows, int in, int out, int threads, float *partials) {
    const long weights = (long)out * in, stride = weights + out;  /* one partial: gw's, then gb's */
#pragma omp parallel num_threads(threads)
    {
        const int me = team_member(), size = team_size();
        const int first = (long)me * rows / size, last = (long)(me + 1) * rows / size;  /* schedule(static)'s halves */
        float *my_gw = me ? partials + (me - 1) * stride : gw, *my_gb = me ? my_gw + weights : gb;
        input_gradient(product, g + (long)first * out, w, gx + (long)first * in, last - first, in, out, 1);
        weight_gradient(product, g + (long)first * out, x + (long)first * in, my_gw, last - first, in, out, 1);
        if (gb)
            column_sums(g + (long)first * out, my_gb, last - first, out, 0, out);
#pragma omp barrier
        const long from = me * weights / size, to = (me + 1) * weights / size;
        for (int t = 1; t < size; ++t) {
            const float *partial = partials + (t - 1) * stride;
#pragma omp simd
            for (long e = from; e < to; ++e) gw[e] += partial[e];
        }
        if (gb && me == 0)
            for (int t = 1; t < size; ++t)
                for (int j = 0; j < out; ++j) gb[j] += partials[(t - 1) * stride + weights + j];
    }
}

static void backward(product_t *product, const float *g, const float *x, const float *w, float *gx, float *gw,
                     float *gb, int rows, int in, int out, int threads) {
    threads = team_threads(threads);
    if (threads >= 2 && gx && gw && rows >= MIN_ROWS_PER_THREAD * threads
        && (long)(threads - 1) * ((long)out * in + out) <= MAX_PARTIAL_FLOATS) {
        float *partials = malloc(sizeof(float) * (threads - 1) * ((long)out * in + out));
        if (partials) {
            gradients_by_rows(product, g, x, w, gx, gw, gb, rows, in, out, threads, partials);
            free(partials);
            return;
        }
    }
    if (threads == 2 && gx && gw) {
#pragma omp parallel num_threads(2)
        {
            const int me = team_member(), size = team_size();
            if (me == 0 || size == 1)
                input_gradient(product, g, w, gx, rows, in, out, 1);
            if (me == 1 || size == 1)
                weight_gradient(product, g, x, gw, rows, in, out, 1);
            if (gb)
                column_sums(g, gb, rows, out, (long)me * out / size, (long)(me + 1) * out / size);
        }
        return;
    }
    if (gx)
        input_gradient(product, g, w, gx, rows, in, out, threads);
    if (gw)
        weight_gradient(product, g, x, gw, rows, in, out, threads);
    if (gb)
        column_sums(g, gb, rows, out, 0, out);
}

/* the backward of y = x·Wᵀ + b for g (rows × out), x (rows × in), W (out × in): gx = g·W,
 * gw = gᵀ·x, gb = Σ_rows g; an output left NULL is not computed */
MINILLM_API
void linear_backward(const float *g, const float *x, const float *w, float *gx, float *gw, float *gb, int rows,
                     int in, int out, int threads) {
    backward(sgemm_bias, g, x, w, gx, gw, gb, rows, in, out, threads);
}

/* the same on bf16 inputs: gx and gw by matmul_bf16.c's v4 (each operand rounded to bf16 as it
 * is packed, float32 sums), gb = Σ_rows g in float32 */
MINILLM_API
void linear_backward_bf16(const float *g, const float *x, const float *w, float *gx, float *gw, float *gb, int rows,
                          int in, int out, int threads) {
    backward(matmul_bf16_product, g, x, w, gx, gw, gb, rows, in, out, threads);
}
