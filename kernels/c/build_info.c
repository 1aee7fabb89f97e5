#include "minillm_kernels.h"
#include "team.h"

#ifndef MINILLM_BUILD_FLAGS
#define MINILLM_BUILD_FLAGS "unknown"
#endif

#ifndef MINILLM_SOURCE_DIGEST
#define MINILLM_SOURCE_DIGEST "unknown"
#endif

/* how the library was built (for `minillm info` and the benchmarks) */
MINILLM_API
const char *minillm_build_flags(void) { return MINILLM_BUILD_FLAGS; }

/* backends/c/build.py's source_digest() of the kernels/c this library was compiled from */
MINILLM_API
const char *minillm_source_digest(void) { return MINILLM_SOURCE_DIGEST; }

MINILLM_API
int minillm_max_threads(void) {
    return team_threads(0);
}
