// SGEMM, C = A·B in fp32, in five steps from naive to fast. Each version is a complete,
// bounds-checked kernel for any M, N, K; the backend runs v4 (any strides, batched) and
// v5 (contiguous, aligned operands). Row-major: A is M×K, B is K×N, C is M×N.
//
//   v1 naive          one thread per C element; neighbouring threads walk down a column
//                     of C, so their loads of A and stores of C are strided (uncoalesced)
//   v2 coalesced      swap the thread mapping: a warp reads 32 consecutive B elements and
//                     writes 32 consecutive C elements in one memory transaction
//   v3 shared tiles   a block stages 32×32 tiles of A and B in shared memory, so each
//                     global element is read once per tile instead of 32 times
//   v4 register tiles each thread computes an 8×8 patch of a 128×128 block tile, keeping
//                     its accumulators in registers: per k, 8 + 8 shared loads feed
//                     8×8 = 64 FMAs (4 per load, where v3 does 1 per 2 loads)
//   v5 vectorised     v4 with 128-bit (float4) loads from global and shared memory

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

extern "C" __global__ void sgemm_v1_naive(const float* A, const float* B, float* C, int M, int N, int K) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    const int col = blockIdx.y * blockDim.y + threadIdx.y;
    if (row < M && col < N) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) acc += A[row * K + k] * B[k * N + col];
        C[row * N + col] = acc;
    }
}

extern "C" __global__ void sgemm_v2_coalesced(const float* A, const float* B, float* C, int M, int N, int K) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;  // threadIdx.x now walks along a row
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row < M && col < N) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) acc += A[row * K + k] * B[k * N + col];
        C[row * N + col] = acc;
    }
}

#define TILE 32

extern "C" __global__ void sgemm_v3_shared(const float* A, const float* B, float* C, int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();  // the whole tile is loaded before anyone reads it
        for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();  // everyone is done with the tile before it is overwritten
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

#define BM 128
#define BN 128
#define BK 8
#define TM 8
#define TN 8
#define GEMM_THREADS ((BM / TM) * (BN / TN))  // 256

// Batched and strided: element (m, k) of batch z of A is A[z*sAb + m*sAm + k*sAk], so a
// transposed operand is just other strides (no copy) and a broadcast batch has stride 0.
// C is contiguous. Launch: grid (ceil(N/BN), ceil(M/BM), batches), block GEMM_THREADS.
extern "C" __global__ void sgemm_v4_registers(const float* A, const float* B, float* C, int M, int N, int K,
                                              long long sAb, long long sAm, long long sAk,
                                              long long sBb, long long sBk, long long sBn) {
    __shared__ float As[BK][BM];  // transposed: a thread's TM values of one k are adjacent
    __shared__ float Bs[BK][BN];
    const int tid = threadIdx.x;
    const int thread_row = tid / (BN / TN), thread_col = tid % (BN / TN);
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    A += blockIdx.z * sAb;
    B += blockIdx.z * sBb;
    C += (long long)blockIdx.z * M * N;

    float acc[TM][TN];
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    float a_frag[TM], b_frag[TN];

    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = tid; e < BM * BK; e += GEMM_THREADS) {
            const int m = e / BK, k = e % BK;
            const int gm = row0 + m, gk = k0 + k;
            As[k][m] = (gm < M && gk < K) ? A[gm * sAm + gk * sAk] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += GEMM_THREADS) {
            const int k = e / BN, n = e % BN;
            const int gk = k0 + k, gn = col0 + n;
            Bs[k][n] = (gk < K && gn < N) ? B[gk * sBk + gn * sBn] : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < BK; ++k) {
#pragma unroll
            for (int i = 0; i < TM; ++i) a_frag[i] = As[k][thread_row * TM + i];
#pragma unroll
            for (int j = 0; j < TN; ++j) b_frag[j] = Bs[k][thread_col * TN + j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        const int gm = row0 + thread_row * TM + i;
        for (int j = 0; j < TN; ++j) {
            const int gn = col0 + thread_col * TN + j;
            if (gm < M && gn < N) C[gm * N + gn] = acc[i][j];
        }
    }
}

// Requires contiguous A (M×K) and B (K×N) per batch with K % 4 == 0 and N % 4 == 0 and
// 16-byte aligned bases, so every float4 below is aligned; tiles that hang over an edge
// fall back to bounds-checked scalar loads.
extern "C" __global__ void sgemm_v5_vectorized(const float* A, const float* B, float* C, int M, int N, int K) {
    __shared__ __align__(16) float As[BK][BM];
    __shared__ __align__(16) float Bs[BK][BN];
    const int tid = threadIdx.x;
    const int thread_row = tid / (BN / TN), thread_col = tid % (BN / TN);
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    A += (long long)blockIdx.z * M * K;
    B += (long long)blockIdx.z * K * N;
    C += (long long)blockIdx.z * M * N;
    // one float4 of A (4 consecutive k of one row) and one of B (4 consecutive n) per thread
    const int a_m = tid / (BK / 4), a_k = (tid % (BK / 4)) * 4;
    const int b_k = tid / (BN / 4), b_n = (tid % (BN / 4)) * 4;

    float acc[TM][TN];
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    float a_frag[TM], b_frag[TN];

    for (int k0 = 0; k0 < K; k0 += BK) {
        const int gm = row0 + a_m, gka = k0 + a_k;
        if (gm < M && gka + 3 < K) {
            const float4 a4 = *reinterpret_cast<const float4*>(&A[gm * K + gka]);
            As[a_k + 0][a_m] = a4.x; As[a_k + 1][a_m] = a4.y; As[a_k + 2][a_m] = a4.z; As[a_k + 3][a_m] = a4.w;
        } else {
            for (int q = 0; q < 4; ++q) As[a_k + q][a_m] = (gm < M && gka + q < K) ? A[gm * K + gka + q] : 0.0f;
        }
        const int gkb = k0 + b_k, gn = col0 + b_n;
        if (gkb < K && gn + 3 < N) {
            const float4 b4 = *reinterpret_cast<const float4*>(&B[gkb * N + gn]);
            Bs[b_k][b_n + 0] = b4.x; Bs[b_k][b_n + 1] = b4.y; Bs[b_k][b_n + 2] = b4.z; Bs[b_k][b_n + 3] = b4.w;
        } else {
            for (int q = 0; q < 4; ++q) Bs[b_k][b_n + q] = (gkb < K && gn + q < N) ? B[gkb * N + gn + q] : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < BK; ++k) {
#pragma unroll
            for (int i = 0; i < TM; i += 4) {  // 128-bit shared-memory reads too
                const float4 a4 = *reinterpret_cast<const float4*>(&As[k][thread_row * TM + i]);
                a_frag[i] = a4.x; a_frag[i + 1] = a4.y; a_frag[i + 2] = a4.z; a_frag[i + 3] = a4.w;
            }
#pragma unroll
            for (int j = 0; j < TN; j += 4) {
                const float4 b4 = *reinterpret_cast<const float4*>(&Bs[k][thread_col * TN + j]);
                b_frag[j] = b4.x; b_frag[j + 1] = b4.y; b_frag[j + 2] = b4.z; b_frag[j + 3] = b4.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        const int gm = row0 + thread_row * TM + i;
        for (int j = 0; j < TN; ++j) {
            const int gn = col0 + thread_col * TN + j;
            if (gm < M && gn < N) C[gm * N + gn] = acc[i][j];
        }
    }
}
