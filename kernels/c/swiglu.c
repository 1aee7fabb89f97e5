/* SwiGLU's gate: y = silu(a) · b = a·σ(a)·b over (rows × cols) values, and its backward
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
 * a and b are read with their own row strides (lda, ldb floats) and da, db written with ldg:
 * with gate_proj and up_proj as one (2·hidden)-wide product, a and b are the two halves of
 * each row of that product, and da, db the two halves of its gradient's rows, so neither the
 * split nor the join copies anything and the projection's backward stays one GEMM.
 *
 * Threads over rows only above SWIGLU_PARALLEL_FROM values (one token's MLP stays on this
 * thread). */
#include <math.h>
#include "exp_poly.h"
#include "minillm_kernels.h"

#define SWIGLU_PARALLEL_FROM 32768

static inline float sigmoid(float a) {
    const float z = exp_poly(-fabsf(a)), r = 1.0f / (1.0f + z);
    return a >= 0.0f ? r : z * r;
}

MINILLM_API
void swiglu_forward(const float *a, const float *b, float *y, long long rows, long long cols, long long lda,
                    long long ldb) {
#pragma omp parallel for schedule(static) if (rows * cols >= SWIGLU_PARALLEL_FROM)
    for (long long r = 0; r < rows; ++r) {
        const float *ar = a + r * lda, *br = b + r * ldb;
        float *yr = y + r * cols;
#pragma omp simd
        for (long long c = 0; c < cols; ++c) yr[c] = ar[c] * sigmoid(ar[c]) * br[c];
    }
}

MINILLM_API
void swiglu_backward(const float *a, const float *b, const float *dy, float *da, float *db, long long rows,
                     long long cols, long long lda, long long ldb, long long ldg) {
#pragma omp parallel for schedule(static) if (rows * cols >= SWIGLU_PARALLEL_FROM)
    for (long long r = 0; r < rows; ++r) {
        const float *ar = a + r * lda, *br = b + r * ldb, *dyr = dy + r * cols;
        float *dar = da + r * ldg, *dbr = db + r * ldg;
#pragma omp simd
        for (long long c = 0; c < cols; ++c) {
            const float s = sigmoid(ar[c]), silu = ar[c] * s;
            dar[c] = dyr[c] * br[c] * (s + silu * (1.0f - s));
            dbr[c] = dyr[c] * silu;
        }
    }
}
