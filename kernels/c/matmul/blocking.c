/* The block sizes of blocking.h, derived from the caches this machine reports rather than
 * fixed for one CPU: an Intel Sapphire Rapids core has twice the L2 of a Zen 4 core, and the
 * B panel v8 keeps in L2 should be twice as wide there.
 *
 * The sizes are read once, when the library is loaded: first from Linux's
 * /sys/devices/system/cpu/cpu0/cache (one core's view: the L2 of that core, the L3 it shares),
 * then from glibc's sysconf, and where neither says, the FALLBACK_ sizes below. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "minillm_kernels.h"
#include "blocking.h"

/* What a machine that reports nothing is taken to have: AVX-512, an Intel core of its time
 * (Sapphire Rapids: 48 KB L1d, 2 MB L2); AVX2, a Zen 3 core (32 KB, 512 KB). */
#if defined(__AVX512F__)
#define FALLBACK_L1 (48L << 10)
#define FALLBACK_L2 (2L << 20)
/* The sliver that stays in L1 for a KC-deep pass: v8's A sliver of MR rows. */
#define L1_SLIVER MR
#else
#define FALLBACK_L1 (32L << 10)
#define FALLBACK_L2 (512L << 10)
/* AVX2's B sliver, NR = 16 columns, is small enough for L1 in v4–v7's column order, the order
 * AVX2's depth was chosen in. */
#define L1_SLIVER NR
#endif
#define FALLBACK_L3 (32L << 20)
/* The L3 is shared by every core and by whatever else runs, and in a virtual machine it is
 * often reported as the host's whole cache (glibc's sysconf says 384 MB on a VM whose cores
 * share 32 MB): v4–v7's panel, packed afresh for each product, is held to 4096 columns. */
#define MAX_NC 4096
/* A reported L2 above this is taken for a misreport (a VM passing on a host's figure): no core
 * today has more, and the A block and v8's panel are sized from it. */
#define MAX_L2 (8L << 20)
/* Below this depth each tile's pass over its C (a load and a store of MR × NR floats) costs as
 * much as its k-steps. */
#define MIN_KC 64

static int at_least(int n, int floor) { return n > floor ? n : floor; }
static int whole(long n, int multiple) { return at_least((int)(n / multiple * multiple), multiple); }

/* Everything from here to read_caches runs when the library is loaded, before the backend has
 * asked whether this CPU has the build's extensions: compiled for the baseline x86-64. */
BASELINE
MINILLM_API
gemm_blocking_t blocking_for_caches(long l1, long l2, long l3) {
    gemm_blocking_t b = {.l1 = l1 > 0 ? l1 : FALLBACK_L1, .l2 = l2 > 0 ? (l2 < MAX_L2 ? l2 : MAX_L2) : FALLBACK_L2,
                         .l3 = l3 > 0 ? l3 : FALLBACK_L3, .mr = MR, .nr = NR};
    const long f = sizeof(float);
    b.kc = at_least((int)(b.l1 / 2 / (L1_SLIVER * f)), MIN_KC);  /* the L1 sliver in half of L1 */
    b.mc = whole(b.l2 / 2 / (b.kc * f), MR);                       /* the A block in half of L2 */
    b.nc_l2 = whole(b.l2 / 2 / (b.kc * f), NR);                    /* v8's B panel in half of L2 */
    b.nc = whole(b.l3 / 4 / (b.kc * f), NR);                       /* the shared B panel in a quarter of L3 */
    b.nc = b.nc < MAX_NC ? b.nc : MAX_NC;
    return b;
}

/* "48K", "1024K", "32M" (a file of /sys/devices/system/cpu/cpu0/cache/index<i>/) in bytes */
BASELINE static long read_size(int index, const char *file) {
    char path[96], text[32] = {0};
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", index, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    const int got = fscanf(f, "%31s", text);
    fclose(f);
    if (got != 1)
        return -1;
    char *unit;
    long n = strtol(text, &unit, 10);
    return *unit == 'K' ? n << 10 : *unit == 'M' ? n << 20 : *unit == 'G' ? n << 30 : n;
}

BASELINE static int is_type(int index, const char *type) {
    char path[96], text[32] = {0};
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", index);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    const int got = fscanf(f, "%31s", text);
    fclose(f);
    return got == 1 && strcmp(text, type) == 0;
}

/* cache[1..3]: the data (or unified) cache of each level, 0 where none is reported */
BASELINE static void reported_caches(long cache[4]) {
    for (int level = 0; level < 4; ++level) cache[level] = 0;
    for (int index = 0; index < 16; ++index) {
        const long level = read_size(index, "level");
        if (level < 1)
            break;
        if (level <= 3 && !is_type(index, "Instruction"))
            cache[level] = read_size(index, "size");
    }
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    const int names[4] = {0, _SC_LEVEL1_DCACHE_SIZE, _SC_LEVEL2_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE};
    for (int level = 1; level <= 3; ++level)
        if (cache[level] <= 0)
            cache[level] = sysconf(names[level]);
#endif
}

BASELINE static gemm_blocking_t machine_blocking(void) {
    long cache[4];
    reported_caches(cache);
    return blocking_for_caches(cache[1], cache[2], cache[3]);
}

gemm_blocking_t gemm_blocking;

__attribute__((constructor)) BASELINE static void read_caches(void) { gemm_blocking = machine_blocking(); }

/* The blocks in use (`minillm info` prints them). */
MINILLM_API
gemm_blocking_t gemm_blocking_in_use(void) { return gemm_blocking; }

/* For tests and benchmarks: run every product after this with these blocks (each at least 1;
 * kc, mc, nc and nc_l2 are rounded up to whole slivers where a loop needs them), or, given
 * zeros, with the machine's again. Not for use while a product runs. */
MINILLM_API
void gemm_force_blocking(int kc, int mc, int nc, int nc_l2) {
    gemm_blocking = machine_blocking();
    if (kc > 0)
        gemm_blocking.kc = kc;
    if (mc > 0)
        gemm_blocking.mc = round_up(mc, MR);
    if (nc > 0)
        gemm_blocking.nc = round_up(nc, NR);
    if (nc_l2 > 0)
        gemm_blocking.nc_l2 = round_up(nc_l2, NR);
}
