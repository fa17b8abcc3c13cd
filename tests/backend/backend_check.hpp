#pragma once
// check_op: runs one backend op on `reference` (the f64 oracle) and on `cpu` at every SIMD
// level this CPU has (cpu/isa.hpp; each level that is missing is listed once, visibly, by the
// ISA test), and holds each fast result to the oracle's (test-backend-ops style). Shared by
// the forward and the backward op tests.

#include <source_location>

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "test_util.hpp"

namespace glimpse::test {

// Relative to the oracle's max |value|: one f32 op (GEMM up to K = 1000, norms,
// softmax, their backward passes), measured 5e-8 - 2.4e-7 (Zen 5, 2026-12-02): the
// floor of test_util.hpp's rule, 1e-6 = 8 ulps of max |value|.
inline constexpr double kOpTol = kF32Op;

template <class Op>
void check_op(const char* what, const shape& out_shape, Op op, double tol = kOpTol,
              std::source_location at = std::source_location::current()) {
    reference ref;
    tensor a(out_shape);
    op(ref, a.v());
    for (cpu_isa isa : supported_cpu_isas()) {
        cpu fast;
        fast.set_isa(isa);
        tensor b(out_shape);
        op(fast, b.v());
        const auto e = compare(b.cv(), a.cv());
        INFO(what << " (cpu kernels " << name(isa) << "): max abs " << e.max_abs << ", max ref " << e.max_ref
                  << ", rel " << e.rel());
        record_bound(at.file_name(), static_cast<long>(at.line()), what, e.rel(), tol);
        REQUIRE(e.max_ref > 0);
        REQUIRE(e.rel() < tol);
    }
}

}  // namespace glimpse::test
