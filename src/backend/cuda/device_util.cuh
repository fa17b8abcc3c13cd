// Device helpers shared by the cuda backend's kernels: dtype loads/stores and reductions.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "glimpse/core/dtype.hpp"

namespace glimpse::detail::cuda_impl {

// Element i of a buffer of dtype t, as f32. The switch is uniform across a launch: no divergence.
__device__ __forceinline__ float load_f32(const void* p, dtype t, std::int64_t i) {
    switch (t) {
        case dtype::f32:
            return static_cast<const float*>(p)[i];
        case dtype::bf16:
            return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        default:
            return __half2float(static_cast<const __half*>(p)[i]);
    }
}

// Round to nearest even on narrowing, as glimpse::store_f32 (NaN stays NaN, overflow -> inf).
__device__ __forceinline__ void store_f32(void* p, dtype t, std::int64_t i, float v) {
    switch (t) {
        case dtype::f32:
            static_cast<float*>(p)[i] = v;
            return;
        case dtype::bf16:
            static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
            return;
        default:
            static_cast<__half*>(p)[i] = __float2half_rn(v);
            return;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum (or max) over a block of blockDim.x threads (a multiple of 32, <= 1024); every thread
// gets the result. `scratch` holds 32 floats; the call ends with the block synchronised.
template <bool Max>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = Max ? warp_max(v) : warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < nw ? scratch[lane] : (Max ? -INFINITY : 0.0f);
    r = Max ? warp_max(r) : warp_sum(r);
    return r;
}

// Grid-stride loop bounds: enough blocks to fill the device, capped.
inline unsigned grid_for(std::int64_t n, int threads) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

}  // namespace glimpse::detail::cuda_impl
