/* Softmax cross-entropy over (N, C) logits and int64 targets, in three complete versions, one
 * file each. Fused: the probabilities are never stored.
 *
 *   forward:   lse_r = log Σ_c e^(z_rc),  loss_r = lse_r − z_r,target_r
 *   backward:  dlogits_r = (e^(z_r − lse_r) − onehot(target_r)) · dloss_r
 *
 * A row whose target is ignore_index gets loss 0 and gradient 0. lse is computed as
 * max + log Σ e^(z − max), so that no exponential overflows.
 *
 * Every version has the backend's arguments (minillm_kernels.h) and can be read top to bottom;
 * each adds one idea to the one before:
 *
 *  v1_libm.c       one row at a time with libm's expf: a pass for the max, one for Σ e^(z − max).
 *                  expf is a function call per element (glibc has no vector form of it without
 *                  -ffast-math), so every loop is scalar
 *  v2_exp_poly.c   exp_poly (exp_poly.h: branch-free, 2 ulp, for arguments ≤ 0, as z − max and
 *                  z − lse are) in place of expf, and `omp simd` reductions: every loop runs a
 *                  vector of classes at a time
 *  v3_threaded.c   v2 with the rows shared out over the OpenMP team. The backend's
 *                  cross_entropy_forward and cross_entropy_backward are v3. */
#ifndef MINILLM_CROSS_ENTROPY_H
#define MINILLM_CROSS_ENTROPY_H
#include "minillm_kernels.h"
#endif
