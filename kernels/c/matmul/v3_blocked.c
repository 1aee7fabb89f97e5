/* v3 blocked: v2 on blocks sized for the caches. A block of B, V3_KC × V3_NC floats (1 MB),
 * is reused by all V3_MC rows of a block of A from the cache (L2 where it fits, else L3)
 * instead of being fetched from memory again for each row. */
#include <string.h>
#include "minillm_kernels.h"

#define V3_MC 64
#define V3_KC 256
#define V3_NC 1024

MINILLM_API
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
