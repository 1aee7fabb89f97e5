// Softmax cross-entropy fused: loss_r = lse_r − logits[r, target_r], and its gradient
// (softmax − onehot) · dloss_r, without ever storing the probabilities. Rows whose target
// equals ignore_index get loss 0 and gradient 0.
#include "reduce.cuh"

#define CE_THREADS 256

// Launch: grid rows, block CE_THREADS.
extern "C" __global__ void cross_entropy_forward(const float* logits, const long long* target, float* loss,
                                                 float* lse, int classes, long long ignore_index) {
    __shared__ float scratch[CE_THREADS];
    const long long row = blockIdx.x;
    logits += row * classes;
    float peak = -INFINITY;
    for (int c = threadIdx.x; c < classes; c += blockDim.x) peak = fmaxf(peak, logits[c]);
    peak = block_reduce_max(peak, scratch);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < classes; c += blockDim.x) sum += expf(logits[c] - peak);
    sum = block_reduce_sum(sum, scratch);
    if (threadIdx.x == 0) {
        const float row_lse = peak + logf(sum);
        const long long t = target[row];
        lse[row] = row_lse;
        loss[row] = t == ignore_index ? 0.0f : row_lse - logits[t];
    }
}

// Launch: grid ceil(rows·classes / 256), block 256.
extern "C" __global__ void cross_entropy_backward(const float* logits, const long long* target, const float* lse,
                                                  const float* dloss, float* dlogits, int rows, int classes,
                                                  long long ignore_index) {
    const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (long long)rows * classes) {
        const long long r = e / classes, c = e % classes, t = target[r];
        const float g = expf(logits[e] - lse[r]) - (c == t ? 1.0f : 0.0f);
        dlogits[e] = t == ignore_index ? 0.0f : g * dloss[r];
    }
}
