/* The OpenMP team, written once for every kernel (0, 1 and 1 when the kernels are built
 * without OpenMP). Inside a parallel region: this thread's number and the team's size, for
 * loops that take their share by hand. Before one: how many threads a kernel starts. */
#ifndef MINILLM_TEAM_H
#define MINILLM_TEAM_H
#ifdef _OPENMP
#include <omp.h>
#endif

static inline int team_member(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* `requested` threads, or, for 0 or less, as many as OpenMP would start (every core by
 * default, OMP_NUM_THREADS when set) */
static inline int team_threads(int requested) {
#ifdef _OPENMP
    return requested > 0 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

#endif
