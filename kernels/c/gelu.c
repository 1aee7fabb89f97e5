/* GELU, tanh form: y = 0.5·x·(1 + tanh(u)), u = √(2/π)·x·(1 + 0.044715·x²), and its
 * derivative 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(u).
 * One pass over memory instead of NumPy's dozen temporaries.
 *
 * glibc's tanhf is a scalar call the compiler cannot vectorise, which made this loop
 * slower than NumPy's SIMD tanh. tanh_rational is the rational approximation Eigen uses
 * for float (ptanh_float): tanh(x) ≈ x·p(x²)/q(x²), p of degree 6 in x² (so the numerator
 * is odd of degree 13) and q of degree 3 in x² (degree 6), coefficients fitted on
 * [−7.9, 7.9], a few ulp in float. Beyond ±7.90531… tanh rounds to ±1 in float, hence the
 * clamp. Multiplies, adds and one divide: the loop runs a full vector wide. */
#include "minillm_kernels.h"

#define SQRT_2_OVER_PI 0.7978845608028654f

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

/* GELU, tanh form, elementwise over n values */
MINILLM_API
void gelu_forward(const float *x, float *y, long long n) {
    /* a few thousand values (one token's MLP) stay on this thread: see layernorm_forward */
#pragma omp parallel for simd schedule(static) if (n >= 32768)
    for (long long i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanh_rational(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v * v)));
    }
}

MINILLM_API
void gelu_backward(const float *x, const float *dy, float *dx, long long n) {
#pragma omp parallel for simd schedule(static)
    for (long long i = 0; i < n; ++i) {
        const float v = x[i], v2 = v * v;
        const float t = tanh_rational(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v2));
        const float grad = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v2);
        dx[i] = dy[i] * grad;
    }
}
