// Flash attention, forward and backward, for (N, T, D) tensors (N = batch·heads, D <= 128).
//
// The idea: never build the T×T score matrix. Each thread owns one query row and streams
// over the keys in tiles staged in shared memory, keeping an *online softmax*: a running
// maximum m, a running sum l of exp(s − m) and a running output acc. When a new score
// beats m, the old l and acc are rescaled by exp(m_old − m_new). Memory is O(T·D).
// The log-sum-exp m + log l is saved, so the backward recomputes each probability as
// exp(s − lse) instead of storing it.
//
// Two builds of each kernel from one template:
//   v1 (generic, `attention_forward`): the head size is a run-time argument, so a thread's
//      row (q_row, acc) is an array indexed by a run-time loop and lives in local memory —
//      every multiply-add goes through the L1 cache;
//   v2 (`attention_forward_d64`, …): the head size is a compile-time constant, the loops
//      unroll, and the row lives in registers. Same arithmetic, several times faster.
//
// Causal: queries are the last Tq of the Tk positions (offset = Tk − Tq), so query i sees
// keys j <= i + offset. A block skips the key tiles that none of its rows can see.
// Launch: grid (ceil(Tq / ATTN_THREADS), N), block ATTN_THREADS.
#include "reduce.cuh"

#define ATTN_THREADS 64
#define KEY_TILE 32
#define HEAD_DIM_MAX 128

// D > 0: compile-time head size; D == 0: run-time `d` (at most HEAD_DIM_MAX).
#define ROW_ARRAY (D > 0 ? D : HEAD_DIM_MAX)

template <int D>
__device__ void forward_rows(const float* q, const float* k, const float* v, float* out, float* lse, int t_query,
                             int t_key, int d, int causal, float scale) {
    __shared__ float k_tile[KEY_TILE][ROW_ARRAY];
    __shared__ float v_tile[KEY_TILE][ROW_ARRAY];
    const int dim = D > 0 ? D : d;
    const int z = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int offset = t_key - t_query;
    const bool active = i < t_query;
    q += ((long long)z * t_query + i) * dim;
    k += (long long)z * t_key * dim;
    v += (long long)z * t_key * dim;

    float q_row[ROW_ARRAY], acc[ROW_ARRAY];
#pragma unroll
    for (int c = 0; c < dim; ++c) {
        q_row[c] = active ? q[c] * scale : 0.0f;
        acc[c] = 0.0f;
    }
    float peak = -INFINITY, total = 0.0f;
    const int last = !active ? 0 : (causal ? i + offset + 1 : t_key);  // keys [0, last)
    const int block_rows_end = min((int)(blockIdx.x + 1) * (int)blockDim.x, t_query);
    const int block_keys = causal ? block_rows_end + offset : t_key;     // causal block skipping

    for (int j0 = 0; j0 < block_keys; j0 += KEY_TILE) {
        for (int e = threadIdx.x; e < KEY_TILE * dim; e += blockDim.x) {
            const int r = e / dim, c = e % dim, j = j0 + r;
            k_tile[r][c] = j < t_key ? k[j * dim + c] : 0.0f;
            v_tile[r][c] = j < t_key ? v[j * dim + c] : 0.0f;
        }
        __syncthreads();
        const int tile_end = min(KEY_TILE, last - j0);
        for (int r = 0; r < tile_end; ++r) {
            float s = 0.0f;
#pragma unroll
            for (int c = 0; c < dim; ++c) s += q_row[c] * k_tile[r][c];
            if (s > peak) {
                const float correction = expf(peak - s);
                total *= correction;
#pragma unroll
                for (int c = 0; c < dim; ++c) acc[c] *= correction;
                peak = s;
            }
            const float p = expf(s - peak);
            total += p;
#pragma unroll
            for (int c = 0; c < dim; ++c) acc[c] += p * v_tile[r][c];
        }
        __syncthreads();
    }
    if (active) {
        out += ((long long)z * t_query + i) * dim;
#pragma unroll
        for (int c = 0; c < dim; ++c) out[c] = acc[c] / total;
        lse[(long long)z * t_query + i] = peak + logf(total);
    }
}

