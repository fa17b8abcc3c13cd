#pragma once
// check_op: runs one backend op on `reference` (the f64 oracle) and on `cpu`, and holds the
// fast result to the oracle's (test-backend-ops style). Shared by the forward and the
// backward op tests.

#include <glimpse/backend/cpu.hpp>
#include <glimpse/backend/reference.hpp>

#include "test_util.hpp"

namespace glimpse::test {

// Relative to the oracle's max |value|: f32 GEMM chains and reductions, measured ~1e-6.
inline constexpr double kOpTol = 2e-5;

template <class Op>
void check_op(const char* what, const shape& out_shape, Op op, double tol = kOpTol) {
    reference ref;
    cpu fast;
    tensor a(out_shape), b(out_shape);
    op(ref, a.v());
    op(fast, b.v());
    const auto e = compare(b.cv(), a.cv());
    INFO(what << ": max abs " << e.max_abs << ", max ref " << e.max_ref << ", rel " << e.rel());
    REQUIRE(e.max_ref > 0);
    REQUIRE(e.rel() < tol);
}

}  // namespace glimpse::test
