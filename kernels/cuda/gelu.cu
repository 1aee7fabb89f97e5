// GELU, tanh form, elementwise: y = 0.5·x·(1 + tanh(u)), u = √(2/π)·x·(1 + 0.044715·x²),
// and its derivative. One thread per element, a grid-stride loop for any n.
// Launch: grid min(ceil(n / 256), 65535), block 256.
#define SQRT_2_OVER_PI 0.7978845608028654f

extern "C" __global__ void gelu_forward(const float* x, float* y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v * v)));
    }
}

extern "C" __global__ void gelu_backward(const float* x, const float* dy, float* dx, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i], v2 = v * v;
        const float t = tanhf(SQRT_2_OVER_PI * v * (1.0f + 0.044715f * v2));
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v2));
    }
}