// dQ_i = scale · Σ_j P_ij (dP_ij − row_dot_i) K_j with dP_ij = dO_i · V_j: one thread per
// query row, streaming over key tiles like the forward.
template <int D>
__device__ void backward_dq_rows(const float* q, const float* k, const float* v, const float* lse,
                                 const float* row_dot, const float* dout, float* dq, int t_query, int t_key, int d,
                                 int causal, float scale) {
    __shared__ float k_tile[KEY_TILE][ROW_ARRAY];
    __shared__ float v_tile[KEY_TILE][ROW_ARRAY];
    const int dim = D > 0 ? D : d;
    const int z = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int offset = t_key - t_query;
    const bool active = i < t_query;
    const long long row = (long long)z * t_query + i;
    k += (long long)z * t_key * dim;
    v += (long long)z * t_key * dim;

    float q_row[ROW_ARRAY], do_row[ROW_ARRAY], acc[ROW_ARRAY];
#pragma unroll
    for (int c = 0; c < dim; ++c) {
        q_row[c] = active ? q[row * dim + c] * scale : 0.0f;
        do_row[c] = active ? dout[row * dim + c] : 0.0f;
        acc[c] = 0.0f;
    }
    const float row_lse = active ? lse[row] : 0.0f, row_d = active ? row_dot[row] : 0.0f;
    const int last = !active ? 0 : (causal ? i + offset + 1 : t_key);
    const int block_rows_end = min((int)(blockIdx.x + 1) * (int)blockDim.x, t_query);
    const int block_keys = causal ? block_rows_end + offset : t_key;

    for (int j0 = 0; j0 < block_keys; j0 += KEY_TILE) {
        for (int e = threadIdx.x; e < KEY_TILE * dim; e += blockDim.x) {
            const int r = e / dim, c = e % dim, j = j0 + r;
            k_tile[r][c] = j < t_key ? k[j * dim + c] : 0.0f;
            v_tile[r][c] = j < t_key ? v[j * dim + c] : 0.0f;
        }
        __syncthreads();
        const int tile_end = min(KEY_TILE, last - j0);
        for (int r = 0; r < tile_end; ++r) {
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < dim; ++c) {
                s += q_row[c] * k_tile[r][c];
                dp += do_row[c] * v_tile[r][c];
            }
            const float ds = expf(s - row_lse) * (dp - row_d) * scale;
#pragma unroll
            for (int c = 0; c < dim; ++c) acc[c] += ds * k_tile[r][c];
        }
        __syncthreads();
    }
    if (active)
#pragma unroll
        for (int c = 0; c < dim; ++c) dq[row * dim + c] = acc[c];
}

// dV_j = Σ_i P_ij dO_i and dK_j = scale · Σ_i P_ij (dP_ij − row_dot_i) Q_i: one thread per
// key row, streaming over query tiles; no two threads write the same output, so no
// atomics. Launch: grid (ceil(Tk / ATTN_THREADS), N), block ATTN_THREADS.
template <int D>
__device__ void backward_dkv_rows(const float* q, const float* k, const float* v, const float* lse,
                                  const float* row_dot, const float* dout, float* dk, float* dv, int t_query,
                                  int t_key, int d, int causal, float scale) {
    __shared__ float q_tile[KEY_TILE][ROW_ARRAY];
    __shared__ float do_tile[KEY_TILE][ROW_ARRAY];
    __shared__ float lse_tile[KEY_TILE];
    __shared__ float dot_tile[KEY_TILE];
    const int dim = D > 0 ? D : d;
    const int z = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int offset = t_key - t_query;
    const bool active = j < t_key;
    const long long key_row = (long long)z * t_key + j;
    q += (long long)z * t_query * dim;
    dout += (long long)z * t_query * dim;
    lse += (long long)z * t_query;
    row_dot += (long long)z * t_query;

    float k_row[ROW_ARRAY], v_row[ROW_ARRAY], dk_acc[ROW_ARRAY], dv_acc[ROW_ARRAY];
#pragma unroll
    for (int c = 0; c < dim; ++c) {
        k_row[c] = active ? k[key_row * dim + c] * scale : 0.0f;
        v_row[c] = active ? v[key_row * dim + c] : 0.0f;
        dk_acc[c] = 0.0f;
        dv_acc[c] = 0.0f;
    }
    const int first = !active ? t_query : (causal ? max(j - offset, 0) : 0);  // queries [first, Tq)
    const int block_first_key = blockIdx.x * blockDim.x;
    const int block_first = causal ? max(block_first_key - offset, 0) : 0;
    const int tile_start = (block_first / KEY_TILE) * KEY_TILE;               // skip unseen query tiles

    for (int i0 = tile_start; i0 < t_query; i0 += KEY_TILE) {
        for (int e = threadIdx.x; e < KEY_TILE * dim; e += blockDim.x) {
            const int r = e / dim, c = e % dim, i = i0 + r;
            q_tile[r][c] = i < t_query ? q[i * dim + c] : 0.0f;
            do_tile[r][c] = i < t_query ? dout[i * dim + c] : 0.0f;
        }
        for (int r = threadIdx.x; r < KEY_TILE; r += blockDim.x) {
            lse_tile[r] = i0 + r < t_query ? lse[i0 + r] : 0.0f;
            dot_tile[r] = i0 + r < t_query ? row_dot[i0 + r] : 0.0f;
        }
        __syncthreads();
        const int r_begin = max(first - i0, 0), r_end = min(KEY_TILE, t_query - i0);
        for (int r = r_begin; r < r_end; ++r) {
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < dim; ++c) {
                s += q_tile[r][c] * k_row[c];
                dp += do_tile[r][c] * v_row[c];
            }
            const float p = expf(s - lse_tile[r]);
            const float ds = p * (dp - dot_tile[r]) * scale;
#pragma unroll
            for (int c = 0; c < dim; ++c) {
                dv_acc[c] += p * do_tile[r][c];
                dk_acc[c] += ds * q_tile[r][c];
            }
        }
        __syncthreads();
    }
    if (active)
