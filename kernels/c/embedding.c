/* The backward of an embedding lookup (rows of a table gathered by index, the first layer of
 * every language model): target[index[i], :] += values[i, :] for `count` rows of `width`
 * floats, a repeated index (the same token twice) adding up.
 *
 * NumPy has no fast scatter-add: np.add.at loops element by element, and the sorted road
 * (argsort the indices, gather the rows in that order, add each run with reduceat, add the
 * sums) makes three passes and two temporaries. Here one pass in token order, each row a
 * vectorised add into a table row that stays in L1 or L2 (66 × 128 floats = 33 KB for the
 * recipe). Serial: rows that repeat would race, and one pass over the rows is short next to
 * a thread team's start. The caller has checked that every index lies in [0, rows). */
#include "minillm_kernels.h"

/* an embedding's backward: target[index[i]] += values[i] (rows of `width`), repeats adding up -- */
MINILLM_API
void embedding_backward(float *target, const long long *index, const float *values, long long count,
                        long long width) {
    for (long long i = 0; i < count; ++i) {
        float *restrict row = target + index[i] * width;
        const float *restrict add = values + i * width;
#pragma omp simd
        for (long long j = 0; j < width; ++j) row[j] += add[j];
    }
}
