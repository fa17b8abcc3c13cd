#pragma once
// The cpu backend's fused attention, compiled once per SIMD level and chosen at run time
// (cpu/isa.hpp): the kernel (cpu/attention_kernel.inc) is included three times, each copy in
// its own namespace and target region, so a baseline x86-64 build carries the AVX2 and AVX-512
// kernels too. Outside x86-64 only the portable 4-lane copy exists.
//
// Shapes (core/backend.hpp): q [Sq, H, d], k [Sk, H, d], v [Sk, H, dv], out [Sq, H, dv], f32,
// unit inner strides; strides below are in elements.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "glimpse/backend/cpu/isa.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

#if defined(GLIMPSE_CPU_X86_DISPATCH)
#include <immintrin.h>  // before any target region: GCC and Clang declare every level's intrinsics
#endif

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

#define GLIMPSE_CPU_INLINE inline __attribute__((always_inline))

// A target region: every function defined between BEGIN and END may use level t's instructions.
#define GLIMPSE_CPU_PRAGMA(...) _Pragma(#__VA_ARGS__)
#if defined(__clang__)
#define GLIMPSE_CPU_TARGET_BEGIN(t) \
    GLIMPSE_CPU_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
#define GLIMPSE_CPU_TARGET_END GLIMPSE_CPU_PRAGMA(clang attribute pop)
#else
#define GLIMPSE_CPU_TARGET_BEGIN(t) GLIMPSE_CPU_PRAGMA(GCC push_options) GLIMPSE_CPU_PRAGMA(GCC target(t))
#define GLIMPSE_CPU_TARGET_END GLIMPSE_CPU_PRAGMA(GCC pop_options)
#endif

#define GLIMPSE_CPU_KERNEL_NS isa_sse2
#define GLIMPSE_CPU_LANES 4
#include "glimpse/backend/cpu/attention_kernel.inc"
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES

#if defined(GLIMPSE_CPU_X86_DISPATCH)
#define GLIMPSE_CPU_KERNEL_NS isa_avx2
#define GLIMPSE_CPU_LANES 8
GLIMPSE_CPU_TARGET_BEGIN("avx2,fma")
#include "glimpse/backend/cpu/attention_kernel.inc"
GLIMPSE_CPU_TARGET_END
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES

#define GLIMPSE_CPU_KERNEL_NS isa_avx512
#define GLIMPSE_CPU_LANES 16
GLIMPSE_CPU_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#include "glimpse/backend/cpu/attention_kernel.inc"
GLIMPSE_CPU_TARGET_END
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES
#endif

namespace glimpse::detail::cpu_impl {

// Level isa's kernel; the caller has checked that the CPU runs it (cpu_has). amx runs the
// avx512 copy (AMX matters to the bf16 gemm only).
inline const attn_kernel& attention_kernel(cpu_isa isa) {
#if defined(GLIMPSE_CPU_X86_DISPATCH)
    if (isa >= cpu_isa::avx512) return isa_avx512::kernel;
    if (isa == cpu_isa::avx2) return isa_avx2::kernel;
#endif
    return isa_sse2::kernel;
}

}  // namespace glimpse::detail::cpu_impl