#pragma unroll
        for (int c = 0; c < dim; ++c) {
            dk[key_row * dim + c] = dk_acc[c];
            dv[key_row * dim + c] = dv_acc[c];
        }
}

// row_dot[r] = Σ_c dout[r, c] · out[r, c]: the softmax Jacobian's correction term, needed
// by every key of the row. Launch: grid ceil(rows / 256), block 256.
extern "C" __global__ void attention_row_dot(const float* dout, const float* out, float* row_dot, int rows, int d) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) {
        float acc = 0.0f;
        for (int c = 0; c < d; ++c) acc += dout[(long long)r * d + c] * out[(long long)r * d + c];
        row_dot[r] = acc;
    }
}

// The launchable kernels: v1, generic in the head size, and v2 builds with the row in
// registers for the head sizes the models use (the backend picks by D).

extern "C" __global__ void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int t_query, int t_key, int d,
    int causal, float scale) {
    forward_rows<0>(q, k, v, out, lse, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dq(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dq, int t_query, int t_key, int d, int causal, float scale) {
    backward_dq_rows<0>(q, k, v, lse, row_dot, dout, dq, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dkv(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dk, float* dv, int t_query, int t_key, int d, int causal, float scale) {
    backward_dkv_rows<0>(q, k, v, lse, row_dot, dout, dk, dv, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_forward_d16(const float* q, const float* k, const float* v, float* out, float* lse, int t_query, int t_key, int d,
    int causal, float scale) {
    forward_rows<16>(q, k, v, out, lse, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dq_d16(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dq, int t_query, int t_key, int d, int causal, float scale) {
    backward_dq_rows<16>(q, k, v, lse, row_dot, dout, dq, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dkv_d16(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dk, float* dv, int t_query, int t_key, int d, int causal, float scale) {
    backward_dkv_rows<16>(q, k, v, lse, row_dot, dout, dk, dv, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_forward_d32(const float* q, const float* k, const float* v, float* out, float* lse, int t_query, int t_key, int d,
    int causal, float scale) {
    forward_rows<32>(q, k, v, out, lse, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dq_d32(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dq, int t_query, int t_key, int d, int causal, float scale) {
    backward_dq_rows<32>(q, k, v, lse, row_dot, dout, dq, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dkv_d32(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dk, float* dv, int t_query, int t_key, int d, int causal, float scale) {
    backward_dkv_rows<32>(q, k, v, lse, row_dot, dout, dk, dv, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_forward_d64(const float* q, const float* k, const float* v, float* out, float* lse, int t_query, int t_key, int d,
    int causal, float scale) {
    forward_rows<64>(q, k, v, out, lse, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dq_d64(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dq, int t_query, int t_key, int d, int causal, float scale) {
    backward_dq_rows<64>(q, k, v, lse, row_dot, dout, dq, t_query, t_key, d, causal, scale);
}

extern "C" __global__ void attention_backward_dkv_d64(const float* q, const float* k, const float* v, const float* lse, const float* row_dot,
    const float* dout, float* dk, float* dv, int t_query, int t_key, int d, int causal, float scale) {
    backward_dkv_rows<64>(q, k, v, lse, row_dot, dout, dk, dv, t_query, t_key, d, causal, scale);
}
