/* Matrix multiplication the way BLIS builds it, in five steps.
 *
 *  v1 naive        i-j-k: the inner loop walks down a column of B, one cache line per
 *                  element — memory-bound long before the arithmetic units are busy
 *  v2 reordered    i-k-j: the inner loop now runs along rows of B and C, contiguous,
 *                  so it streams and the compiler vectorises it (SIMD)
 *  v3 blocked      v2 on blocks sized for the caches, so a block of B is reused from
 *                  L2 by many rows instead of refetched from memory
 *  v4 packed       BLIS: copy (pack) a KC×NC panel of B and an MC×KC block of A into
 *                  contiguous slivers in exactly the order the micro-kernel reads them,
 *                  then a register-blocked micro-kernel computes an MR×NR tile of C held
 *                  entirely in vector registers: per k, one row of B (NR floats) and MR
 *                  broadcasts of A feed MR·NR/16 fused multiply-adds
 *  v5 threaded     v4 with the MC blocks of A shared out among the cores (OpenMP)
 *
 * Packing also makes transposed or strided operands free: only the packing routines
 * see the strides. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "minillm_kernels.h"

void matmul_v1_naive(const float *A, const float *B, float *C, int M, int N, int K) {
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k) acc += A[(long)i * K + k] * B[(long)k * N + j];
            C[(long)i * N + j] = acc;
        }
}

void matmul_v2_reordered(const float *A, const float *B, float *C, int M, int N, int K) {
    memset(C, 0, sizeof(float) * (size_t)M * N);
    for (int i = 0; i < M; ++i)
        for (int k = 0; k < K; ++k) {
            const float a = A[(long)i * K + k];
            const float *b = B + (long)k * N;
            float *c = C + (long)i * N;
            for (int j = 0; j < N; ++j) c[j] += a * b[j];
        }
}

#define V3_MC 64
#define V3_KC 256
#define V3_NC 1024

void matmul_v3_blocked(const float *A, const float *B, float *C, int M, int N, int K) {
    memset(C, 0, sizeof(float) * (size_t)M * N);
    for (int j0 = 0; j0 < N; j0 += V3_NC)
        for (int k0 = 0; k0 < K; k0 += V3_KC)
            for (int i0 = 0; i0 < M; i0 += V3_MC) {
                const int j1 = j0 + V3_NC < N ? j0 + V3_NC : N;
                const int k1 = k0 + V3_KC < K ? k0 + V3_KC : K;
                const int i1 = i0 + V3_MC < M ? i0 + V3_MC : M;
                for (int i = i0; i < i1; ++i)
                    for (int k = k0; k < k1; ++k) {
                        const float a = A[(long)i * K + k];
                        const float *b = B + (long)k * N;
                        float *c = C + (long)i * N;
                        for (int j = j0; j < j1; ++j) c[j] += a * b[j];
                    }
            }
}

/* ---- v4/v5: packing + micro-kernel ------------------------------------------------------------ */
#define MR 6      /* rows of the register tile */
#define NV 4      /* 16-float vectors per tile row: 6×4 = 24 accumulators of 32 zmm registers */
#define NR (16 * NV) /* columns of the register tile */
#define KC 384   /* depth of a packed panel (tuned on a 2-core AMD EPYC, AVX-512) */
#define MC (16 * MR) /* an MC×KC block of A stays in L2; a multiple of MR, so packing never pads past it */
#define NC 4096  /* a KC×NC panel of B (4 MB) stays in L3 */

typedef float v16 __attribute__((vector_size(64)));  /* AVX-512 register; split by the compiler elsewhere */

/* B[k0:k0+kc, j0:j0+nc] into slivers of NR columns: sliver s holds, for each k, its NR
 * values side by side (zero-padded past the edge). */
static void pack_b(const float *B, long sbk, long sbn, int kc, int nc, float *packed) {
    for (int s = 0; s < nc; s += NR) {
        const int width = nc - s < NR ? nc - s : NR;
        for (int k = 0; k < kc; ++k) {
            const float *row = B + k * sbk + s * sbn;
            for (int j = 0; j < width; ++j) packed[j] = row[j * sbn];
            for (int j = width; j < NR; ++j) packed[j] = 0.0f;
            packed += NR;
        }
    }
}

