/* Layer norm over the rows of an (N, D) float32 matrix, in four complete versions, one file each.
 *
 *   forward:   μ = mean(x),  rstd = 1/√(var(x) + eps),  y = (x − μ)·rstd·w + b   (per row)
 *   backward:  x̂ = (x − μ)·rstd, g = dy·w:
 *              dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),  dw = Σ_rows dy·x̂,  db = Σ_rows dy
 *
 * Every version has the backend's arguments (minillm_kernels.h) and can be read top to bottom;
 * each adds one idea to the one before:
 *
 *  v1_two_pass.c    the definition, one row at a time: a pass for μ, a pass for the variance of
 *                   x − μ, a pass to normalise. Backward: a pass for dw and db, one for the two
 *                   means, one for dx. Each pass reads the row again (from L1: a 768-float row
 *                   is 3 KB)
 *  v2_one_pass.c    the statistics in one pass, Σx and Σx² together: var = Σx²/D − μ². Both sums
 *                   are near D·μ² when |μ| ≫ σ and their difference cancels: in float, with
 *                   μ = 100·σ, the 24-bit sums lose about 13 bits to the subtraction, so they are
 *                   summed in double (53 bits). Welford's running mean and M2 would not cancel,
 *                   but each step divides and depends on the step before, so its loop neither
 *                   vectorises nor pipelines. Backward: dw and db join the pass for the means
 *  v3_vectorised.c  v2 with its sums as SIMD reductions (`omp simd reduction`): one partial sum
 *                   per vector lane, added up at the end of the row. Without the pragma the
 *                   compiler keeps the sums in source order (it may not reassociate floats), one
 *                   dependent add after another. (lanes.h's hand-written tree gains nothing on
 *                   rows this long: the fold at the end is a small part of a row.)
 *  v4_threaded.c    v3 with the rows shared out over the OpenMP team; a small input (one token)
 *                   stays on the calling thread. Backward: each thread sums its own dw and db,
 *                   added together at the end (threads adding into one dw would race).
 *                   The backend's layernorm_forward and layernorm_backward are v4. */
#ifndef MINILLM_LAYERNORM_H
#define MINILLM_LAYERNORM_H
#include "minillm_kernels.h"
#endif
