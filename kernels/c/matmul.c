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
 *                  broadcasts of A feed MR·NR/VW fused multiply-adds
 *  v5 threaded     v4 with the packing and the tiles shared out among the cores (OpenMP)
 *
 * Packing also makes transposed or strided operands free: only the packing routines
 * see the strides. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "minillm_kernels.h"
#include "sgemm_block.h"

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

/* ---- v4/v5: packing + micro-kernel ------------------------------------------------------------
 *
 * The register tile is MR rows × NV vectors of C. Per k the micro-kernel loads NV vectors of
 * the packed B row, broadcasts MR values of A, and issues MR·NV fused multiply-adds into
 * accumulators that never leave the registers. It is sized to the register file:
 *
 *   AVX-512 (32 zmm): 12 rows × 2 vectors of 16 = 24 accumulators + 2 B vectors + 1 broadcast
 *   AVX2    (16 ymm):  6 rows × 2 vectors of  8 = 12 accumulators + 2 B vectors + 1 broadcast
 *
 * (A tile wider than the register file is not "more work per load": the compiler spills the
 * accumulators to the stack on every k, and the kernel runs at memory speed. The first 6×64
 * AVX-512 tile did exactly that on an AVX2 machine: 5 GFLOP/s.)
 *
 * Cache arithmetic (Goto & van de Geijn; BLIS's analytical model). Loops, outer to inner:
 * jc over NC columns (B panel KC×NC in L3), pc over KC, ic over MC rows (A block MC×KC in L2),
 * jr over NR slivers of B, ir over MR slivers of A, then the micro-kernel over KC.
 *   - the B sliver KC×NR is reused by every ir, so it must stay in L1 (32 KB on Zen 3/4):
 *     AVX2 256×16×4 B = 16 KB, AVX-512 256×32×4 B = 32 KB (streams from L1/L2 at 1 load per
 *     12 FMAs, which L2's 64 B/cycle feeds)
 *   - the A block MC×KC is reused by every jr, so it stays in L2 (512 KB Zen 3, 1 MB Zen 4):
 *     AVX2 120×256×4 B = 120 KB, AVX-512 240×256×4 B = 240 KB
 *   - the B panel KC×NC = 256×4096×4 B = 4 MB stays in the shared L3 (32 MB).
 * All threads pack the panels together and then share out the (jr, ir) tiles. Edge tiles are
 * computed whole on zero-padded panels and only their valid part is written back. */
#if defined(__AVX512F__)
#define VW 16     /* floats per vector register */
#define MR 12
#else
#define VW 8
#define MR 6
#endif
#define NV 2
#define NR (VW * NV)
#define KC 256
#define MC (20 * MR)
#define NC 4096

typedef float vec __attribute__((vector_size(VW * sizeof(float))));

/* B[k0:k0+kc, j0:j0+nc] into slivers of NR columns: sliver s holds, for each k, its NR
 * values side by side (zero-padded past the edge). Slivers are shared out among threads. */
static void pack_b(const float *B, long sbk, long sbn, int kc, int nc, float *packed) {
#pragma omp for schedule(static)
    for (int s = 0; s < nc; s += NR) {
        const int width = nc - s < NR ? nc - s : NR;
        float *out = packed + (long)s * kc;
        for (int k = 0; k < kc; ++k) {
            const float *row = B + k * sbk + s * sbn;
            if (sbn == 1 && width == NR)
                memcpy(out, row, sizeof(float) * NR);
            else {
                for (int j = 0; j < width; ++j) out[j] = row[j * sbn];
                for (int j = width; j < NR; ++j) out[j] = 0.0f;
            }
            out += NR;
        }
    }
}

/* A[i0:i0+mc, k0:k0+kc] into slivers of MR rows: for each k, the sliver's MR values. */
static void pack_a(const float *A, long sam, long sak, int mc, int kc, float *packed) {
#pragma omp for schedule(static)
    for (int s = 0; s < mc; s += MR) {
        const int height = mc - s < MR ? mc - s : MR;
        float *out = packed + (long)s * kc;
        for (int k = 0; k < kc; ++k) {
            const float *col = A + s * sam + k * sak;
            for (int i = 0; i < height; ++i) out[i] = col[i * sam];
            for (int i = height; i < MR; ++i) out[i] = 0.0f;
            out += MR;
        }
    }
}

/* C[0:rows, 0:cols] (+)= Σ_k a[k] ⊗ b[k] over the packed slivers. A full tile is read and
 * written in place (vector loads and stores, row stride ldc); an edge tile goes through a
 * small buffer so that nothing outside C is touched. */
static inline void micro_kernel(int kc, const float *restrict a, const float *restrict b, float *restrict C,
                                long ldc, int rows, int cols, int accumulate) {
    vec acc[MR][NV];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = (vec){0};
    for (int k = 0; k < kc; ++k) {
        vec bv[NV];
        for (int v = 0; v < NV; ++v) memcpy(&bv[v], b + VW * v, sizeof bv[v]);
        for (int i = 0; i < MR; ++i)  /* scalar × vector: one broadcast, NV FMAs */
            for (int v = 0; v < NV; ++v) acc[i][v] += a[i] * bv[v];
        a += MR;
        b += NR;
    }
    if (rows == MR && cols == NR) {
        for (int i = 0; i < MR; ++i)
            for (int v = 0; v < NV; ++v) {
                vec c = acc[i][v];
                if (accumulate) {
                    vec old;
                    memcpy(&old, C + i * ldc + VW * v, sizeof old);
                    c += old;
                }
                memcpy(C + i * ldc + VW * v, &c, sizeof c);
            }
        return;
    }
    float tile[MR * NR] __attribute__((aligned(64)));
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) memcpy(tile + i * NR + VW * v, &acc[i][v], sizeof acc[i][v]);
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j) C[i * ldc + j] = (accumulate ? C[i * ldc + j] : 0.0f) + tile[i * NR + j];
}

