/* The backward of a Linear layer, y = x·Wᵀ + b, for g = ∂L/∂y (rows × out):
 *
 *   gx = g·W   (rows × in)      gw = gᵀ·x   (out × in)      gb = Σ_rows g   (out)
 *
 * gx and gw are independent products of exactly the same size, rows·in·out multiply-adds
 * each. Done one after the other, each GEMM is shared out between the cores: both cores
 * wait at a barrier after every packed panel (14 times in a 768-row product), and the core
 * that did not pack a panel reads it from the other core's cache. On two cores each core
 * takes one whole product instead, on one thread: no barrier, no shared panel, and each
 * core runs at its single-thread rate (C harness, the recipe's four shapes, 768 rows, both
 * gradients: 3–8 % faster). Then each core sums half of gb's columns.
 *
 * With more cores the products run one after the other on all of them (a product cut in
 * two teams would need a barrier per team, which OpenMP's barrier is not). */
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stddef.h>
#include "minillm_kernels.h"

/* gb[first:last] = Σ_i g[i, first:last], row by row (the order NumPy's sum(axis=0) adds in) */
static void column_sums(const float *g, float *gb, int rows, int cols, int first, int last) {
    for (int j = first; j < last; ++j) gb[j] = 0.0f;
    for (int i = 0; i < rows; ++i) {
        const float *row = g + (long)i * cols;
#pragma omp simd
        for (int j = first; j < last; ++j) gb[j] += row[j];
    }
}

/* gx = g·W (W is out × in, row-major): A = g as it lies, B = W */
static void input_gradient(const float *g, const float *w, float *gx, int rows, int in, int out, int threads) {
    sgemm_bias(g, w, NULL, gx, rows, in, out, out, 1, in, 1, threads);
}

/* gw = gᵀ·x: A = g transposed (a stride), B = x */
static void weight_gradient(const float *g, const float *x, float *gw, int rows, int in, int out, int threads) {
    sgemm_bias(g, x, NULL, gw, out, in, rows, 1, out, in, 1, threads);
}

void linear_backward(const float *g, const float *x, const float *w, float *gx, float *gw, float *gb, int rows,
                     int in, int out, int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (threads == 2 && gx && gw) {
#pragma omp parallel num_threads(2)
        {
#ifdef _OPENMP
            const int me = omp_get_thread_num(), size = omp_get_num_threads();
#else
            const int me = 0, size = 1;
#endif
            if (me == 0 || size == 1)
                input_gradient(g, w, gx, rows, in, out, 1);
            if (me == 1 || size == 1)
                weight_gradient(g, x, gw, rows, in, out, 1);
            if (gb)
                column_sums(g, gb, rows, out, (long)me * out / size, (long)(me + 1) * out / size);
        }
        return;
    }
    if (gx)
        input_gradient(g, w, gx, rows, in, out, threads);
    if (gw)
        weight_gradient(g, x, gw, rows, in, out, threads);
    if (gb)
        column_sums(g, gb, rows, out, 0, out);
}
