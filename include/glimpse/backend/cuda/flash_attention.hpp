#pragma once
// The fused attention of the cuda backend: one params struct for every kernel that
// implements it (the tensor-core flash kernel and the plain reference kernel beside it),
// the flash kernel's traits per head dim, and a static switch over the head dims it is
// instantiated for, in the manner of flash-attention's HEADDIM_SWITCH.
//
// Work decomposition: the host cuts the queries into tiles of `block_q` that never
// straddle a segment (Qwen's cu_seqlens: images, frames, Qwen2.5-VL windows) and lists
// them as {q0, q1, k0, k1}; a launch is one block per (tile, head). So window attention over
// thousands of 64-token windows and a multi-image batch are one launch, and no block
// walks keys outside its segment: the work is sum over segments of s_i^2, not S^2.
//
// Head dims 72 and 80 (Qwen3-VL and Qwen2.5-VL's vision towers) are not padded to 96 or
// 128: Q K^T runs d/16 k-steps of mma.m16n8k16 plus, for d = 72, one m16n8k8 step, and
// P V runs d/8 n-tiles of 8 columns (9 for 72, 10 for 80). The FLOPs executed are the
// FLOPs of the problem, apart from the query/key tile remainders at segment ends.
//
// No CUDA types here: plain C++ includes this header (the backend, the benchmarks).

#include <cstdint>

#include "glimpse/backend/cuda/arena.hpp"
#include "glimpse/core/dtype.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse::detail::cuda_impl {

// One attention call, out_h = softmax(scale q_h k_h^T + mask) v_h per head h, on the device.
struct attention_params {
    // q [Sq, H, d], k [Sk, H, d], v [Sk, H, dv]; strides in elements (inner stride 1).
    const void* q = nullptr;
    const void* k = nullptr;
    const void* v = nullptr;
    dtype q_type = dtype::f32, k_type = dtype::f32, v_type = dtype::f32;
    std::int64_t q_row = 0, q_head = 0, k_row = 0, k_head = 0, v_row = 0, v_head = 0;
    float* o = nullptr;  // f32 [Sq, H, dv]
    std::int64_t o_row = 0, o_head = 0;
    std::int64_t sq = 0, sk = 0, heads = 0, d = 0, dv = 0;
    float scale_log2 = 0.0f;      // scale * log2(e): the softmax runs in base 2 (exp2f)
    const float* mask = nullptr;  // additive f32 [Sq, Sk] (row stride mask_ld), or null
    std::int64_t mask_ld = 0;
    // Query tiles {q0, q1, k0, k1} (int32 x 4 each, device memory): queries [q0, q1) attend
    // to keys [k0, k1). The reference kernel reads the same list.
    const std::int32_t* tiles = nullptr;
    std::int32_t num_tiles = 0;
    std::int32_t tile_q = 0;  // the block_q the tiles were cut for
    // log2-sum-exp of each query's scaled scores, f32 [H, Sq], written when non-null: the
    // maps pass turns recomputed scores into probabilities with it.
    float* lse2 = nullptr;
};

// The attention maps pass (after a forward that wrote lse2): recomputes scores tile by
// tile and writes only what is asked. Each query's keys are [seg_lo[i], seg_hi[i]).
struct attention_maps_params {
    float* per_head = nullptr;             // [H, Sq, Sk] or null
    float* mean = nullptr;                 // [Sq, Sk] or null
    const float* query_weights = nullptr;  // [R, Sq] (row stride qw_ld) or null
    std::int64_t qw_ld = 0, r = 0;
    float* pooled = nullptr;  // [R, H, Sk], accumulated (atomics across query tiles): zero it first
    const std::int32_t* seg_lo = nullptr;
    const std::int32_t* seg_hi = nullptr;
};

// Traits of the tensor-core kernel for head dim D (= dv): tile sizes, mma step counts,
// the shared-memory row pitch.
template <int D>
struct flash_traits {
    static constexpr int head_dim = D;
    static constexpr int block_q = 64;  // queries per block: 16 per warp
    static constexpr int block_k = 64;  // keys per pipeline stage
    static constexpr int warps = 4;
    static constexpr int threads = warps * 32;
    static constexpr int k16_steps = D / 16;       // Q K^T: m16n8k16 steps along d
    static constexpr int k8_steps = (D % 16) / 8;  // and one m16n8k8 step when d % 16 == 8 (d = 72)
    static constexpr int n_tiles_d = D / 8;        // P V: output columns in n = 8 tiles
    static constexpr int n_tiles_k = block_k / 8;  // Q K^T: score columns in n = 8 tiles
    // Shared rows of K and V are `pitch` halves apart, chosen so that a row is a whole number
    // of 16-byte chunks (cp.async, ldmatrix) and pitch / 2 words = 4 mod 8: the 8 rows an
    // ldmatrix phase (or a quad-strided 32-bit load) touches fall in 32 distinct banks.
    static constexpr int pitch = (D / 2) % 8 == 4 ? D : (D / 2 + 4) % 8 == 4 ? D + 8 : D + 16;
    static constexpr int stages = 2;  // K and V double-buffered: tile t+1 loads during tile t
    static constexpr int smem_bytes = stages * 2 * block_k * pitch * 2;
    static_assert(D % 8 == 0 && k16_steps * 16 + k8_steps * 8 == D);
    static_assert((pitch * 2) % 16 == 0 && (pitch / 2) % 8 == 4);
};

// The head dims the tensor-core kernel is built for (d == dv).
constexpr bool flash_head_dim_supported(std::int64_t d) noexcept { return d == 64 || d == 72 || d == 80 || d == 128; }

// Calls f.template operator()<D>() with D the compile-time head dim d.
template <class F>
decltype(auto) head_dim_switch(std::int64_t d, F&& f) {
    switch (d) {
        case 64:
            return f.template operator()<64>();
        case 72:
            return f.template operator()<72>();
        case 80:
            return f.template operator()<80>();
        case 128:
            return f.template operator()<128>();
        default:
            break;
    }
    fail("cuda attention: no tensor-core kernel for head dim ", d, " (built: 64, 72, 80, 128)");
}

// Launchers (src/backend/cuda/flash_attention.cu, attention_reference.cu).
// The tensor-core kernel: q, k, v all bf16 or all f16, d == dv supported, every row and
// head start 16-byte aligned (strides multiples of 8), tiles cut for block_q = 64.
void launch_flash_attention(const attention_params& p, stream_t s);
// The plain kernel: any dtypes, strides, d and dv up to 256; f32 arithmetic throughout.
void launch_attention_reference(const attention_params& p, stream_t s);
// The maps pass (any dtypes); needs p.lse2 from a forward of either kernel.
void launch_attention_maps(const attention_params& p, const attention_maps_params& m, stream_t s);

}  // namespace glimpse::detail::cuda_impl