/* C (+)= packed A block · packed B panel, tile by tile; the tiles are shared out. */
static void macro_kernel(const float *pa, const float *pb, float *C, long ldc, int mc, int nc, int kc,
                         int accumulate) {
    const int slivers_b = (nc + NR - 1) / NR, slivers_a = (mc + MR - 1) / MR;
#pragma omp for collapse(2) schedule(static)
    for (int jr = 0; jr < slivers_b; ++jr)      /* jr outer: a B sliver stays in L1 across ir */
        for (int ir = 0; ir < slivers_a; ++ir) {
            const int j = jr * NR, i = ir * MR;
            micro_kernel(kc, pa + (long)i * kc, pb + (long)j * kc, C + i * ldc + j, ldc,
                         mc - i < MR ? mc - i : MR, nc - j < NR ? nc - j : NR, accumulate);
        }
}

/* aligned_alloc wants a size that is a multiple of the alignment (C11 7.22.3.1). */
static float *alloc_floats(size_t count) {
    return aligned_alloc(64, (sizeof(float) * count + 63) / 64 * 64);
}

/* C (M×N, row stride ldc) = A·B, or += when `accumulate`; element (m, k) of A is A[m*sam + k*sak],
 * likewise B. The blocks are chosen evenly (M = 128 is two blocks of 66 rows, not 120 + 8). */
void sgemm_block(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                 long sbn, long ldc, int accumulate, int threads) {
    if (K == 0) {
        if (!accumulate)
            for (int i = 0; i < M; ++i) memset(C + i * ldc, 0, sizeof(float) * N);
        return;
    }
    const int k_blocks = (K + KC - 1) / KC, m_blocks = (M + MC - 1) / MC;
    const int kc_max = (K + k_blocks - 1) / k_blocks;
    const int mc_max = ((M + m_blocks - 1) / m_blocks + MR - 1) / MR * MR;
    const int nc_max = N < NC ? N : NC;
    float *packed_b = alloc_floats((size_t)kc_max * ((nc_max + NR - 1) / NR * NR));
    float *packed_a = alloc_floats((size_t)kc_max * mc_max);
    /* one parallel region; the `omp for` loops inside share the work and end in barriers */
#pragma omp parallel num_threads(threads) if (threads > 1)
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += kc_max) {
            const int kc = K - pc < kc_max ? K - pc : kc_max;
            pack_b(B + pc * sbk + jc * sbn, sbk, sbn, kc, nc, packed_b);
            for (int ic = 0; ic < M; ic += mc_max) {
                const int mc = M - ic < mc_max ? M - ic : mc_max;
                pack_a(A + ic * sam + pc * sak, sam, sak, mc, kc, packed_a);
                macro_kernel(packed_a, packed_b, C + (long)ic * ldc + jc, ldc, mc, nc, kc, accumulate || pc > 0);
            }
        }
    }
    free(packed_a);
    free(packed_b);
}

/* Few rows of A (generating one token: M is the batch, often 1). Packing B would copy the
 * whole matrix to use each element once, and a register tile of MR rows would be mostly
 * padding, so B is read where it lies, the columns of C shared out among the threads:
 *   B with contiguous rows (sbn = 1):    C[i, :] += A[i, k] · B[k, :], vectorised along N;
 *   B with contiguous columns (sbk = 1, x · Wᵀ as a Linear layer computes it):
 *                                        C[i, j] = A[i, :] · B[:, j], vectorised along K.
 * Returns 0 when neither layout applies (the packed path takes it). */
#define FEW_ROWS 4
#define COLUMN_CHUNK 256

static int gemm_few_rows(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                         long sbn, int threads) {
    const int parallel = threads > 1 && (long)N * K >= 65536;  /* below that, waking a thread costs more */
    if (sbn == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
        for (int j0 = 0; j0 < N; j0 += COLUMN_CHUNK) {
            const int j1 = j0 + COLUMN_CHUNK < N ? j0 + COLUMN_CHUNK : N;
            for (int i = 0; i < M; ++i) {
                float *restrict c = C + (long)i * N;
                for (int j = j0; j < j1; ++j) c[j] = 0.0f;
                for (int k = 0; k < K; ++k) {
                    const float a = A[i * sam + k * sak];
                    const float *restrict b = B + k * sbk;
#pragma omp simd
                    for (int j = j0; j < j1; ++j) c[j] += a * b[j];
                }
            }
        }
        return 1;
    }
    if (sbk == 1 && sak == 1) {
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
        for (int j = 0; j < N; ++j) {
            const float *restrict b = B + j * sbn;
            for (int i = 0; i < M; ++i) {
                const float *restrict a = A + i * sam;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int k = 0; k < K; ++k) acc += a[k] * b[k];
                C[(long)i * N + j] = acc;
            }
        }
        return 1;
    }
    return 0;
}

static void gemm_one(const float *A, const float *B, float *C, int M, int N, int K, long sam, long sak, long sbk,
                     long sbn, int threads) {
    if (M <= FEW_ROWS && gemm_few_rows(A, B, C, M, N, K, sam, sak, sbk, sbn, threads))
        return;
    sgemm_block(A, B, C, M, N, K, sam, sak, sbk, sbn, N, 0, threads);
}

void sgemm_strided(const float *A, const float *B, float *C, int batches, int M, int N, int K, long long sab,
                   long long sam, long long sak, long long sbb, long long sbk, long long sbn, int threads) {
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (batches >= 2 * threads && M <= 2 * MC) {
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
