#pragma once
// The cpu backend's SIMD kernels, compiled once per level and chosen at run time (cpu/isa.hpp):
// each level's copy of the vector vocabulary (cpu/simd.inc), the fused attention
// (cpu/attention_kernel.inc) and the row-wise kernels (cpu/row_kernels.inc) lives in its own
// namespace (isa_sse2, isa_avx2, isa_avx512) inside that level's target region, so a baseline
// x86-64 build carries the AVX2 and AVX-512 kernels too. Outside x86-64 only the portable
// 4-lane copy exists. (The GEMMs' AVX-512 and AMX kernels are cpu/packed_gemm.hpp and
// cpu/bf16_gemm.hpp.)

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "glimpse/backend/cpu/attention.hpp"
#include "glimpse/backend/cpu/isa.hpp"
#include "glimpse/backend/op_checks.hpp"
#include "glimpse/core/backend.hpp"

#if defined(GLIMPSE_CPU_X86_DISPATCH)
#include <immintrin.h>  // before any target region: GCC and Clang declare every level's intrinsics
#endif

namespace glimpse::detail::cpu_impl {

// One level's row-wise kernels (cpu/row_kernels.inc), each on one contiguous f32 row of n.
struct row_kernels {
    void (*activate)(activation act, const float* x, float* o, std::int64_t n);
    void (*swiglu)(const float* gate, const float* up, float* o, std::int64_t n);
    void (*softmax)(float* row, std::int64_t n, float scale);
    void (*layer_norm)(const float* x, float* o, const float* w, const float* b, std::int64_t n, float eps);
    void (*rms_norm)(const float* x, float* o, const float* w, std::int64_t n, float eps);
    // p [2 half] of one head, c and s [2 half] of its position
    void (*rotary)(float* p, const float* c, const float* s, std::int64_t half);
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

// The order of the includes below is the order of definition (simd.inc first): not sorted.
// clang-format off
#define GLIMPSE_CPU_KERNEL_NS isa_sse2
#define GLIMPSE_CPU_LANES 4
#include "glimpse/backend/cpu/simd.inc"
#include "glimpse/backend/cpu/attention_kernel.inc"
#include "glimpse/backend/cpu/row_kernels.inc"
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES

#if defined(GLIMPSE_CPU_X86_DISPATCH)
#define GLIMPSE_CPU_KERNEL_NS isa_avx2
#define GLIMPSE_CPU_LANES 8
GLIMPSE_CPU_TARGET_BEGIN("avx2,fma")
#include "glimpse/backend/cpu/simd.inc"
#include "glimpse/backend/cpu/attention_kernel.inc"
#include "glimpse/backend/cpu/row_kernels.inc"
GLIMPSE_CPU_TARGET_END
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES

#define GLIMPSE_CPU_KERNEL_NS isa_avx512
#define GLIMPSE_CPU_LANES 16
GLIMPSE_CPU_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#include "glimpse/backend/cpu/simd.inc"
#include "glimpse/backend/cpu/attention_kernel.inc"
#include "glimpse/backend/cpu/row_kernels.inc"
GLIMPSE_CPU_TARGET_END
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES

// The attention kernel once more with VDPBF16PS for bf16 attention precision (the row kernels
// are the avx512 ones).
#define GLIMPSE_CPU_KERNEL_NS isa_avx512_bf16
#define GLIMPSE_CPU_LANES 16
#define GLIMPSE_CPU_BF16_DOT 1
GLIMPSE_CPU_TARGET_BEGIN("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")
#include "glimpse/backend/cpu/simd.inc"
#include "glimpse/backend/cpu/attention_kernel.inc"
GLIMPSE_CPU_TARGET_END
#undef GLIMPSE_CPU_KERNEL_NS
#undef GLIMPSE_CPU_LANES
#undef GLIMPSE_CPU_BF16_DOT
#endif
// clang-format on

namespace glimpse::detail::cpu_impl {

// Level isa's kernels; the caller has checked that the CPU runs it (cpu_has). avx512_bf16 and
// amx run the avx512 copies (those levels matter to the bf16 gemm only).
struct level_entry {
    const attn_kernel& attention;
    const row_kernels& rows;
};
// The one choice of a level's namespace; every per-level table is read through it.
inline level_entry level_of(cpu_isa isa) {
#if defined(GLIMPSE_CPU_X86_DISPATCH)
    if (isa >= cpu_isa::avx512_bf16) return {isa_avx512_bf16::kernel, isa_avx512::rows};
    if (isa >= cpu_isa::avx512) return {isa_avx512::kernel, isa_avx512::rows};
    if (isa == cpu_isa::avx2) return {isa_avx2::kernel, isa_avx2::rows};
#endif
    return {isa_sse2::kernel, isa_sse2::rows};
}
inline const attn_kernel& attention_kernel(cpu_isa isa) { return level_of(isa).attention; }
inline const row_kernels& row_kernels_of(cpu_isa isa) { return level_of(isa).rows; }

}  // namespace glimpse::detail::cpu_impl
