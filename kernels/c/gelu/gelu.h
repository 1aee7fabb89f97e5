/* GELU, tanh form, elementwise over n floats, in three complete versions, one file each:
 *
 *   y = 0.5·x·(1 + tanh(u)),  u = √(2/π)·x·(1 + 0.044715·x²)
 *   dy/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²),  t = tanh(u)
 *
 * One pass over memory instead of NumPy's dozen temporaries. Every version has the backend's
 * arguments (minillm_kernels.h) and can be read top to bottom; each adds one idea to the one
 * before:
 *
 *  v1_libm.c      the formula with libm's tanhf, one thread: tanhf is a call per element the
 *                 compiler cannot vectorise, so the loop is scalar (slower than NumPy's SIMD
 *                 tanh over the same array, despite NumPy's temporaries)
 *  v2_rational.c  tanh_rational (below) in place of tanhf: multiplies, adds, one divide and a
 *                 clamp, so the loop runs a full vector wide
 *  v3_threaded.c  v2 with the elements shared out over the OpenMP team; a small input (one
 *                 token's MLP) stays on the calling thread. The backend's gelu_forward and
 *                 gelu_backward are v3. */
#ifndef MINILLM_GELU_H
#define MINILLM_GELU_H
#include "minillm_kernels.h"

#define SQRT_2_OVER_PI 0.7978845608028654f

/* tanh as the rational approximation Eigen uses for float (ptanh_float): tanh(x) ≈ x·p(x²)/q(x²),
 * p of degree 6 in x² (so the numerator is odd of degree 13) and q of degree 3 in x² (degree 6),
 * coefficients fitted on [−7.9, 7.9], a few ulp in float. Beyond ±7.90531… tanh rounds to ±1 in
 * float, hence the clamp. */
static inline float tanh_rational(float x) {
    const float limit = 7.90531110763549805f;  /* |tanh| rounds to 1 in float beyond this */
    x = x > limit ? limit : (x < -limit ? -limit : x);
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 - 8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

#endif