/* A[i0:i0+mc, k0:k0+kc] into slivers of MR rows: for each k, the sliver's MR values. */
static void pack_a(const float *A, long sam, long sak, int mc, int kc, float *packed) {
    for (int s = 0; s < mc; s += MR) {
        const int height = mc - s < MR ? mc - s : MR;
        for (int k = 0; k < kc; ++k) {
            const float *col = A + s * sam + k * sak;
            for (int i = 0; i < height; ++i) packed[i] = col[i * sam];
            for (int i = height; i < MR; ++i) packed[i] = 0.0f;
            packed += MR;
        }
    }
}

/* tile (MR×NR, row stride NR) = Σ_k a[k] ⊗ b[k]: MR·NV accumulators live in registers;
 * per k, NV vector loads of B and MR broadcasts of A feed MR·NV fused multiply-adds. */
static inline void micro_kernel(int kc, const float *restrict a, const float *restrict b, float *restrict tile) {
    v16 acc[MR][NV];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = (v16){0};
    for (int k = 0; k < kc; ++k) {
        v16 bv[NV];
        for (int v = 0; v < NV; ++v) memcpy(&bv[v], b + 16 * v, sizeof bv[v]);
        for (int i = 0; i < MR; ++i)  /* scalar × vector: one broadcast FMA each */
            for (int v = 0; v < NV; ++v) acc[i][v] += a[i] * bv[v];
        a += MR;
        b += NR;
    }
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) memcpy(tile + i * NR + 16 * v, &acc[i][v], sizeof acc[i][v]);
}

/* C[i0.., j0..] (+)= packed_a · packed_b for one MC×NC block, tile by tile. */
static void macro_kernel(const float *pa, const float *pb, float *C, long ldc, int mc, int nc, int kc,
                         int accumulate) {
    float tile[MR * NR] __attribute__((aligned(64)));
    for (int j = 0; j < nc; j += NR) {
        const int width = nc - j < NR ? nc - j : NR;
        for (int i = 0; i < mc; i += MR) {
            const int height = mc - i < MR ? mc - i : MR;
            micro_kernel(kc, pa + (long)i * kc, pb + (long)j * kc, tile);
            for (int r = 0; r < height; ++r) {
                float *c = C + (i + r) * ldc + j;
                const float *t = tile + r * NR;
                if (accumulate)
                    for (int q = 0; q < width; ++q) c[q] += t[q];
                else
                    for (int q = 0; q < width; ++q) c[q] = t[q];
            }
        }
    }
}

static void gemm_one(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                     long sbn, int threads) {
    if (K == 0) {
        memset(C, 0, sizeof(float) * (size_t)M * N);
        return;
    }
    const int widest = N < NC ? N : NC, deepest = K < KC ? K : KC;
    float *pack_b_buffer = aligned_alloc(64, sizeof(float) * (size_t)deepest * ((widest + NR - 1) / NR * NR));
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            pack_b(B + pc * sbk + jc * sbn, sbk, sbn, kc, nc, pack_b_buffer);
            const int blocks = (M + MC - 1) / MC;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && blocks > 1)
            for (int block = 0; block < blocks; ++block) {
                float pack_a_buffer[(MC + MR - 1) / MR * MR * KC] __attribute__((aligned(64)));
                const int ic = block * MC, mc = M - ic < MC ? M - ic : MC;
                pack_a(A + ic * sam + pc * sak, sam, sak, mc, kc, pack_a_buffer);
                macro_kernel(pack_a_buffer, pack_b_buffer, C + (long)ic * N + jc, N, mc, nc, kc, pc > 0);
            }
        }
    }
    free(pack_b_buffer);
}

void sgemm_strided(const float *A, const float *B, float *C, int batches, int M, int N, int K, long long sab,
                   long long sam, long long sak, long long sbb, long long sbk, long long sbn, int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (batches >= 2 * threads && M <= MC) {
        /* many small products (attention heads): one product per thread at a time */
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
        for (int z = 0; z < batches; ++z)
            gemm_one(A + z * sab, B + z * sbb, C + (long long)z * M * N, M, N, K, sam, sak, sbk, sbn, 1);
    } else {
        for (int z = 0; z < batches; ++z)
            gemm_one(A + z * sab, B + z * sbb, C + (long long)z * M * N, M, N, K, sam, sak, sbk, sbn, threads);
    }
}

void matmul_v4_packed(const float *A, const float *B, float *C, int M, int N, int K) {
    sgemm_strided(A, B, C, 1, M, N, K, 0, K, 1, 0, N, 1, 1);
}

void matmul_v5_threaded(const float *A, const float *B, float *C, int M, int N, int K) {
    sgemm_strided(A, B, C, 1, M, N, K, 0, K, 1, 0, N, 1, 0);
}
