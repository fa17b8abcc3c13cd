#pragma once
// One GEMM operand as the cpu backend's own GEMM kernels read it (cpu/bf16_gemm.hpp's AMX kernel,
// cpu/packed_gemm.hpp's AVX-512 kernels), and what they all share: the one f32 -> bf16 rounding
// and the one rule for their thread count.

#include <cstddef>
#include <cstdint>

#include "glimpse/core/dtype.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GLIMPSE_CPU_HAVE_AVX512_CODE 1
// The AVX-512 subset every kernel level from avx512 up may assume (cpu/isa.hpp's `avx512`).
#define GLIMPSE_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#endif

namespace glimpse::detail::cpu_impl {

// op(X) = X or X^T of a row-major matrix with leading dimension ld.
struct gemm_operand {
    const std::byte* data;
    dtype type;
    std::int64_t ld;
    bool trans;
};

// Element offset of op(X)[row, col].
inline std::int64_t operand_index(const gemm_operand& x, std::int64_t row, std::int64_t col) {
    return x.trans ? col * x.ld + row : row * x.ld + col;
}

inline float operand_at(const gemm_operand& x, std::int64_t row, std::int64_t col) {
    return load_f32(x.data, x.type, operand_index(x, row, col));
}

// op(X)[row, col] as bf16 bits: a bf16 operand's own bits (no round trip through f32).
inline std::uint16_t bf16_bits(const gemm_operand& x, std::int64_t row, std::int64_t col) {
    if (x.type == dtype::bf16) return reinterpret_cast<const bf16_t*>(x.data)[operand_index(x, row, col)].bits;
    return to_bf16(operand_at(x, row, col)).bits;
}

inline float round_bf16(float f) { return to_f32(to_bf16(f)); }

// Threads for an m x n x k product of the own kernels (cpu/packed_gemm.hpp, cpu/skinny_gemm.hpp):
// the caller's team, unless already inside one or the work is small.
inline int gemm_threads(std::int64_t m, std::int64_t n, std::int64_t k) {
#if defined(_OPENMP)
    // Below ~1 ms of work a second thread costs more than it brings.
    if (omp_in_parallel() == 0 && static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) > 4.0e6)
        return omp_get_max_threads();
#else
    (void)m;
    (void)n;
    (void)k;
#endif
    return 1;
}

#if defined(GLIMPSE_CPU_HAVE_AVX512_CODE)
// GCC 12 reports the intrinsics' own deliberately undefined operands (_mm512_undefined_*) as
// maybe-uninitialized when they are inlined into a target-attribute function.
#pragma GCC diagnostic push
#if defined(__GNUC__) && !defined(__clang__)  // a GCC-only warning: Clang would warn of the unknown name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"

// f32 -> bf16 bits, 16 at a time, bit-identical to to_bf16 (ties to even, NaN stays a quiet NaN;
// unlike VCVTNEPS2BF16, denormals are kept).
GLIMPSE_AVX512_TARGET inline __m256i to_bf16x16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

#pragma GCC diagnostic pop
#endif

}  // namespace glimpse::detail::cpu_impl
