/* What every kernel file of minillm's `c` backend includes. float32 throughout; row-major;
 * every function handles any size.
 *
 * MINILLM_API marks a function that Python calls. Its definition is its only declaration:
 * the cffi build (minillm/backends/c/build.py) compiles every .c file under kernels/c and
 * reads the signatures of the MINILLM_API definitions for the bindings, so a new kernel is
 * one new .c file, with no header or source list to edit. A kernel that calls a function
 * of another file declares it below. */
#ifndef MINILLM_KERNELS_H
#define MINILLM_KERNELS_H

#define MINILLM_API

/* A function that runs before the backend has checked this CPU's extensions (build_info.c's
 * minillm_isa_missing, and what runs when the library is loaded): compiled for the baseline
 * x86-64, whatever the build's -march, so that it runs on any x86-64 CPU. */
#if defined(__x86_64__) && defined(__GNUC__)
#define BASELINE __attribute__((target("arch=x86-64")))
#else
#define BASELINE
#endif

/* matmul/sgemm.c, for linear.c and linear_int8.c: C = A·B + bias, strided operands */
void sgemm_bias(const float *A, const float *B, const float *bias, float *C, int M, int N, int K, long long sam,
                long long sak, long long sbk, long long sbn, int threads);

/* matmul_bf16.c, for linear.c: the same on bf16-rounded operands (v4), float32 sums */
void matmul_bf16_product(const float *A, const float *B, const float *bias, float *C, int M, int N, int K,
                         long long sam, long long sak, long long sbk, long long sbn, int threads);

#endif
