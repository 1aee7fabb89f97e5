/* Inside an OpenMP parallel region: this thread's number and the team's size (0 and 1 when
 * the kernels are built without OpenMP), for loops that take their share by hand. */
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

#endif
