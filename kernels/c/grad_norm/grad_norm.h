/* Gradient clipping over every gradient of a model at once (nn.utils.clip_grad_norm_), in three
 * complete versions, one file each:
 *
 *   sum_of_squares_many:  Σ_t Σ_i x_t[i]²        scale_many:  x_t[i] ← x_t[i] · factor
 *
 * The squares are summed in double: the pass is bound by memory, not by the conversions, and a
 * float sum that is not split into vector lanes (v1, or the sanitizer build) drifts by about 1e-5
 * over a hundred thousand values. Every version has the backend's arguments (minillm_kernels.h)
 * and can be read top to bottom; each adds one idea to the one before:
 *
 *  v1_one_thread.c       tensor after tensor on the calling thread, as NumPy's one dot product
 *                        and one in-place multiply per tensor did (without the Python calls)
 *  v2_team_per_tensor.c  each tensor shared out over the OpenMP team: a team start per tensor,
 *                        about 70 of them per clip for nanoGPT's recipe, most for a small tensor
 *  v3_one_team.c         one team for all the tensors: each thread takes the i-th of `threads`
 *                        equal ranges of every tensor (for a weight gradient, the range that
 *                        linear_backward's sum of partials wrote on the same thread, so it is
 *                        still in that core's cache). The backend's sum_of_squares_many and
 *                        scale_many are v3. */
#ifndef MINILLM_GRAD_NORM_H
#define MINILLM_GRAD_NORM_H
#include "minillm_kernels.h"
#endif
