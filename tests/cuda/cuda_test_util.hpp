#pragma once
// Shared by the [cuda] tests: the skip when no device is present (a visible warning, the
// test passes, so CI without a GPU stays green and says what it did not run), and
// host <-> device helpers for holding the cuda backend to the cpu / reference backends.
//
// Tolerances are scaled by what the cuda path rounds: f32 kernels differ from the cpu
// backend by summation order only (kF32 = 2e-5 of max |ref|, as tests/backend); a bf16
// operand has an 8-bit significand (2^-9 relative rounding), f16 an 11-bit one (2^-12).
// A dot product of K such roundings, each O(1), errs by ~sqrt(K) of that relative to the
// largest output, so 2e-2 (bf16) and 4e-3 (f16) cover K up to a few thousand here.

#include <catch2/catch.hpp>

#include <cstdio>

#include <glimpse/backend/cuda.hpp>

#include "test_util.hpp"

namespace glimpse::test {

constexpr double kF32 = 2e-5;
constexpr double kBf16 = 2e-2;
constexpr double kF16 = 4e-3;
inline double tol_for(dtype t) { return t == dtype::bf16 ? kBf16 : t == dtype::f16 ? kF16 : kF32; }

inline bool have_cuda_device() {
    static const bool yes = [] {
        const int n = cuda::device_count();
        if (n == 0)
            std::printf("glimpse_cuda_tests: no CUDA device: every [cuda] test is SKIPPED (passes without running)\n");
        return n > 0;
    }();
    return yes;
}

}  // namespace glimpse::test

// First line of every [cuda] test case.
#define GLIMPSE_REQUIRE_CUDA_DEVICE()                                            \
    do {                                                                         \
        if (!::glimpse::test::have_cuda_device()) {                              \
            WARN("no CUDA device: test skipped (GPU verification outstanding)"); \
            return;                                                              \
        }                                                                        \
    } while (0)
