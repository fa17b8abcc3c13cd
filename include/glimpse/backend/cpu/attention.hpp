#pragma once
// The cpu backend's fused attention: the problem and the entry point that every SIMD level's
// copy of the kernel (cpu/attention_kernel.inc, compiled per level by cpu/level_kernels.hpp)
// takes.
//
// Shapes (core/backend.hpp): q [Sq, H, d], k [Sk, H, d], v [Sk, H, dv], out [Sq, H, dv], f32,
// unit inner strides; strides below are in elements.

#include <cstdint>
#include <span>

#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

namespace glimpse::detail::cpu_impl {

// The problem of one attention call.
struct attn_problem {
    const float *q, *k, *v;
    float* o;
    std::int64_t q_ld, q_hs, k_ld, k_hs, v_ld, v_hs, o_ld, o_hs;
    std::int64_t d, dv;
    float scale2;  // scale * log2(e): the softmax is taken in base 2
    const float* mask;
    std::int64_t mask_ld;
    // bf16 attention precision: the two products take bf16 operands (q, k and v rounded to
    // bf16 nearest-even, and the probabilities before they weight v), their sums, the softmax
    // and the maps stay f32. Scores are scale2 * (round(q) . round(k)).
    bool bf16 = false;
};

// One call as every level's kernel takes it: inputs f32, maps zero-filled by the caller.
struct attn_call {
    attn_problem p;
    attention_dims dims;
    std::span<const std::int64_t> segments;  // cumulative boundaries shared by q and k; empty: none
    attention_maps maps;
    cview query_weights;  // f32 [R, Sq] when maps.pooled is asked for, else empty
};

// One level's copy of the kernel: its entry point and queries per tile (the kernels' unit of
// work; tests size their inputs by it).
struct attn_kernel {
    void (*run)(const attn_call&);
    std::int64_t tile_q;
};

}  // namespace glimpse::detail::cpu_impl
