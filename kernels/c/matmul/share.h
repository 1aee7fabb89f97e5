/* How the threaded versions share a product out among the cores.
 *
 * v5 and v6 share every block: a team packs the panels together and then divides the tiles.
 * Each member takes its share by hand (a contiguous range, as schedule(static) would) rather
 * than through `omp for`, so the same loops run serially, with no OpenMP region at all, when a
 * kernel that is already parallel (attention, one head per thread) calls them for its small
 * tile products: a nested region, even of one thread, costs as much as such a product.
 *
 * v7 and v8 give each core its own rows of C instead (own_rows), and nothing is shared; for a
 * product with few rows per core the backend gives each core its own columns (own_columns). */
#ifndef MINILLM_MATMUL_SHARE_H
#define MINILLM_MATMUL_SHARE_H
#include "../team.h"
#include "blocking.h"
#include "matmul.h"

/* Who shares the work: member `id` of a team of `size`. */
typedef struct { int id, size; } team_t;

static const team_t ALONE = {0, 1};

/* Inside a parallel region: the calling thread's place in its team. */
static inline team_t this_member(void) {
    return (team_t){team_member(), team_size()};
}

static inline int all_threads(void) {
    return team_threads(0);
}

/* This member's share [*begin, *end) of `count` items. */
static inline void share(team_t team, int count, int *begin, int *end) {
    const int per = (count + team.size - 1) / team.size;
    *begin = min_int(team.id * per, count);
    *end = min_int(*begin + per, count);
}

/* Everyone has finished the step before (a packed buffer is complete, or free to refill). */
static inline void wait_for_team(team_t team) {
    if (team.size > 1) {
#pragma omp barrier
    }
}

/* Each of `threads` cores computes its own rows of C with `one_thread`, a whole number of MR
 * slivers each, so that only the last share has an edge, and as many slivers each as can be
 * (one more or less): shares rounded up to whole slivers would leave the last core short
 * (128 rows on two cores: 72 and 56), and the others wait for the longest. */
static inline void own_rows(const gemm_t *p, int threads, void (*one_thread)(const gemm_t *)) {
#pragma omp parallel num_threads(threads)
    {
        const team_t me = this_member();
        const long slivers = (p->M + MR - 1) / MR;
        const int first = min_int((int)(me.id * slivers / me.size) * MR, p->M);
        const int last = min_int((int)((me.id + 1) * slivers / me.size) * MR, p->M);
        if (first < last) {
            const gemm_t mine = rows_of(*p, first, last);
            one_thread(&mine);
        }
    }
}

/* Columns first … last − 1 of the product: the same A, its own B columns, bias and C columns. */
static inline gemm_t columns_of(gemm_t p, int first, int last) {
    p.B += first * p.sbn;
    p.C += first;
    if (p.bias)
        p.bias += first;
    p.N = last - first;
    return p;
}

/* Each of `threads` cores computes its own columns of C with `one_thread`, whole NR slivers
 * each (as many each as can be, as own_rows), and packs only its own columns of B. */
static inline void own_columns(const gemm_t *p, int threads, void (*one_thread)(const gemm_t *)) {
#pragma omp parallel num_threads(threads)
    {
        const team_t me = this_member();
        const long slivers = (p->N + NR - 1) / NR;
        const int first = min_int((int)(me.id * slivers / me.size) * NR, p->N);
        const int last = min_int((int)((me.id + 1) * slivers / me.size) * NR, p->N);
        if (first < last) {
            const gemm_t mine = columns_of(*p, first, last);
            one_thread(&mine);
        }
    }
}

#endif
