// Layer norm over the last axis of an (N, D) tensor: one block per row. The statistics
// take two block reductions (the mean, then Σ(x − mean)² — the two-pass variance keeps
// float32 accurate when the mean is large); the second read of the row hits the cache.
#include "reduce.cuh"

#define LN_THREADS 128

// Launch: grid rows, block LN_THREADS.
extern "C" __global__ void layernorm_forward(const float* x, const float* w, const float* b, float* y,
                                             float* mean, float* rstd, int d, float eps) {
    __shared__ float scratch[LN_THREADS];
    const long long row = blockIdx.x;
    x += row * d;
    y += row * d;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) sum += x[c];
    const float mu = block_reduce_sum(sum, scratch) / d;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) squares += (x[c] - mu) * (x[c] - mu);
    const float inv = rsqrtf(block_reduce_sum(squares, scratch) / d + eps);
    for (int c = threadIdx.x; c < d; c += blockDim.x) y[c] = (x[c] - mu) * inv * w[c] + b[c];
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = inv;
    }
}

// dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)) with g = dy ⊙ w. Each block walks rows
// blockIdx.x, blockIdx.x + gridDim.x, … and keeps its own partial sums of dw and db
// (column c always belongs to the same thread, so no atomics); layernorm_reduce_columns
// adds the blocks' partials. Launch: grid blocks, block LN_THREADS.
extern "C" __global__ void layernorm_backward(const float* dy, const float* x, const float* w, const float* mean,
                                              const float* rstd, float* dx, float* dw_part, float* db_part,
                                              int rows, int d) {
    __shared__ float scratch[LN_THREADS];
    dw_part += (long long)blockIdx.x * d;
    db_part += (long long)blockIdx.x * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        dw_part[c] = 0.0f;
        db_part[c] = 0.0f;
    }
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float mu = mean[r], inv = rstd[r];
        const float* dy_r = dy + (long long)r * d;
        const float* x_r = x + (long long)r * d;
        float g_sum = 0.0f, gx_sum = 0.0f;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float xhat = (x_r[c] - mu) * inv, g = dy_r[c] * w[c];
            g_sum += g;
            gx_sum += g * xhat;
            dw_part[c] += dy_r[c] * xhat;
            db_part[c] += dy_r[c];
        }
        const float g_mean = block_reduce_sum(g_sum, scratch) / d;
        const float gx_mean = block_reduce_sum(gx_sum, scratch) / d;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            const float xhat = (x_r[c] - mu) * inv;
            dx[(long long)r * d + c] = inv * (dy_r[c] * w[c] - g_mean - xhat * gx_mean);
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
