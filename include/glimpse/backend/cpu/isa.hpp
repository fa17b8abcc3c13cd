#pragma once
// Which SIMD kernels the cpu backend runs, chosen at run time from what the CPU reports (as
// oneDNN and BLIS do), so that one build — the README's baseline x86-64 `dev` build included —
// runs the widest kernels the machine has. The kernels themselves are compiled once per level
// with target attributes (cpu/attention.hpp, cpu/bf16_gemm.hpp); nothing here needs -march.
//
// The levels are ordered, each containing the ones before it:
//   sse2    4-lane vectors: the x86-64 baseline (on other architectures, the portable
//           vector-extension path under the same name)
//   avx2    8 lanes, FMA (Haswell / Zen 1 and later)
//   avx512       16 lanes (F, BW, DQ, VL: Skylake-SP / Zen 4 and later); the packed GEMM's f32
//                kernel (cpu/packed_gemm.hpp), which also runs bf16 matmul precision on rounded
//                operands
//   avx512_bf16  avx512 plus VDPBF16PS: bf16 matmul precision on bf16 dot products (Cooper
//                Lake, Zen 4 and later)
//   amx          avx512_bf16 plus AMX-BF16 tiles for bf16 matmul precision (Sapphire Rapids and
//                later)
//
// GLIMPSE_CPU_ISA=sse2|avx2|avx512|avx512_bf16|amx in the environment forces a level for the whole
// process (to compare paths, or to test a narrower one on a wide machine). A level this CPU lacks is an
// error, never a quiet step down: the user asked for those kernels.

#include <array>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "glimpse/backend/cpu/bf16_gemm.hpp"
#include "glimpse/core/error.hpp"

namespace glimpse {

enum class cpu_isa { sse2, avx2, avx512, avx512_bf16, amx };

inline constexpr std::array<cpu_isa, 5> all_cpu_isas{cpu_isa::sse2, cpu_isa::avx2, cpu_isa::avx512,
                                                     cpu_isa::avx512_bf16, cpu_isa::amx};

inline constexpr std::string_view name(cpu_isa i) {
    switch (i) {
        case cpu_isa::sse2:
            return "sse2";
        case cpu_isa::avx2:
            return "avx2";
        case cpu_isa::avx512:
            return "avx512";
        case cpu_isa::avx512_bf16:
            return "avx512_bf16";
        case cpu_isa::amx:
            return "amx";
    }
    return "?";
}

namespace detail::cpu_impl {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GLIMPSE_CPU_X86_DISPATCH 1
#endif

// Whether this CPU (and the OS, which must save the wider registers) runs level i's kernels.
// __builtin_cpu_supports checks XGETBV as well as CPUID for the AVX and AVX-512 state.
inline bool cpu_has(cpu_isa i) {
#if defined(GLIMPSE_CPU_X86_DISPATCH)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    // AVX512_BF16 is CPUID leaf 7 sub-leaf 1, EAX bit 5 (asked directly: not every compiler's
    // __builtin_cpu_supports knows the name).
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool bf16 = avx512 && __get_cpuid_count(7, 1, &a, &b, &c, &d) != 0 && ((a >> 5) & 1u) != 0;
    switch (i) {
        case cpu_isa::sse2:
            return true;
        case cpu_isa::avx2:
            return avx2;
        case cpu_isa::avx512:
            return avx512;
        case cpu_isa::avx512_bf16:
            return bf16;
        case cpu_isa::amx:
            return bf16 && amx_bf16_available();
    }
    return false;
#else
    return i == cpu_isa::sse2;
#endif
}

inline cpu_isa best_isa() {
    cpu_isa best = cpu_isa::sse2;
    for (cpu_isa i : all_cpu_isas)
        if (cpu_has(i)) best = i;
    return best;
}

// Refuses a level this CPU lacks; `who` starts the message ("cpu backend", "GLIMPSE_CPU_ISA=x").
inline void require_isa(cpu_isa i, std::string_view who) {
    check(cpu_has(i), who, ": this CPU does not run the ", name(i), " kernels (it runs up to ", name(best_isa()), ")");
}

// The level a GLIMPSE_CPU_ISA value names; an unknown name or one this CPU lacks is an error.
inline cpu_isa parse_isa(std::string_view s) {
    for (cpu_isa i : all_cpu_isas)
        if (s == name(i)) {
            require_isa(i, "GLIMPSE_CPU_ISA=" + std::string(s));
            return i;
        }
    fail("GLIMPSE_CPU_ISA=", s, ": not a level (sse2, avx2, avx512, avx512_bf16, amx)");
}

// GLIMPSE_CPU_ISA when set, else the best level: what a default-constructed cpu backend runs.
// Decided once per process, like OpenMP's and OpenBLAS's own environment variables.
inline cpu_isa default_isa() {
    static const cpu_isa isa = [] {
        const char* e = std::getenv("GLIMPSE_CPU_ISA");
        return e && *e ? parse_isa(e) : best_isa();
    }();
    return isa;
}

}  // namespace detail::cpu_impl

// The levels this CPU runs, narrowest first (sse2 is always one).
inline std::vector<cpu_isa> supported_cpu_isas() {
    std::vector<cpu_isa> out;
    for (cpu_isa i : all_cpu_isas)
        if (detail::cpu_impl::cpu_has(i)) out.push_back(i);
    return out;
}

// One line for --verbose and benchmark labels:
// "avx512 (this CPU: sse2 avx2 avx512; lacks avx512_bf16 amx)".
inline std::string describe_cpu_isa(cpu_isa running) {
    std::string has, lacks;
    for (cpu_isa i : all_cpu_isas) (detail::cpu_impl::cpu_has(i) ? has : lacks) += " " + std::string(name(i));
    return std::string(name(running)) + " (this CPU:" + has + (lacks.empty() ? "" : "; lacks" + lacks) + ")";
}

}  // namespace glimpse
