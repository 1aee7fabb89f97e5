/* A vectorisable e^x for the softmax loops (glibc's expf is a call the compiler cannot
 * vectorise). Shared by the attention kernels. */
#ifndef MINILLM_EXP_POLY_H
#define MINILLM_EXP_POLY_H
#include <math.h>

/* e^x for x <= 0 to within 2 ulp, branch-free, so loops over it vectorise:
 *  - x = n·ln2 + r with n = round(x / ln2) (1.4426950… = 1/ln2) and |r| <= ln2/2;
 *  - ln2 is subtracted in two parts (Cody–Waite): 0.693359375 has only 9 significant bits,
 *    so n·0.693359375 is exact in float, and −2.12194440e-4 is the rest of ln2;
 *  - e^r = 1 + r + r²·p(r), p of degree 5 with the coefficients of Cephes' expf (a
 *    minimax fit on [−ln2/2, ln2/2], close to 1/2!, 1/3!, … 1/7!);
 *  - 2^n is built directly as a float's exponent bits ((n + 127) << 23).
 * Below −87 the result would leave float's normal range, so x is clamped there (e^−87 ≈ 1.6e−38,
 * which every caller treats as 0). */
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const union { int i; float f; } scale = {.i = ((int)n + 127) << 23};  /* 2^n */
    return p * scale.f;
}

#endif
