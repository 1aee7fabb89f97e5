#ifdef _OPENMP
#include <omp.h>
#endif
#include "minillm_kernels.h"

#ifndef MINILLM_BUILD_FLAGS
#define MINILLM_BUILD_FLAGS "unknown"
#endif

#ifndef MINILLM_SOURCE_DIGEST
#define MINILLM_SOURCE_DIGEST "unknown"
#endif

const char *minillm_build_flags(void) { return MINILLM_BUILD_FLAGS; }

/* c_build.source_digest() of the kernels/c this library was compiled from */
const char *minillm_source_digest(void) { return MINILLM_SOURCE_DIGEST; }

int minillm_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
