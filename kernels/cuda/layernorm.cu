// Layer norm over the last axis of an (N, D) tensor: one block per row (forward), a
// grid-stride over rows (backward). The statistics take two block reductions: the mean,
// then Σ(x − mean)² — the two-pass variance keeps float32 accurate when the mean is large.
//
//   v1 (generic, `layernorm_forward`): any D; every pass re-reads the row from memory
//      (three reads in the forward; the backward adds a read-modify-write of the dw/db
//      partial sums for every element)
//   v2 (`layernorm_forward_r8`, `_r32`): each thread keeps its PER = 8 or 32 elements of
//      the row — and in the backward its columns' dw/db sums — in registers, so the row
//      is read once and the partial sums are written once per block (D <= 128·PER)
#include "reduce.cuh"

#define LN_THREADS 128

template <int PER>
__device__ void forward_row(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                            int d, float eps) {
    __shared__ float scratch[LN_THREADS];
    const long long row = blockIdx.x;
    x += row * d;
    y += row * d;
    float values[PER > 0 ? PER : 1];
    float sum = 0.0f;
    if (PER > 0) {
#pragma unroll
        for (int e = 0; e < PER; ++e) {
            const int c = threadIdx.x + e * LN_THREADS;
            values[e] = c < d ? x[c] : 0.0f;
            sum += values[e];
        }
    } else {
        for (int c = threadIdx.x; c < d; c += blockDim.x) sum += x[c];
    }
    const float mu = block_reduce_sum(sum, scratch) / d;
    float squares = 0.0f;
    if (PER > 0) {
#pragma unroll
        for (int e = 0; e < PER; ++e)
            if (threadIdx.x + e * LN_THREADS < d) squares += (values[e] - mu) * (values[e] - mu);
    } else {
        for (int c = threadIdx.x; c < d; c += blockDim.x) squares += (x[c] - mu) * (x[c] - mu);
    }
    const float inv = rsqrtf(block_reduce_sum(squares, scratch) / d + eps);
    if (PER > 0) {
#pragma unroll
        for (int e = 0; e < PER; ++e) {
            const int c = threadIdx.x + e * LN_THREADS;
            if (c < d) y[c] = (values[e] - mu) * inv * w[c] + b[c];
        }
    } else {
        for (int c = threadIdx.x; c < d; c += blockDim.x) y[c] = (x[c] - mu) * inv * w[c] + b[c];
    }
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = inv;
    }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)) with g = dy ⊙ w. Each block walks rows
// blockIdx.x, blockIdx.x + gridDim.x, … and keeps its own partial sums of dw and db
// (column c always belongs to the same thread, so no atomics); layernorm_reduce_columns
// adds the blocks' partials.
template <int PER>
__device__ void backward_rows(const float* dy, const float* x, const float* w, const float* mean, const float* rstd,
                              float* dx, float* dw_part, float* db_part, int rows, int d) {
    __shared__ float scratch[LN_THREADS];
    dw_part += (long long)blockIdx.x * d;
    db_part += (long long)blockIdx.x * d;
    float dw_acc[PER > 0 ? PER : 1], db_acc[PER > 0 ? PER : 1], xhat[PER > 0 ? PER : 1], g[PER > 0 ? PER : 1];
    if (PER > 0) {
#pragma unroll
        for (int e = 0; e < PER; ++e) dw_acc[e] = db_acc[e] = 0.0f;
    } else {
        for (int c = threadIdx.x; c < d; c += blockDim.x) dw_part[c] = db_part[c] = 0.0f;
    }
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float mu = mean[r], inv = rstd[r];
        const float* dy_r = dy + (long long)r * d;
        const float* x_r = x + (long long)r * d;
        float* dx_r = dx + (long long)r * d;
        float g_sum = 0.0f, gx_sum = 0.0f;
        if (PER > 0) {
#pragma unroll
            for (int e = 0; e < PER; ++e) {
                const int c = threadIdx.x + e * LN_THREADS;
                const float dy_c = c < d ? dy_r[c] : 0.0f;
                xhat[e] = c < d ? (x_r[c] - mu) * inv : 0.0f;
                g[e] = c < d ? dy_c * w[c] : 0.0f;
                g_sum += g[e];
                gx_sum += g[e] * xhat[e];
                dw_acc[e] += dy_c * xhat[e];
                db_acc[e] += dy_c;
            }
        } else {
            for (int c = threadIdx.x; c < d; c += blockDim.x) {
                const float xh = (x_r[c] - mu) * inv, gc = dy_r[c] * w[c];
                g_sum += gc;
                gx_sum += gc * xh;
                dw_part[c] += dy_r[c] * xh;
                db_part[c] += dy_r[c];
            }
        }
        const float g_mean = block_reduce_sum(g_sum, scratch) / d;
        const float gx_mean = block_reduce_sum(gx_sum, scratch) / d;
        if (PER > 0) {
#pragma unroll
            for (int e = 0; e < PER; ++e) {
                const int c = threadIdx.x + e * LN_THREADS;
                if (c < d) dx_r[c] = inv * (g[e] - g_mean - xhat[e] * gx_mean);
            }
        } else {
            for (int c = threadIdx.x; c < d; c += blockDim.x)
                dx_r[c] = inv * (dy_r[c] * w[c] - g_mean - (x_r[c] - mu) * inv * gx_mean);
        }
    }
    if (PER > 0) {
#pragma unroll
        for (int e = 0; e < PER; ++e) {
            const int c = threadIdx.x + e * LN_THREADS;
            if (c < d) {
                dw_part[c] = dw_acc[e];
                db_part[c] = db_acc[e];
            }
        }
    }
}

// out[c] = Σ_b part[b, c]. Launch: grid ceil(d / 256), block 256.
extern "C" __global__ void layernorm_reduce_columns(const float* part, float* out, int blocks, int d) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < d) {
        float acc = 0.0f;
        for (int b = 0; b < blocks; ++b) acc += part[(long long)b * d + c];
        out[c] = acc;
    }
}

// Launch forward: grid rows, block LN_THREADS. Backward: grid blocks, block LN_THREADS.
extern "C" __global__ void layernorm_forward(const float* x, const float* w, const float* b, float* y, float* mean,
                                             float* rstd, int d, float eps) {
    forward_row<0>(x, w, b, y, mean, rstd, d, eps);
}
extern "C" __global__ void layernorm_forward_r8(const float* x, const float* w, const float* b, float* y, float* mean,
                                                float* rstd, int d, float eps) {
    forward_row<8>(x, w, b, y, mean, rstd, d, eps);
}
extern "C" __global__ void layernorm_forward_r32(const float* x, const float* w, const float* b, float* y,
                                                 float* mean, float* rstd, int d, float eps) {
    forward_row<32>(x, w, b, y, mean, rstd, d, eps);
}
extern "C" __global__ void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                                              const float* rstd, float* dx, float* dw_part, float* db_part, int rows,
                                              int d) {
    backward_rows<0>(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, d);
}
extern "C" __global__ void layernorm_backward_r8(const float* dy, const float* x, const float* w, const float* mean,
                                                 const float* rstd, float* dx, float* dw_part, float* db_part,
                                                 int rows, int d) {
    backward_rows<8>(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, d);
}
extern "C" __global__ void layernorm_backward_r32(const float* dy, const float* x, const float* w, const float* mean,
                                                  const float* rstd, float* dx, float* dw_part, float* db_part,
                                                  int rows, int d) {
    backward_rows<32>(dy, x, w, mean, rstd, dx, dw_part, db_part, rows, d);
}
