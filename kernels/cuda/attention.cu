// Flash attention, forward and backward, for (N, T, D) tensors (N = batch·heads, D <= 128).
//
// The idea: never build the T×T score matrix. Each thread owns one query row and streams
// over the keys in tiles staged in shared memory, keeping an *online softmax*: a running
// maximum m, a running sum l of exp(s − m) and a running output acc. When a new score
// beats m, the old l and acc are rescaled by exp(m_old − m_new). Memory is O(T·D).
// The log-sum-exp m + log l is saved, so the backward recomputes each probability as
// exp(s − lse) instead of storing it.
//
// Causal: queries are the last Tq of the Tk positions (offset = Tk − Tq), so query i sees
// keys j <= i + offset. A block skips the key tiles that none of its rows can see.
// Launch: grid (ceil(Tq / ATTN_THREADS), N), block ATTN_THREADS.
#include "reduce.cuh"

#define ATTN_THREADS 64
#define KEY_TILE 32
#define HEAD_DIM_MAX 128

extern "C" __global__ void attention_forward(const float* q, const float* k, const float* v, float* out,
                                             float* lse, int t_query, int t_key, int d, int causal, float scale) {
    __shared__ float k_tile[KEY_TILE][HEAD_DIM_MAX];
    __shared__ float v_tile[KEY_TILE][HEAD_DIM_MAX];
    const int z = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int offset = t_key - t_query;
    const bool active = i < t_query;
    q += ((long long)z * t_query + i) * d;
    k += (long long)z * t_key * d;
    v += (long long)z * t_key * d;

    float q_row[HEAD_DIM_MAX], acc[HEAD_DIM_MAX];
    for (int c = 0; c < d; ++c) {
        q_row[c] = active ? q[c] * scale : 0.0f;
        acc[c] = 0.0f;
    }
    float peak = -INFINITY, total = 0.0f;
    const int last = !active ? 0 : (causal ? i + offset + 1 : t_key);  // keys [0, last)
    const int block_rows_end = min((int)(blockIdx.x + 1) * (int)blockDim.x, t_query);
    const int block_keys = causal ? block_rows_end + offset : t_key;     // causal block skipping

    for (int j0 = 0; j0 < block_keys; j0 += KEY_TILE) {
        for (int e = threadIdx.x; e < KEY_TILE * d; e += blockDim.x) {
            const int r = e / d, c = e % d, j = j0 + r;
            k_tile[r][c] = j < t_key ? k[j * d + c] : 0.0f;
            v_tile[r][c] = j < t_key ? v[j * d + c] : 0.0f;
        }
        __syncthreads();
        const int tile_end = min(KEY_TILE, last - j0);
        for (int r = 0; r < tile_end; ++r) {
            float s = 0.0f;
            for (int c = 0; c < d; ++c) s += q_row[c] * k_tile[r][c];
            if (s > peak) {
                const float correction = expf(peak - s);
                total *= correction;
                for (int c = 0; c < d; ++c) acc[c] *= correction;
                peak = s;
            }
            const float p = expf(s - peak);
            total += p;
            for (int c = 0; c < d; ++c) acc[c] += p * v_tile[r][c];
        }
        __syncthreads();
    }
    if (active) {
        out += ((long long)z * t_query + i) * d;
        for (int c = 0; c < d; ++c) out[c] = acc[c] / total;
        lse[(long long)z * t_query + i] = peak + logf(total);
    }
}

// row_dot[z, i] = Σ_c dout[z, i, c] · out[z, i, c]: the softmax Jacobian's correction
// term, needed by every key of the row. Launch: grid ceil(rows / 256), block 256.
extern "C" __global__ void attention_row_dot(const float* dout, const float* out, float* row_dot, int rows, int d) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) {
        float acc = 0.0f;
        for (int c = 0; c < d; ++c) acc += dout[(long long)r * d + c] * out[(long long)r * d + c];
        row_dot[r] = acc;
    }
}

