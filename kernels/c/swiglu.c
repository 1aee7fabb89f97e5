/* SwiGLU's gate: y = silu(a) · b = a·σ(a)·b over n values, and its backward
 *     da = dy · b · σ(a) · (1 + a·(1 − σ(a))),   db = dy · a·σ(a).
 * The composite (sigmoid, two products; in the backward five more arrays) passes over memory
 * about ten times and NumPy's sigmoid is a where() of two exps; here each pass reads a, b
 * (and dy) once and writes once: a streaming kernel, bound by memory bandwidth.
 *
 * σ(a) without overflow: with z = e^−|a| ∈ (0, 1], σ = 1/(1+z) for a ≥ 0 and z/(1+z) below,
 * a select, not a branch, and exp_poly (exp_poly.h, vectorisable, valid for arguments ≤ 0)
 * instead of glibc's scalar expf, so the loop runs a full vector wide. Large |a| give σ
 * next to 0 or exactly 1, so silu ≈ 0 or a: no inf, no NaN.
 *
 * Threads only above SWIGLU_PARALLEL_FROM values (one token's MLP stays on this thread). */
#include <math.h>
#include "exp_poly.h"
#include "minillm_kernels.h"

#define SWIGLU_PARALLEL_FROM 32768

static inline float sigmoid(float a) {
    const float z = exp_poly(-fabsf(a)), r = 1.0f / (1.0f + z);
    return a >= 0.0f ? r : z * r;
}

void swiglu_forward(const float *a, const float *b, float *y, long long n) {
#pragma omp parallel for simd schedule(static) if (n >= SWIGLU_PARALLEL_FROM)
    for (long long i = 0; i < n; ++i) y[i] = a[i] * sigmoid(a[i]) * b[i];
}

void swiglu_backward(const float *a, const float *b, const float *dy, float *da, float *db, long long n) {
#pragma omp parallel for simd schedule(static) if (n >= SWIGLU_PARALLEL_FROM)
    for (long long i = 0; i < n; ++i) {
        const float s = sigmoid(a[i]), silu = a[i] * s;
        da[i] = dy[i] * b[i] * (s + silu * (1.0f - s));
        db[i] = dy[i] * silu;
    }
}
