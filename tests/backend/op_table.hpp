#pragma once
// Runs the op table (op_cases.hpp) on a backend against `reference`: each case's output is a
// window in the middle of a larger f32 buffer whose guard bands hold a NaN with a payload; after
// the op the bands must hold exactly those bits (a write past either end of the output fails the
// case even where ASan cannot see: device memory, or a backend's own arena).

#include <bit>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <glimpse/backend/reference.hpp>

#include "backend/op_cases.hpp"
#include "test_util.hpp"

namespace glimpse::test {

inline constexpr std::int64_t kGuard = 64;                 // f32 elements each side
inline constexpr std::uint32_t kGuardBits = 0x7fc0'dea1u;  // a quiet NaN with a payload
inline const float kGuardValue = std::bit_cast<float>(kGuardBits);

// What one run of a case left: the output (host, the case's shape), and the first guard element
// that changed (-1: none).
struct case_run {
    tensor out;
    std::int64_t guard_hit = -1;
};

template <class B, class Body>
case_run run_op_case(B& be, const op_case& c, Body& body) {
    std::vector<typename B::tensor> held;
    held.reserve(c.inputs.size());
    for (const auto& t : c.inputs) held.push_back(be.upload(t->cv()));
    std::vector<cview> views;
    for (const auto& t : held) views.push_back(t.cv());
    const std::int64_t n = c.out.numel();
    auto buf = be.alloc(shape{n + 2 * kGuard}, dtype::f32);
    be.fill(buf.v().slice(0, 0, kGuard), kGuardValue);
    be.fill(buf.v().slice(0, kGuard + n, n + 2 * kGuard), kGuardValue);
    body(be, op_inputs(views, c), buf.v().slice(0, kGuard, kGuard + n).reshape(c.out));
    const tensor all = be.download(buf.cv());
    case_run r;
    const auto* p = all.ptr<float>();
    for (std::int64_t i = 0; i < n + 2 * kGuard && r.guard_hit < 0; ++i) {
        if (i == kGuard) i += n;
        if (std::bit_cast<std::uint32_t>(p[i]) != kGuardBits) r.guard_hit = i < kGuard ? i - kGuard : i - kGuard - n;
    }
    r.out = tensor(c.out);
    std::memcpy(r.out.data(), p + kGuard, static_cast<std::size_t>(n) * sizeof(float));
    return r;
}

// One backend under test: how to make it (fresh per case), its name in messages, and its
// tolerance for a case (its own rounding rule; llm.c's "tolerances scaled by dtype").
template <class B>
struct backend_under_test {
    std::string name;
    std::function<B()> make;
    std::function<double(const op_case&)> tolerance = [](const op_case& c) { return c.tol; };
};

// The ops the table covered, for the coverage test and the summary line.
struct table_stats {
    std::set<std::string, std::less<>> ops;
    std::int64_t cases = 0;
};

// Runs one case on `reference` and on each backend in `backends`, holding each to the reference.
template <class B, class Body>
void check_case(const op_case& c, Body& body, const std::vector<backend_under_test<B>>& backends) {
    reference ref;
    const case_run want = run_op_case(ref, c, body);
    INFO("op case \"" << c.label << "\" (" << c.op << ")");
    REQUIRE(want.guard_hit == -1);
    for (const auto& bt : backends) {
        B be = bt.make();
        const case_run got = run_op_case(be, c, body);
        const double tol = bt.tolerance(c);
        const auto e = compare(got.out.cv(), want.out.cv());
        INFO(bt.name << ": max abs " << e.max_abs << ", max ref " << e.max_ref << ", rel " << e.rel() << " (tolerance "
                     << tol << "), guard element hit: " << got.guard_hit);
        if constexpr (requires { be.fallbacks(); })
            for (const auto& [why, count] : be.fallbacks()) UNSCOPED_INFO(bt.name << " fell back: " << why);
        record_bound("tests/backend/op_table.hpp", 0, bt.name + ": " + c.label, e.rel(), tol);
        REQUIRE(got.guard_hit == -1);
        REQUIRE(e.max_ref > 0);
        REQUIRE(e.rel() < tol);
    }
}

// The whole table (forward cases; the training cases too when B is a TrainingBackend) for B.
template <class B>
table_stats run_op_table(const std::vector<backend_under_test<B>>& backends) {
    table_stats s;
    auto visit = [&](const op_case& c, auto body) {
        s.ops.insert(std::string(c.op));
        ++s.cases;
        check_case(c, body, backends);
    };
    forward_op_cases(visit);
    if constexpr (TrainingBackend<B>) training_op_cases(visit);
    return s;
}

}  // namespace glimpse::test
