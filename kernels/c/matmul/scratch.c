/* Room for the packed panels of B and blocks of A.
 *
 * A thread that works alone (attention's many small tile products, each core's share of a
 * product under v7 and v8) keeps one buffer for as long as the thread lives, grown when a call
 * needs more, instead of an aligned_alloc/free pair per call: malloc's bookkeeping showed in a
 * profile of attention. The buffer holds at most a KC×NC panel of B and an MC×KC block of A,
 * about 8.5 MB with AVX-512's blocks on a 1 MB L2. A team shares a fresh buffer per product. */
#include <stdlib.h>
#include "matmul.h"

/* aligned_alloc wants a size that is a multiple of the alignment (C11 7.22.3.1). */
static float *alloc_floats(size_t count) {
    return aligned_alloc(64, (sizeof(float) * count + 63) / 64 * 64);
}

static _Thread_local float *scratch;
static _Thread_local size_t scratch_floats;

static float *thread_scratch(size_t count) {
    if (count > scratch_floats) {
        free(scratch);
        scratch = alloc_floats(count);
        scratch_floats = scratch ? count : 0;
    }
    return scratch;
}

float *packing_space(size_t floats, int threads) {
    return threads > 1 ? alloc_floats(floats) : thread_scratch(floats);
}

void release_packing_space(float *space, int threads) {
    if (threads > 1)
        free(space);
}
