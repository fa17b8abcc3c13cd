// The plain attention kernels: the reference forward (any dtypes, strides and head dims up
// to 256; f32 arithmetic; one warp per query and head, keys one at a time with an online
// softmax), used for shapes the tensor-core kernel is not built for and as the oracle it is
// tested against on the device; and the maps pass, shared by both forwards.

#include <cmath>

#include "device_util.cuh"
#include "glimpse/backend/cuda/error.hpp"
#include "glimpse/backend/cuda/flash_attention.hpp"

namespace glimpse::detail::cuda_impl {

namespace {

constexpr int kMaxPerLane = 8;  // d, dv <= 256
constexpr float kLog2e = 1.4426950408889634f;

// Block (tile, head); its 4 warps take the tile's queries in turn.
__global__ void __launch_bounds__(128) attention_reference_kernel(attention_params p) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int* t = p.tiles + 4 * blockIdx.x;
    const std::int64_t q0 = t[0], q1 = t[1], k0 = t[2], k1 = t[3], h = blockIdx.y;
    for (std::int64_t i = q0 + warp; i < q1; i += 4) {
        float q[kMaxPerLane], acc[kMaxPerLane];
#pragma unroll
        for (int u = 0; u < kMaxPerLane; ++u) {
            const std::int64_t e = lane + 32 * u;
            q[u] = e < p.d ? load_f32(p.q, p.q_type, i * p.q_row + h * p.q_head + e) : 0.0f;
            acc[u] = 0.0f;
        }
        float m = -INFINITY, l = 0.0f;
        for (std::int64_t j = k0; j < k1; ++j) {
            float dot = 0.0f;
#pragma unroll
            for (int u = 0; u < kMaxPerLane; ++u) {
                const std::int64_t e = lane + 32 * u;
                if (e < p.d) dot += q[u] * load_f32(p.k, p.k_type, j * p.k_row + h * p.k_head + e);
            }
            float s = warp_sum(dot) * p.scale_log2;
            if (p.mask) s += p.mask[i * p.mask_ld + j] * kLog2e;
            const float mn = fmaxf(m, s);
            const float ms = mn == -INFINITY ? 0.0f : mn;  // nothing unmasked yet: terms are 0
            const float alpha = exp2f(m - ms), pj = exp2f(s - ms);
            l = l * alpha + pj;
#pragma unroll
            for (int u = 0; u < kMaxPerLane; ++u) {
                const std::int64_t e = lane + 32 * u;
                if (e < p.dv) acc[u] = acc[u] * alpha + pj * load_f32(p.v, p.v_type, j * p.v_row + h * p.v_head + e);
            }
            m = mn;
        }
        const float inv = 1.0f / l;
#pragma unroll
        for (int u = 0; u < kMaxPerLane; ++u) {
            const std::int64_t e = lane + 32 * u;
            if (e < p.dv) p.o[i * p.o_row + h * p.o_head + e] = acc[u] * inv;
        }
        if (p.lse2 && lane == 0) p.lse2[h * p.sq + i] = (m == -INFINITY ? 0.0f : m) + log2f(l);
    }
}

constexpr int kMapTile = 32;  // queries x keys per block; 32 x 8 threads, 4 queries each

// Block (query tile, key tile): recomputes the scores of every head from q, k and the saved
// log2-sum-exp, and writes / accumulates only the maps asked for.
__global__ void __launch_bounds__(256) attention_maps_kernel(attention_params p, attention_maps_params m) {
    extern __shared__ float smem[];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kMapTile + tx;
    const std::int64_t i0 = std::int64_t{blockIdx.x} * kMapTile, j0 = std::int64_t{blockIdx.y} * kMapTile;
    const std::int64_t i_last = min(i0 + kMapTile, p.sq) - 1;
    // Keys no query of the tile may see: nothing to do (segments are sorted, so the tile's
    // queries see keys within [lo of its first, hi of its last)).
    if (j0 >= m.seg_hi[i_last] || j0 + kMapTile <= m.seg_lo[i0]) return;
    const int dp = static_cast<int>(p.d) + 1;  // padded rows: the 32 keys a warp reads sit in 32 banks
    float* qs = smem;                          // [32][d + 1]
    float* ks = smem + kMapTile * dp;          // [32][d + 1]
    float* red = ks + kMapTile * dp;           // [8][32] for the pooled reduction over queries
    float mean[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const std::int64_t j = j0 + tx;
    for (std::int64_t h = 0; h < p.heads; ++h) {
        __syncthreads();
        for (int e = tid; e < kMapTile * p.d; e += 256) {
            const int r = e / static_cast<int>(p.d), c = e % static_cast<int>(p.d);
            const std::int64_t qi = i0 + r, kj = j0 + r;
            qs[r * dp + c] = qi < p.sq ? load_f32(p.q, p.q_type, qi * p.q_row + h * p.q_head + c) : 0.0f;
            ks[r * dp + c] = kj < p.sk ? load_f32(p.k, p.k_type, kj * p.k_row + h * p.k_head + c) : 0.0f;
        }
        __syncthreads();
        float pr[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int r = ty + 8 * u;
            const std::int64_t i = i0 + r;
            pr[u] = 0.0f;
            if (i >= p.sq || j >= p.sk || j < m.seg_lo[i] || j >= m.seg_hi[i]) continue;
            float dot = 0.0f;
            for (int c = 0; c < p.d; ++c) dot += qs[r * dp + c] * ks[tx * dp + c];
            float s = dot * p.scale_log2;
            if (p.mask) s += p.mask[i * p.mask_ld + j] * kLog2e;
            pr[u] = exp2f(s - p.lse2[h * p.sq + i]);
            if (m.per_head) m.per_head[(h * p.sq + i) * p.sk + j] = pr[u];
            mean[u] += pr[u];
        }
        for (std::int64_t r = 0; r < m.r; ++r) {
            float part = 0.0f;
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const std::int64_t i = i0 + ty + 8 * u;
                // A weightless query adds nothing, even where its row would be NaN.
                const float w = i < p.sq ? m.query_weights[r * m.qw_ld + i] : 0.0f;
                if (w != 0.0f) part += w * pr[u];
            }
            red[ty * kMapTile + tx] = part;
            __syncthreads();
            if (ty == 0 && j < p.sk) {
                float sum = 0.0f;
                for (int y = 0; y < 8; ++y) sum += red[y * kMapTile + tx];
                if (sum != 0.0f) atomicAdd(m.pooled + (r * p.heads + h) * p.sk + j, sum);
            }
            __syncthreads();
        }
    }
    if (m.mean && j < p.sk) {
        const float inv_h = 1.0f / static_cast<float>(p.heads);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const std::int64_t i = i0 + ty + 8 * u;
            if (i < p.sq) m.mean[i * p.sk + j] = mean[u] * inv_h;
        }
    }
}

}  // namespace

