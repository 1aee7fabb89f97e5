/* Adam and AdamW, in four complete versions, one file each. The update
 * (reference.Backend.adam_update):
 *
 *   AdamW: θ ← θ(1 − ηλ)    Adam: g ← g + λθ
 *   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  θ ← θ − step_size · m / (√v · rsqrt_bc2 + ε)
 *
 * with step_size = η / (1 − β₁ᵗ) and rsqrt_bc2 = 1 / √(1 − β₂ᵗ), computed once by the caller.
 * v1–v3 take one tensor with the backend's adam_update arguments, v4 a whole model's tensors
 * with adam_update_many's (minillm_kernels.h). Each adds one idea to the one before:
 *
 *  v1_passes.c    the update as NumPy runs it: one loop per operation, through a temporary as
 *                 large as the parameter, about a dozen passes over memory for one step
 *  v2_fused.c     one loop: each element of θ, g, m, v read once and θ, m, v written once,
 *                 28 bytes per parameter, so the step runs at the memory's bandwidth
 *  v3_threaded.c  v2 with a tensor's elements shared out over the OpenMP team (a small tensor
 *                 stays on the calling thread)
 *  v4_many.c      every tensor of a model in one call (PyTorch's "foreach" / multi-tensor
 *                 apply): the tensors are one index space cut into one equal range per thread,
 *                 so a model of many small tensors pays one call and one team start, not one
 *                 each, and no small tensor runs on one core. The backend's adam_update_many
 *                 is v4, and adam_update is v4 on one tensor. */
#ifndef MINILLM_ADAM_H
#define MINILLM_ADAM_H
#include "minillm_kernels.h"
#endif
