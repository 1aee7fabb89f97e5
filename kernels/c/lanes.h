/* Row reductions in whole vectors: LANES partial results, one per float of an AVX-512 register
 * (two AVX2 ones), folded in a tree at the end of the row.
 *
 * Why not `#pragma omp simd reduction(+ : total)`: for a short row GCC finished such a loop by
 * adding the 16 lanes one after the other through the stack, 16 dependent adds (~64 cycles)
 * per row, and ran the last row % 16 elements as a scalar loop. A row of attention scores (one
 * query against a block of keys, 1–256 of them) is short enough for that to be most of the time.
 * (Layer norm's rows, 128 and more floats long, gain nothing from it and keep plain loops.) */
#ifndef MINILLM_LANES_H
#define MINILLM_LANES_H

#define LANES 16

static inline float lanes_max(float *lane) {
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; ++l) lane[l] = lane[l + width] > lane[l] ? lane[l + width] : lane[l];
    return lane[0];
}

static inline float lanes_sum(float *lane) {
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; ++l) lane[l] += lane[l + width];
    return lane[0];
}

#endif