// dQ_i = scale · Σ_j P_ij (dP_ij − row_dot_i) K_j with dP_ij = dO_i · V_j: one thread per
// query row, streaming over key tiles like the forward. Launch as attention_forward.
extern "C" __global__ void attention_backward_dq(const float* q, const float* k, const float* v, const float* lse,
                                                 const float* row_dot, const float* dout, float* dq,
                                                 int t_query, int t_key, int d, int causal, float scale) {
    __shared__ float k_tile[KEY_TILE][HEAD_DIM_MAX];
    __shared__ float v_tile[KEY_TILE][HEAD_DIM_MAX];
    const int z = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int offset = t_key - t_query;
    const bool active = i < t_query;
    const long long row = (long long)z * t_query + i;
    k += (long long)z * t_key * d;
    v += (long long)z * t_key * d;

    float q_row[HEAD_DIM_MAX], do_row[HEAD_DIM_MAX], acc[HEAD_DIM_MAX];
    for (int c = 0; c < d; ++c) {
        q_row[c] = active ? q[row * d + c] * scale : 0.0f;
        do_row[c] = active ? dout[row * d + c] : 0.0f;
        acc[c] = 0.0f;
    }
    const float row_lse = active ? lse[row] : 0.0f, row_d = active ? row_dot[row] : 0.0f;
    const int last = !active ? 0 : (causal ? i + offset + 1 : t_key);
    const int block_rows_end = min((int)(blockIdx.x + 1) * (int)blockDim.x, t_query);
    const int block_keys = causal ? block_rows_end + offset : t_key;

    for (int j0 = 0; j0 < block_keys; j0 += KEY_TILE) {
        for (int e = threadIdx.x; e < KEY_TILE * d; e += blockDim.x) {
            const int r = e / d, c = e % d, j = j0 + r;
            k_tile[r][c] = j < t_key ? k[j * d + c] : 0.0f;
            v_tile[r][c] = j < t_key ? v[j * d + c] : 0.0f;
        }
        __syncthreads();
        const int tile_end = min(KEY_TILE, last - j0);
        for (int r = 0; r < tile_end; ++r) {
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < d; ++c) {
                s += q_row[c] * k_tile[r][c];
                dp += do_row[c] * v_tile[r][c];
            }
            const float ds = expf(s - row_lse) * (dp - row_d) * scale;
            for (int c = 0; c < d; ++c) acc[c] += ds * k_tile[r][c];
        }
        __syncthreads();
    }
    if (active)
        for (int c = 0; c < d; ++c) dq[row * d + c] = acc[c];
}

// dV_j = Σ_i P_ij dO_i and dK_j = scale · Σ_i P_ij (dP_ij − row_dot_i) Q_i: one thread per
// key row, streaming over query tiles; no two threads write the same output, so no
// atomics. Launch: grid (ceil(Tk / ATTN_THREADS), N), block ATTN_THREADS.
extern "C" __global__ void attention_backward_dkv(const float* q, const float* k, const float* v, const float* lse,
                                                  const float* row_dot, const float* dout, float* dk, float* dv,
                                                  int t_query, int t_key, int d, int causal, float scale) {
    __shared__ float q_tile[KEY_TILE][HEAD_DIM_MAX];
    __shared__ float do_tile[KEY_TILE][HEAD_DIM_MAX];
    __shared__ float lse_tile[KEY_TILE];
    __shared__ float dot_tile[KEY_TILE];
    const int z = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int offset = t_key - t_query;
    const bool active = j < t_key;
    const long long key_row = (long long)z * t_key + j;
    q += (long long)z * t_query * d;
    dout += (long long)z * t_query * d;
    lse += (long long)z * t_query;
    row_dot += (long long)z * t_query;

    float k_row[HEAD_DIM_MAX], v_row[HEAD_DIM_MAX], dk_acc[HEAD_DIM_MAX], dv_acc[HEAD_DIM_MAX];
    for (int c = 0; c < d; ++c) {
        k_row[c] = active ? k[key_row * d + c] : 0.0f;
        v_row[c] = active ? v[key_row * d + c] : 0.0f;
        dk_acc[c] = 0.0f;
        dv_acc[c] = 0.0f;
    }
    const int first = !active ? t_query : (causal ? max(j - offset, 0) : 0);  // queries [first, Tq)
    const int block_first_key = blockIdx.x * blockDim.x;
    const int block_first = causal ? max(block_first_key - offset, 0) : 0;
    const int tile_start = (block_first / KEY_TILE) * KEY_TILE;               // skip unseen query tiles

    for (int i0 = tile_start; i0 < t_query; i0 += KEY_TILE) {
        for (int e = threadIdx.x; e < KEY_TILE * d; e += blockDim.x) {
            const int r = e / d, c = e % d, i = i0 + r;
            q_tile[r][c] = i < t_query ? q[i * d + c] : 0.0f;
            do_tile[r][c] = i < t_query ? dout[i * d + c] : 0.0f;
        }
        for (int r = threadIdx.x; r < KEY_TILE; r += blockDim.x) {
            lse_tile[r] = i0 + r < t_query ? lse[i0 + r] : 0.0f;
            dot_tile[r] = i0 + r < t_query ? row_dot[i0 + r] : 0.0f;
        }
        __syncthreads();
        const int r_begin = max(first - i0, 0), r_end = min(KEY_TILE, t_query - i0);
        for (int r = r_begin; r < r_end; ++r) {
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < d; ++c) {
                s += q_tile[r][c] * k_row[c];
                dp += do_tile[r][c] * v_row[c];
            }
            const float p = expf(s * scale - lse_tile[r]);
            const float ds = p * (dp - dot_tile[r]) * scale;
            for (int c = 0; c < d; ++c) {
                dv_acc[c] += p * do_tile[r][c];
                dk_acc[c] += ds * q_tile[r][c];
            }
        }
        __syncthreads();
    }
    if (active)
        for (int c = 0; c < d; ++c) {
            dk[key_row * d + c] = dk_acc[c];
            dv[key_row * d + c] = dv_acc[c];
        }
}
