#include <string.h>
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

/* The instruction-set extensions the kernels were compiled to use (the -march of the build),
 * and those of them the CPU running this library lacks. A library built on one machine and
 * loaded on another (a shared home directory, a container image built elsewhere) would stop
 * with "illegal instruction" in the first kernel that uses a missing one: backends/c/library.py
 * asks first, and builds the kernels for this CPU instead. */
#ifdef __AVX2__
#define BUILT_AVX2 1
#else
#define BUILT_AVX2 0
#endif
#ifdef __FMA__
#define BUILT_FMA 1
#else
#define BUILT_FMA 0
#endif
#ifdef __AVX512F__
#define BUILT_AVX512F 1
#else
#define BUILT_AVX512F 0
#endif
#ifdef __AVX512BW__
#define BUILT_AVX512BW 1
#else
#define BUILT_AVX512BW 0
#endif
#ifdef __AVX512VL__
#define BUILT_AVX512VL 1
#else
#define BUILT_AVX512VL 0
#endif
#ifdef __AVX512VNNI__
#define BUILT_AVX512VNNI 1
#else
#define BUILT_AVX512VNNI 0
#endif
#ifdef __AVX512BF16__
#define BUILT_AVX512BF16 1
#else
#define BUILT_AVX512BF16 0
#endif

#define EACH_EXTENSION(X) X(BUILT_AVX2, "avx2") X(BUILT_FMA, "fma") X(BUILT_AVX512F, "avx512f") \
    X(BUILT_AVX512BW, "avx512bw") X(BUILT_AVX512VL, "avx512vl") X(BUILT_AVX512VNNI, "avx512vnni") \
    X(BUILT_AVX512BF16, "avx512bf16")

#define NAME_IF_BUILT(built, name) built ? " " name : "",

MINILLM_API
const char *minillm_build_isa(void) {
    static char names[128];
    const char *parts[] = {EACH_EXTENSION(NAME_IF_BUILT)};
    names[0] = '\0';
    for (unsigned i = 0; i < sizeof parts / sizeof *parts; ++i) strcat(names, parts[i]);
    return names[0] ? names + 1 : names;
}

/* Each extension the build turned on, asked of the CPU (a name the compiler did not enable is
 * never written, so an older compiler that does not know it still builds this file). */
#if defined(__x86_64__) && defined(__GNUC__)
#define MISSING(name) if (!__builtin_cpu_supports(name)) { strcat(missing, " "); strcat(missing, name); }
#endif

BASELINE
MINILLM_API
const char *minillm_isa_missing(void) {
    static char missing[128];
    missing[0] = '\0';
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
#ifdef __AVX2__
    MISSING("avx2")
#endif
#ifdef __FMA__
    MISSING("fma")
#endif
#ifdef __AVX512F__
    MISSING("avx512f")
#endif
#ifdef __AVX512BW__
    MISSING("avx512bw")
#endif
#ifdef __AVX512VL__
    MISSING("avx512vl")
#endif
#ifdef __AVX512VNNI__
    MISSING("avx512vnni")
#endif
#ifdef __AVX512BF16__
    MISSING("avx512bf16")
#endif
#endif
    return missing[0] ? missing + 1 : missing;
}
