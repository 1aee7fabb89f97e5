#ifdef _OPENMP
#include <omp.h>
#endif
#include "minillm_kernels.h"

#ifndef MINILLM_BUILD_FLAGS
#define MINILLM_BUILD_FLAGS "unknown"
#endif

const char *minillm_build_flags(void) { return MINILLM_BUILD_FLAGS; }

int minillm_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