void launch_attention_reference(const attention_params& p, stream_t s) {
    check(p.d <= 32 * kMaxPerLane && p.dv <= 32 * kMaxPerLane, "cuda attention: head dims ", p.d, "/", p.dv,
          " exceed the reference kernel's 256");
    check(p.heads <= 65535, "cuda attention: ", p.heads, " heads");
    if (p.num_tiles == 0) return;
    attention_reference_kernel<<<dim3(static_cast<unsigned>(p.num_tiles), static_cast<unsigned>(p.heads)), 128, 0, s>>>(
        p);
    GLIMPSE_CUDA_CHECK_LAUNCH("attention_reference");
}

void launch_attention_maps(const attention_params& p, const attention_maps_params& m, stream_t s) {
    check(p.lse2 != nullptr, "cuda attention maps: the forward did not save its log-sum-exp");
    if (p.sq == 0 || p.sk == 0) return;
    const std::size_t smem = (2 * kMapTile * (p.d + 1) + 8 * kMapTile) * sizeof(float);
    if (smem > 48 * 1024)
        GLIMPSE_CUDA_CHECK(cudaFuncSetAttribute(attention_maps_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>((p.sq + kMapTile - 1) / kMapTile),
                    static_cast<unsigned>((p.sk + kMapTile - 1) / kMapTile));
    check(grid.y <= 65535, "cuda attention maps: ", p.sk, " keys exceed the grid");
    attention_maps_kernel<<<grid, dim3(kMapTile, 8), smem, s>>>(p, m);
    GLIMPSE_CUDA_CHECK_LAUNCH("attention_maps");
}

}  // namespace glimpse::detail::cuda_impl
