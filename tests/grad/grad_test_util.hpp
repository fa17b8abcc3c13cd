#pragma once
// Shared by the gradient tests: comparing gradients with a stated tolerance and,
// with GLIMPSE_GRAD_REPORT=1 in the environment, printing every measured error
// (the table docs/gradients.md quotes):
//   GLIMPSE_GRAD_REPORT=1 ./build/dev/tests/glimpse_tests "[grad]"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <glimpse/grad/named_grads.hpp>

#include "test_util.hpp"

namespace glimpse::test {

// f32 gradients against the f64 autograd truth, relative to the gradient's max |.|.
// A gradient is a chain of GEMMs (K <= a few hundred here), row reductions and, through
// the attention, the softmax backward P (dP - rowsum(P dP)), whose subtraction cancels:
// its rounding is relative to max |dP|, not to the (smaller) result. Measured worst case
// 7.6e-7 over all 292 gradient checks (cpu and reference, Zen 5, 2026-12-02;
// tools/bounds_report.py), so 5e-6 is 6.6x that, while a wrong sign or a missing term gives
// O(1) (tried: each such mutation fails these tests).
constexpr double kGradRel = 5e-6;

inline bool grad_report() { return std::getenv("GLIMPSE_GRAD_REPORT") != nullptr; }

inline void report(const std::string& backend, const std::string& what, const error_stats& e) {
    if (grad_report())
        std::printf("grad-check %-10s %-52s max|err| %.3e  max|ref| %.3e  rel %.3e\n", backend.c_str(), what.c_str(),
                    e.max_abs, e.max_ref, e.rel());
}

inline void require_grad(const std::string& backend, const std::string& what, const cview& ours, const cview& ref,
                         double tol = kGradRel) {
    const auto e = compare(ours, ref);
    report(backend, what, e);
    INFO(backend << " " << what << ": max abs " << e.max_abs << ", max |ref| " << e.max_ref << ", rel " << e.rel()
                 << " (tolerance " << tol << ")");
    record_bound(__FILE__, __LINE__, "gradient (all of require_grad's)", e.rel(), tol);
    REQUIRE(e.max_ref > 0);
    REQUIRE(e.rel() <= tol);
}

// A gradient that is identically zero in exact arithmetic (k_proj.bias without RoPE: a
// key bias adds q.b to every score of a query, which the softmax ignores) comes out as
// rounding noise; it is bounded relative to the largest gradient of the whole layer set
// (`scale`) instead of its own (zero) magnitude: measured 1.7e-7 of it, held to kF32Op.
inline void require_zero_grad(const std::string& backend, const std::string& what, const cview& ours, const cview& ref,
                              double scale, double tol = kF32Op) {
    auto e = compare(ours, ref);
    report(backend, what + " (exactly 0; vs max grad)", {e.max_abs, scale});
    INFO(backend << " " << what << ": max abs " << e.max_abs << " against max gradient " << scale);
    record_bound(__FILE__, __LINE__, "zero gradient vs the largest", e.max_abs / scale, tol);
    REQUIRE(e.max_abs <= tol * scale);
}

// Every gradient of `g` against fixture tensor `<key_prefix><name>`, and the count.
template <class B>
void require_grads(const std::string& backend, const fixture& fx, const grad::named_grads<B>& g,
                   const std::string& key_prefix, const std::string& strip = "", const std::string& label = "",
                   double tol = kGradRel) {
    REQUIRE(g.size() > 0);
    double scale = 0;
    for (const auto& t : g.grads) scale = std::max(scale, compare(t.cv(), t.cv()).max_ref);
    for (std::size_t i = 0; i < g.size(); ++i) {
        std::string n = g.names[i];
        if (!strip.empty()) {
            REQUIRE(n.rfind(strip, 0) == 0);
            n = n.substr(strip.size());
        }
        const cview ref = fx[key_prefix + n];
        if (compare(ref, ref).max_ref < 1e-9 * scale)
            require_zero_grad(backend, label + key_prefix + n, g.grads[i].cv(), ref, scale, std::min(tol, kF32Op));
        else
            require_grad(backend, label + key_prefix + n, g.grads[i].cv(), ref, tol);
    }
    std::size_t expected = 0;
    for (const auto& e : fx.file.entries())
        if (e.name.rfind(key_prefix, 0) == 0 && e.name != key_prefix + "x" && e.name != key_prefix + "heatmap")
            ++expected;
    REQUIRE(g.size() == expected);  // no parameter left out
}

}  // namespace glimpse::test
