// Block-wide reductions through shared memory (a tree: half the threads add the other
// half's values, log2(blockDim.x) rounds). No warp shuffles, so the same code runs
// unchanged on the CPU harness. blockDim.x must be a power of two, at most 1024.
#pragma once

#ifndef INFINITY  // NVRTC has no <math.h>; the host harness gets it from <cmath>
#define INFINITY __int_as_float(0x7f800000)
#endif

__device__ float block_reduce_sum(float value, float* scratch) {
    const int tid = threadIdx.x;
    scratch[tid] = value;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (tid < stride) scratch[tid] += scratch[tid + stride];
        __syncthreads();
    }
    const float total = scratch[0];
    __syncthreads();  // everyone has read scratch[0] before it is reused
    return total;
}

__device__ float block_reduce_max(float value, float* scratch) {
    const int tid = threadIdx.x;
    scratch[tid] = value;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (tid < stride) scratch[tid] = fmaxf(scratch[tid], scratch[tid + stride]);
        __syncthreads();
    }
    const float peak = scratch[0];
    __syncthreads();
    return peak;
}
